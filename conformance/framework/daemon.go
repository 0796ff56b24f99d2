package framework

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-runtime/berth/internal/libctinit"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Main is TestMain for packages that start containers or daemons: it makes
// the test binary usable as libcontainer's init, runs the tests and removes
// the berth binary built for them.
func Main(m *testing.M) {
	libctinit.RunIfInit()
	// containerd's libraries log through logrus; keep test output readable.
	if os.Getenv("BERTH_TEST_VERBOSE") == "" {
		logrus.SetOutput(io.Discard)
	}
	code := m.Run()
	if dir := builtBinaryDir(); dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// builtBinary is the berth binary this test process built, shared by its tests.
type builtBinary struct {
	path string
	err  error
}

var (
	buildOnce sync.Once
	build     builtBinary
)

func builtBinaryDir() string {
	if build.path == "" {
		return ""
	}
	return filepath.Dir(build.path)
}

// BerthBinary returns the berth binary under test: $BERTH_BINARY when set,
// otherwise one built from this checkout (once per test process) with the
// berth_testhooks tag, and with -race when BERTH_RACE=1.
func BerthBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("BERTH_BINARY"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-bin-")
		if err != nil {
			build.err = err
			return
		}
		out := filepath.Join(dir, "berth")
		// berth finds its per-pod monitor next to itself, as installed.
		for pkg, bin := range map[string]string{"cmd/berth": out, "cmd/berth-monitor": filepath.Join(dir, "berth-monitor")} {
			args := []string{"build", "-tags", "seccomp berth_testhooks", "-o", bin}
			if os.Getenv("BERTH_RACE") == "1" {
				args = append(args, "-race")
			}
			cmd := exec.Command("go", append(args, "github.com/berth-runtime/berth/"+pkg)...)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
			if pkg == "cmd/berth-monitor" && os.Getenv("BERTH_RACE") != "1" {
				// As make builds it: pure Go (the race detector needs cgo).
				cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			}
			if output, err := cmd.CombinedOutput(); err != nil {
				os.RemoveAll(dir)
				build.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, output)
				return
			}
		}
		build.path = out
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// DaemonOptions adjusts a test daemon.
type DaemonOptions struct {
	// ConfigTOML, when set, is written to a file passed with --config.
	ConfigTOML string
	// Args are extra command-line flags.
	Args []string
	// Socket overrides the socket path (default: a fresh short temp dir).
	Socket string
	// Root and State override the directories (default: under t.TempDir()).
	Root, State string
	// CNIBinDir overrides the CNI plugin directory (default: an empty one).
	CNIBinDir string
	// Network gives the daemon the built CNI plugins and a bridge network
	// of its own (Daemon.Network).
	Network bool
}

// Daemon is a berth process started for a test, with its own socket, root,
// state, CNI and registry config directories, and connected clients.
type Daemon struct {
	Socket, Root, State        string
	CNIConfDir, CNIBinDir      string
	RegistryConfigDir, LogPath string
	// Network is the daemon's pod network when DaemonOptions.Network is set.
	Network *PodNetwork

	Conn    *grpc.ClientConn
	Runtime runtimeapi.RuntimeServiceClient
	Images  runtimeapi.ImageServiceClient

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // process exit status, valid once exited is closed

	// bin and args start the process again (Restart).
	bin  string
	args []string
}

// Pid is the daemon's process ID (for memory measurements).
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Endpoint is the daemon's CRI endpoint as kubelet's flag takes it.
func (d *Daemon) Endpoint() string { return "unix://" + d.Socket }

// StartDaemon starts berth and waits until it answers Version. Cleanup stops
// it and removes everything it created: mounts under its directories, any
// process still referring to them, the socket and the directories.
func StartDaemon(t testing.TB, opts DaemonOptions) *Daemon {
	t.Helper()
	d, err := LaunchDaemon(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// LaunchDaemon is StartDaemon returning the start error instead of failing,
// for tests of refused starts; the daemon's log is in the error.
func LaunchDaemon(t testing.TB, opts DaemonOptions) (*Daemon, error) {
	t.Helper()
	bin := BerthBinary(t)
	dir := t.TempDir()
	// The root of a pod in a user namespace is an unprivileged host user:
	// it must be able to search the path down to its rootfs, as under
	// /run/berth (0711) on a node. t.TempDir makes both levels 0700.
	for _, p := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(p, 0o711); err != nil {
			return nil, err
		}
	}
	d := &Daemon{
		Socket:            opts.Socket,
		Root:              opts.Root,
		State:             opts.State,
		CNIConfDir:        filepath.Join(dir, "net.d"),
		CNIBinDir:         filepath.Join(dir, "cni-bin"),
		RegistryConfigDir: filepath.Join(dir, "certs.d"),
		LogPath:           filepath.Join(dir, "berth.log"),
		exited:            make(chan struct{}),
	}
	if d.Root == "" {
		d.Root = filepath.Join(dir, "root")
	}
	if d.State == "" {
		d.State = filepath.Join(dir, "state")
	}
	if opts.CNIBinDir != "" {
		d.CNIBinDir = opts.CNIBinDir
	}
	if opts.Network {
		d.CNIBinDir = CNIPlugins(t)
	}
	if d.Socket == "" {
		d.Socket = filepath.Join(ShortTempDir(t), "berth.sock")
	}
	for _, p := range []string{d.CNIConfDir, filepath.Join(dir, "cni-bin"), d.RegistryConfigDir} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, err
		}
	}
	if opts.Network {
		d.Network = AddPodNetwork(t, d.CNIConfDir)
	}
	args := []string{
		"--listen", "unix://" + d.Socket, "--root", d.Root, "--state", d.State,
		"--cni-conf-dir", d.CNIConfDir, "--cni-bin-dir", d.CNIBinDir,
		"--registry-config-dir", d.RegistryConfigDir, "--log-level", "debug",
	}
	if opts.ConfigTOML != "" {
		path := filepath.Join(dir, "berth.toml")
		if err := os.WriteFile(path, []byte(opts.ConfigTOML), 0o644); err != nil {
			return nil, err
		}
		args = append(args, "--config", path)
	} else {
		// Never let a developer's /etc/berth/berth.toml leak into a test.
		path := filepath.Join(dir, "empty.toml")
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			return nil, err
		}
		args = append(args, "--config", path)
	}
	logFile, err := os.Create(d.LogPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	d.bin, d.args = bin, append(args, opts.Args...)
	if err := d.spawn(logFile); err != nil {
		return nil, err
	}
	t.Cleanup(func() { d.teardown(t) })

	if err := d.waitReady(60 * time.Second); err != nil {
		return nil, fmt.Errorf("%w\n--- berth log ---\n%s", err, d.Logs())
	}
	return d, nil
}

