package containerops

// The ops on real containers: the test binary is the helper (run as a
// subprocess, as the monitor runs it) and the containers' init; the test
// process is a child subreaper, so that a created init becomes its child
// once the helper exited, as it becomes the monitor's.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-runtime/berth/internal/libctinit"
	"github.com/berth-runtime/berth/sandbox/monitorapi"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	libctinit.RunIfInit()
	if len(os.Args) > 1 && os.Args[1] == Command {
		os.Exit(Main(os.Args[2:]))
	}
	if os.Getenv("BERTH_INTEGRATION") == "1" && os.Geteuid() == 0 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}

func integration(t *testing.T) {
	t.Helper()
	if os.Getenv("BERTH_INTEGRATION") != "1" {
		t.Skip("set BERTH_INTEGRATION=1 (as root) to run real containers")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// fixture is a libcontainer root, a busybox rootfs and a cgroup parent.
type fixture struct {
	t        *testing.T
	root     string
	dir      string
	rootfs   string
	cgParent string
}

func newFixture(t *testing.T) *fixture {
	integration(t)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	f := &fixture{t: t, dir: t.TempDir(), cgParent: "/berth-containerops-test-" + hex.EncodeToString(rnd[:])}
	f.root = filepath.Join(f.dir, "runc")
	f.rootfs = filepath.Join(f.dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(f.rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("busybox-static is needed: %v", err)
	}
	if err := os.WriteFile(filepath.Join(f.rootfs, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "sleep", "true"} {
		if err := os.Link(filepath.Join(f.rootfs, "bin", "busybox"), filepath.Join(f.rootfs, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount(f.rootfs, f.rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(f.rootfs, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	t.Cleanup(f.cleanupCgroups)
	return f
}

// bundle writes a bundle for id and returns its directory.
func (f *fixture) bundle(id string, args []string, hostPID bool) string {
	dir := filepath.Join(f.dir, "bundles", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		f.t.Fatal(err)
	}
	ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.UTSNamespace}, {Type: specs.IPCNamespace}}
	if !hostPID {
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	pids := int64(100)
	spec := specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: f.rootfs},
		Process: &specs.Process{Args: args, Env: []string{"PATH=/bin"}, Cwd: "/", NoNewPrivileges: true},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: f.cgParent + "/" + id,
			Namespaces:  ns,
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
				Pids:    &specs.LinuxPids{Limit: &pids},
			},
		},
	}
	b, err := json.Marshal(spec)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		f.t.Fatal(err)
	}
	return dir
}

// helper runs the test binary as `container-op <args>` with the given
// descriptors 3, 4, ... and returns its exit status and output.
func (f *fixture) helper(stdin string, files []*os.File, args ...string) (int, string) {
	f.t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{Command}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.ExtraFiles = files
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		f.t.Fatal(err)
	}
	if errOut.Len() > 0 {
		f.t.Logf("helper %s stderr:\n%s", args[0], errOut.String())
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// create creates id with /dev/null as stdio and returns its Result.
func (f *fixture) create(id string, args []string, hostPID bool) Result {
	f.t.Helper()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	defer null.Close()
	code, out := f.helper("", []*os.File{null, null, null}, "create", "--root", f.root, "--id", id, "--bundle", f.bundle(id, args, hostPID))
	if code != 0 {
		f.t.Fatalf("create %s: exit %d: %s", id, code, out)
	}
	var res Result
	if err := json.Unmarshal([]byte(out), &res); err != nil || strings.Count(out, "\n") != 1 {
		f.t.Fatalf("create %s: output %q: %v", id, out, err)
	}
	return res
}

// reap waits for the init pid, this process's child now that the helper
// is gone.
func (f *fixture) reap(pid int) unix.WaitStatus {
	f.t.Helper()
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
		f.t.Fatalf("wait for %d: %v", pid, err)
	}
	return ws
}

func (f *fixture) cgroupFile(controller, id, file string) string {
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, f.cgParent, id, file))
	if err != nil {
		f.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func (f *fixture) cleanupCgroups() {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, r := range roots {
		d := filepath.Join(r, f.cgParent)
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() {
				f.t.Errorf("cgroup left: %s", filepath.Join(d, e.Name()))
				_ = unix.Rmdir(filepath.Join(d, e.Name()))
			}
		}
		for try := 0; try < 50; try++ {
			if err := unix.Rmdir(d); err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestCreateKillDelete(t *testing.T) {
	f := newFixture(t)
	res := f.create("c1", []string{"sleep", "1000"}, false)
	if res.Pid <= 0 || !res.OwnPidNS {
		t.Fatalf("result %+v", res)
	}
	if _, err := os.Stat(filepath.Join(res.CgroupPaths["memory"], "memory.oom_control")); err != nil {
		t.Fatalf("cgroup paths %v: %v", res.CgroupPaths, err)
	}
	// The init was left waiting on the exec fifo, and is now ours.
	if _, err := os.Stat(filepath.Join(f.root, "c1", "exec.fifo")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(res.Pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	if ppid := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))[1]; ppid != strconv.Itoa(os.Getpid()) {
		t.Fatalf("the init's parent is %s, want this subreaper", ppid)
	}
	// A second create of the same ID is refused, and leaves it alone.
	null, _ := os.Open(os.DevNull)
	defer null.Close()
	code, out := f.helper("", []*os.File{null, null, null}, "create", "--root", f.root, "--id", "c1", "--bundle", f.bundle("c1", []string{"true"}, false))
	var fl Failure
	_ = json.Unmarshal([]byte(out), &fl)
	if code != 1 || fl.Code != monitorapi.CodeAlreadyExists {
		t.Fatalf("second create: exit %d, %q", code, out)
	}
	// update, then kill: the init ends by SIGKILL.
	if code, out := f.helper(`{"pids": {"limit": 42}}`, nil, "update", "--root", f.root, "--id", "c1"); code != 0 {
		t.Fatalf("update: exit %d %q", code, out)
	}
	if got := f.cgroupFile("pids", "c1", "pids.max"); got != "42" {
		t.Fatalf("pids.max %s", got)
	}
	if code, out := f.helper("", nil, "kill", "--root", f.root, "--id", "c1", "--signal", "9"); code != 0 {
		t.Fatalf("kill: exit %d %q", code, out)
	}
	if ws := f.reap(res.Pid); !ws.Signaled() || ws.Signal() != unix.SIGKILL {
		t.Fatalf("init status %v", ws)
	}
	// A stopped container: no update, but delete removes everything.
	code, out = f.helper(`{"pids": {"limit": 43}}`, nil, "update", "--root", f.root, "--id", "c1")
	fl = Failure{}
	_ = json.Unmarshal([]byte(out), &fl)
	if code != 1 || fl.Code != monitorapi.CodeFailedPrecondition {
		t.Fatalf("update of a stopped container: exit %d %q", code, out)
	}
	for range 2 { // the second finds nothing: still success
		if code, out := f.helper("", nil, "delete", "--root", f.root, "--id", "c1"); code != 0 {
			t.Fatalf("delete: exit %d %q", code, out)
		}
	}
	if _, err := os.Stat(filepath.Join(f.root, "c1")); !os.IsNotExist(err) {
		t.Fatalf("state left: %v", err)
	}
	if _, err := os.Stat(res.CgroupPaths["memory"]); !os.IsNotExist(err) {
		t.Fatalf("cgroup left: %v", err)
	}
}

func TestKillAllAndDeleteSharedPIDNamespace(t *testing.T) {
	f := newFixture(t)
	res := f.create("c2", []string{"sh", "-c", "sleep 1000 & sleep 1000 & wait"}, true)
	if res.OwnPidNS {
		t.Fatalf("result %+v: the host's PID namespace is not the container's own", res)
	}
	// Let it run: open the exec fifo, as the monitor's start does.
	fifo, err := os.OpenFile(filepath.Join(f.root, "c2", "exec.fifo"), os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(fifo); err != nil || string(b) != "0" { // "0", then EOF at exec
		t.Fatalf("exec fifo: %q, %v", b, err)
	}
	fifo.Close()
	procs := filepath.Join(res.CgroupPaths["pids"], "cgroup.procs")
	pids := func() []string { b, _ := os.ReadFile(procs); return strings.Fields(string(b)) }
	waitFor(t, func() bool { return len(pids()) == 3 }, "three processes")
	before := pids()
	if code, out := f.helper("", nil, "kill", "--root", f.root, "--id", "c2", "--signal", "9", "--all"); code != 0 {
		t.Fatalf("kill --all: exit %d %q", code, out)
	}
	if ws := f.reap(res.Pid); !ws.Signaled() || ws.Signal() != unix.SIGKILL {
		t.Fatalf("init status %v", ws)
	}
	// Its sleeps were killed too (no delete yet, which would kill them),
	// and reparented here: reap them.
	waitFor(t, func() bool { return len(pids()) == 0 }, "no process left")
	for _, p := range before {
		pid, _ := strconv.Atoi(p)
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err == nil && (!ws.Signaled() || ws.Signal() != unix.SIGKILL) {
			t.Errorf("process %d: %v", pid, ws)
		}
	}
	if code, out := f.helper("", nil, "delete", "--root", f.root, "--id", "c2"); code != 0 {
		t.Fatalf("delete: exit %d %q", code, out)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
