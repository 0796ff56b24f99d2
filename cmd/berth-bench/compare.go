package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// compareEnv is a private berth and a private containerd under one work
// directory, sharing one CNI network (the same conflist, bridge and IP
// store) and one registry config dir.
type compareEnv struct {
	dir, cniBin, bridge string
	berth, containerd   *daemon
	// ctrdMntNS is containerd's mount namespace (see startContainerd).
	ctrdMntNS string
}

func (e *compareEnv) path(p ...string) string { return filepath.Join(append([]string{e.dir}, p...)...) }

// runCompare runs the benchmark on a berth and a containerd it starts
// itself, interleaved, and removes everything afterwards.
func runCompare(ctx context.Context, c *config) (rep *Report, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("compare starts container runtimes: run it as root")
	}
	if c.regName == "" {
		return nil, errors.New("compare needs --registry-name (containerd's sandbox_image names it)")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(c.berthBin), "berth-monitor")); err != nil {
		return nil, fmt.Errorf("berth-monitor beside %s: %w (run `make build`)", c.berthBin, err)
	}
	var ctrdBin string
	if slices.Contains(c.runtimes, "containerd") {
		if ctrdBin, err = exec.LookPath(c.containerdBin); err != nil {
			return nil, fmt.Errorf("%w (make bench-compare installs Debian's containerd)", err)
		}
	}
	e := &compareEnv{bridge: "bbench" + randomHex(3)}
	if e.cniBin, err = filepath.Abs(c.cniBinDir); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(e.cniBin, "bridge")); err != nil {
		return nil, fmt.Errorf("CNI plugins: %w (run `make cni-plugins`)", err)
	}
	// Always a new directory: cleanup removes it whole.
	if e.dir, err = os.MkdirTemp(c.workDir, "berth-bench-"); err != nil {
		return nil, err
	}
	// Pods in user namespaces are not used, but keep the layout searchable
	// as /run/berth is on a node.
	if err := os.Chmod(e.dir, 0o711); err != nil {
		return nil, err
	}
	defer func() {
		err = errors.Join(err, e.cleanup(c))
	}()
	if err := e.writeConfigs(c); err != nil {
		return nil, err
	}
	// Private copies of berth and berth-monitor: the daemon's PSS counts its
	// binary's pages, shared (and so split) with every other process that
	// maps the same file — another berth started from bin/berth on this
	// machine would halve it.
	berthBin := e.path("bin", "berth")
	for _, name := range []string{"berth", "berth-monitor", "berth-helper"} {
		src := filepath.Join(filepath.Dir(c.berthBin), name)
		if _, err := os.Stat(src); err != nil && name == "berth-helper" {
			continue // berth falls back to its own binary as the helper
		}
		if err := copyFile(src, e.path("bin", name)); err != nil {
			return nil, err
		}
	}
	var specs []targetSpec
	for _, name := range c.runtimes {
		var d *daemon
		var sel procSelector
		switch name {
		case "berth":
			if e.berth, err = startDaemon("berth", exec.Command(berthBin, "--config", e.path("berth", "berth.toml")), e.path("berth", "berth.log")); err != nil {
				return nil, err
			}
			d, sel = e.berth, procSelector{Name: "berth-monitor", Match: e.path("berth", "state")}
		case "containerd":
			if e.containerd, err = e.startContainerd(ctrdBin); err != nil {
				return nil, err
			}
			d, sel = e.containerd, procSelector{Name: "containerd-shim-runc-v2", Match: e.containerd.socket}
		default:
			return nil, fmt.Errorf("--runtimes: unknown runtime %q (berth, containerd)", name)
		}
		if err := d.waitServing(ctx, "unix://"+d.socket); err != nil {
			return nil, err
		}
		sel.DaemonPID = d.pid()
		specs = append(specs, targetSpec{name: name, endpoint: "unix://" + d.socket, sel: sel})
		fmt.Fprintf(os.Stderr, "%s: pid %d, log %s\n", name, d.pid(), d.log)
	}
	fmt.Fprintf(os.Stderr, "work dir %s, bridge %s\n", e.dir, e.bridge)
	return runBench(ctx, c, specs, []string{e.path("certs.d")})
}

// writeConfigs writes the shared CNI conflist and both daemons' configs.
func (e *compareEnv) writeConfigs(c *config) error {
	for _, d := range []string{"bin", "net.d", "certs.d", "ipam", "berth", "containerd/run-upper", "containerd/run-work"} {
		if err := os.MkdirAll(e.path(d), 0o711); err != nil {
			return err
		}
	}
	subnet, err := freeSubnet()
	if err != nil {
		return err
	}
	// No portmap (no host ports) and no ipMasq: nothing in iptables.
	conflist := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "berth-bench",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}}
  ]
}
`, e.bridge, e.path("ipam"), subnet)
	berth := fmt.Sprintf(`version = 1