// spawn starts the berth process with its output to logFile.
func (d *Daemon) spawn(logFile *os.File) error {
	cmd := exec.Command(d.bin, d.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so a Ctrl-C on the test does not reach it twice.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start berth: %w", err)
	}
	exited := make(chan struct{})
	d.cmd, d.exited = cmd, exited
	go func() {
		err := cmd.Wait()
		d.err = err
		close(exited)
	}()
	return nil
}

// Restart starts berth again, after it exited (a test killed it), with the
// same command line: the same socket, root, state, CNI network and config.
// Its output is appended to the same log, after a marker line. It waits
// until the new process answers Version and replaces Conn, Runtime and
// Images (the old connection is closed); a connection of the test's own to
// Endpoint() reconnects by itself. The teardown registered by StartDaemon
// applies to the restarted process.
func (d *Daemon) Restart(t testing.TB) {
	t.Helper()
	if !d.Exited() {
		t.Fatalf("Restart: berth (pid %d) is still running", d.cmd.Process.Pid)
	}
	logFile, err := os.OpenFile(d.LogPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "=== test: berth (pid %d) exited (%v); restarting it ===\n", d.cmd.Process.Pid, d.err)
	if d.Conn != nil {
		d.Conn.Close()
		d.Conn = nil
	}
	if err := d.spawn(logFile); err != nil {
		t.Fatal(err)
	}
	// berth itself waits a moment for a lock that a child forked by the
	// killed berth still holds (until it execs): no retry here.
	if err := d.waitReady(60 * time.Second); err != nil {
		t.Fatalf("restart: %v\nprocesses holding berth's lock files: %v\n--- berth log ---\n%s",
			err, lockHolders(d.Root, d.State), d.Logs())
	}
}