listen = "unix://%s"
root = %q
state = %q

[cni]
conf_dir = %q
bin_dirs = [%q]

[image]
registry_config_dir = %q
`, e.path("berth", "berth.sock"), e.path("berth", "root"), e.path("berth", "state"), e.path("net.d"), e.cniBin, e.path("certs.d"))
	// containerd 1.6 (Debian 12) config, version 2. restrict_oom_score_adj:
	// root lacks CAP_SYS_RESOURCE here. netns_mounts_under_state_dir keeps
	// its netns pins out of /run/netns; Root keeps runc's state out of
	// /run/containerd/runc.
	ctrd := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
oom_score = 0

[grpc]
  address = %[3]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[6]q
    conf_dir = %[7]q
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[8]q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[9]q
`, e.path("containerd", "root"), e.path("containerd", "state"), e.path("containerd", "containerd.sock"),
		e.path("containerd", "opt"), c.regName+"/"+pauseRepo, e.cniBin, e.path("net.d"), e.path("certs.d"),
		e.path("containerd", "runc"))
	for name, content := range map[string]string{
		"net.d/10-berth-bench.conflist": conflist,
		"berth/berth.toml":              berth,
		"containerd/config.toml":        ctrd,
	} {
		if err := os.WriteFile(e.path(name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// freeSubnet picks a /22 in 10.126.0.0/16 that no host route uses (tests
// on this machine make 10.124.x.0/24 networks).
func freeSubnet() (string, error) {
	out, err := exec.Command("ip", "-4", "route", "show").Output()
	if err != nil {
		return "", fmt.Errorf("ip route: %w", err)
	}
	for range 64 {
		s := fmt.Sprintf("10.126.%d.0", 4*rand.IntN(64))
		if !strings.Contains(string(out), s) {
			return s + "/22", nil
		}
	}
	return "", errors.New("no free /22 in 10.126.0.0/16")
}

// startContainerd starts containerd in a mount namespace of its own, with
// an overlay on /run: containerd 1.6's shims put their sockets in
// /run/containerd/s whatever the config says, and the bench must not touch
// the host's /run/containerd. Everything containerd mounts (rootfs, netns
// pins, shm) also stays in that namespace, which ends with its last process.
func (e *compareEnv) startContainerd(bin string) (*daemon, error) {
	const script = `mount -t overlay overlay -o "lowerdir=/run,upperdir=$1,workdir=$2" /run && shift 2 && exec "$@"`
	cmd := exec.Command("/bin/sh", "-c", script, "sh", e.path("containerd", "run-upper"), e.path("containerd", "run-work"),
		bin, "--config", e.path("containerd", "config.toml"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	d, err := startDaemon("containerd", cmd, e.path("containerd", "containerd.log"))
	if err != nil {
		return nil, err
	}
	d.socket = e.path("containerd", "containerd.sock")
	e.ctrdMntNS, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", d.pid()))
	return d, nil
}

// daemon is a runtime process the bench started; it is only ever
// signalled by its PID.
type daemon struct {
	name, socket, log string
	cmd               *exec.Cmd
	exited            chan struct{}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func startDaemon(name string, cmd *exec.Cmd, logPath string) (*daemon, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Its own process group: a Ctrl-C on the bench must not reach it
	// before the bench removed its pods.
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, log: logPath, cmd: cmd, exited: make(chan struct{}),
		socket: filepath.Join(filepath.Dir(logPath), name+".sock")}
	go func() { _ = cmd.Wait(); close(d.exited) }()
	return d, nil
}

// waitServing waits until the daemon answers Version.
func (d *daemon) waitServing(ctx context.Context, endpoint string) error {
	conn, err := framework.Dial(endpoint)
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	deadline := time.Now().Add(time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := rt.Version(cctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-d.exited:
			log, _ := os.ReadFile(d.log)
			return fmt.Errorf("%s exited at start:\n%s", d.name, log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer on %s: %w", d.name, endpoint, err)
		}
	}
}

// stop sends SIGTERM, then SIGKILL after 30 s.
func (d *daemon) stop() error {
	if d == nil {
		return nil
	}
	select {
	case <-d.exited:
		return nil
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return nil
	case <-time.After(30 * time.Second):
	}
	_ = d.cmd.Process.Kill()
	<-d.exited
	return fmt.Errorf("%s did not stop on SIGTERM; killed", d.name)
}

func syscallKill(pid int) error { return unix.Kill(pid, unix.SIGKILL) }

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