// lockHolders lists the processes that have berth's lock file in root or
// state open, as "pid: command line".
func lockHolders(root, state string) []string {
	locks := []string{filepath.Join(root, "berth.lock"), filepath.Join(state, "berth.lock")}
	var out []string
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name()))
			if err == nil && (target == locks[0] || target == locks[1]) {
				cmdline, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
				out = append(out, p.Name()+": "+string(bytes.ReplaceAll(bytes.TrimRight(cmdline, "\x00"), []byte{0}, []byte{' '})))
				break
			}
		}
	}
	return out
}

// waitReady polls until Version answers, the process exits, or timeout.
func (d *Daemon) waitReady(timeout time.Duration) error {
	conn, err := Dial(d.Endpoint())
	if err != nil {
		return err
	}
	d.Conn = conn
	d.Runtime = runtimeapi.NewRuntimeServiceClient(conn)
	d.Images = runtimeapi.NewImageServiceClient(conn)
	deadline := time.Now().Add(timeout)
	for delay := 5 * time.Millisecond; ; delay = min(delay*2, 200*time.Millisecond) {
		// Only our process counts: another daemon may answer on the same
		// socket (the very case of tests for refused starts).
		err := d.servedByUs()
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = d.Runtime.Version(ctx, &runtimeapi.VersionRequest{})
			cancel()
			if err == nil {
				return nil
			}
		}
		select {
		case <-d.exited:
			return fmt.Errorf("berth exited before serving: %v", d.err)
		case <-time.After(delay):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("berth did not answer Version on %s within %v: %v", d.Socket, timeout, err)
		}
	}
}

// servedByUs checks with SO_PEERCRED that the socket's listener is our process.
func (d *Daemon) servedByUs() error {
	conn, err := net.Dial("unix", d.Socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if credErr != nil {
		return credErr
	}
	if int(cred.Pid) != d.cmd.Process.Pid {
		return fmt.Errorf("%s is served by pid %d, not by this test's berth (pid %d)", d.Socket, cred.Pid, d.cmd.Process.Pid)
	}
	return nil
}

// Dial connects to a CRI endpoint (unix:///path) as kubelet does.
func Dial(endpoint string) (*grpc.ClientConn, error) {
	if !strings.HasPrefix(endpoint, "unix://") {
		return nil, fmt.Errorf("CRI endpoint %q is not a unix:// URL", endpoint)
	}
	// A short reconnect backoff: the default waits a second after the first
	// refused dial, which is most of a test daemon's start time.
	return grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			// Without it a connection attempt gets only the backoff's
			// delay to complete, and fails under load.
			MinConnectTimeout: 20 * time.Second,
		}))
}

// Signal sends sig to the daemon.
func (d *Daemon) Signal(sig syscall.Signal) error { return d.cmd.Process.Signal(sig) }

// Wait waits up to timeout for the daemon to exit and returns its exit error
// (nil for exit status 0).
func (d *Daemon) Wait(timeout time.Duration) error {
	select {
	case <-d.exited:
		return d.err
	case <-time.After(timeout):
		return fmt.Errorf("berth (pid %d) still running after %v", d.cmd.Process.Pid, timeout)
	}
}

// Exited reports whether the daemon process has ended.
func (d *Daemon) Exited() bool {
	select {
	case <-d.exited:
		return true
	default:
		return false
	}
}

// Logs returns what the daemon wrote so far.
func (d *Daemon) Logs() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

func (d *Daemon) teardown(t testing.TB) {
	if d.Conn != nil {
		if !d.Exited() {
			d.removePods(t)
		}
		d.Conn.Close()
	}
	if !d.Exited() {
		_ = d.Signal(syscall.SIGTERM)
		if err := d.Wait(30 * time.Second); err != nil && !d.Exited() {
			t.Errorf("berth did not stop on SIGTERM; killing it: %v", err)
			_ = d.Signal(syscall.SIGKILL)
			<-d.exited
		}
	}
	if t.Failed() {
		t.Logf("--- berth log (%s) ---\n%s", d.LogPath, d.Logs())
	}
	for _, dir := range []string{d.Root, d.State} {
		killProcessesReferring(t, dir)
		unmountUnder(t, dir)
	}
	removeLeftoverPodCgroups(t, d.Root)
	os.Remove(d.Socket)
}

// removePods removes every pod sandbox the daemon still has, so that its
// network allocations, iptables rules and cgroups go the supported way.
func (d *Daemon) removePods(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return // not built yet, or the daemon is wedged: the sweep below still runs
	}
	for _, sb := range list.Items {
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			t.Errorf("cleanup: remove pod sandbox %s: %v", sb.Id, err)
		}
	}
}

// removeLeftoverPodCgroups removes the berth-owned pod cgroups that sandbox
// records still name: a test that killed its daemon leaves its pods behind.
func removeLeftoverPodCgroups(t testing.TB, root string) {
	// Containers first: their cgroups are below the pods'.
	ctrRecords, _ := filepath.Glob(filepath.Join(root, "containers", "*.json"))
	for _, rec := range ctrRecords {
		b, err := os.ReadFile(rec)
		if err != nil {
			continue
		}
		var c struct {
			Cgroup struct {
				Path string `json:"path"`
			} `json:"cgroup"`
		}
		if json.Unmarshal(b, &c) == nil && strings.Contains(c.Cgroup.Path, "berth") {
			removeCgroupEverywhere(t, c.Cgroup.Path, true)
		}
	}
	records, _ := filepath.Glob(filepath.Join(root, "sandboxes", "*.json"))
	for _, rec := range records {
		b, err := os.ReadFile(rec)
		if err != nil {
			continue
		}
		var sb struct {
			Cgroup struct {
				Path  string `json:"path"`
				Owned bool   `json:"owned"`
			} `json:"cgroup"`
			PIDHolder *struct {
				PID       int    `json:"pid"`
				StartTime uint64 `json:"start_time"`
			} `json:"pid_holder"`
			Monitor *struct {
				PID       int    `json:"pid"`
				StartTime uint64 `json:"start_time"`
			} `json:"monitor"`
		}
		if json.Unmarshal(b, &sb) != nil {
			continue
		}
		// Both run in sessions of their own.
		if h := sb.PIDHolder; h != nil && h.PID > 0 && processStartTime(h.PID) == h.StartTime {
			_ = unix.Kill(h.PID, unix.SIGKILL)
		}
		if m := sb.Monitor; m != nil && m.PID > 0 && processStartTime(m.PID) == m.StartTime {
			_ = unix.Kill(m.PID, unix.SIGKILL)
			t.Logf("killed leftover pod monitor %d", m.PID)
		}
		if !sb.Cgroup.Owned || sb.Cgroup.Path == "" || !strings.Contains(sb.Cgroup.Path, "berth") {
			continue
		}
		removeCgroupEverywhere(t, sb.Cgroup.Path, false)
	}
}

// removeCgroupEverywhere removes a cgroup from every hierarchy, killing its
// processes first if asked.
func removeCgroupEverywhere(t testing.TB, path string, kill bool) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", path))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", path))
	for _, dir := range dirs {
		if kill {
			if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						_ = unix.Kill(pid, unix.SIGKILL)
					}
				}
			}
		}
		for i := 0; i < 100; i++ { // killed processes leave the cgroup asynchronously
			err := os.Remove(dir)
			if err == nil {
				t.Logf("removed leftover cgroup %s", dir)
			}
			if err == nil || !errors.Is(err, unix.EBUSY) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// processStartTime is field 22 of /proc/<pid>/stat (0 if unreadable): with
// the PID it identifies a process across PID reuse.
func processStartTime(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(fields[19], 10, 64)
	return v
}

// killProcessesReferring SIGKILLs processes whose command line names dir:
// monitors and other helpers the daemon started for this test.
func killProcessesReferring(t testing.TB, dir string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		t.Logf("killing leftover process %d: %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		_ = unix.Kill(pid, unix.SIGKILL)
	}
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(t testing.TB, dir string) {
	mounts, err := MountsUnder(dir)
	if err != nil {
		t.Errorf("read mounts: %v", err)
		return
	}
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			t.Errorf("unmount %s: %v", m, err)
		}
	}
}

// MountsUnder lists the mount points at or below dir, deepest first.
func MountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dir = filepath.Clean(dir)
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, sc.Err()
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ShortTempDir is a temp dir with a short path, for unix sockets (their path
// is limited to 107 bytes and t.TempDir() includes the test's name).
func ShortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "berth-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
