package monitor_test

// Test fixtures: the busybox rootfs, the OCI spec of a test container and
// the test's cgroups.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// applets are hard-linked to busybox in the test rootfs.
var applets = []string{"sh", "sleep", "echo", "cat", "tail", "yes", "head", "true", "false", "kill", "tr", "printf", "seq", "stty"}

// makeRootfs builds a busybox rootfs, bind-mounted onto itself as
// libcontainer wants a mount point.
func makeRootfs(tb testing.TB) string {
	tb.Helper()
	rootfs := filepath.Join(tb.TempDir(), "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		tb.Skipf("busybox-static is needed: %v", err)
	}
	bin := filepath.Join(rootfs, "bin", "busybox")
	if err := os.WriteFile(bin, bb, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, a := range applets {
		if err := os.Link(bin, filepath.Join(rootfs, "bin", a)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(rootfs, unix.MNT_DETACH); err != nil {
			tb.Errorf("unmount %s: %v", rootfs, err)
		}
	})
	return rootfs
}

// cgroupDirs lists the test parent's directory in every hierarchy.
func cgroupDirs(parent string) []string {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		roots = []string{"/sys/fs/cgroup"}
	}
	var out []string
	for _, r := range roots {
		d := filepath.Join(r, parent)
		if _, err := os.Stat(d); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// killCgroupTree SIGKILLs processes left in the test's cgroups: only
// containers this test started can be there.
func killCgroupTree(tb testing.TB, parent string) {
	for _, d := range cgroupDirs(parent) {
		_ = filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || e.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(b)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 0 {
					tb.Logf("cleanup: killing leftover pid %d in %s", pid, path)
					_ = unix.Kill(pid, unix.SIGKILL)
				}
			}
			return nil
		})
	}
}

// removeCgroupTree removes the test's cgroups, deepest first.
func removeCgroupTree(tb testing.TB, parent string) {
	for _, d := range cgroupDirs(parent) {
		var dirs []string
		_ = filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			var err error
			for try := 0; try < 50; try++ {
				if err = unix.Rmdir(dirs[i]); err == nil || errors.Is(err, unix.ENOENT) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, unix.ENOENT) {
				tb.Errorf("cleanup: rmdir %s: %v", dirs[i], err)
			}
		}
	}
}

// ctrOpts shape a test container.
type ctrOpts struct {
	tty, stdin  bool
	stdinOnce   bool
	noLog       bool
	hostPID     bool  // no PID namespace: the process is not an init
	memoryLimit int64 // bytes, 0: none
	pidsLimit   int64
}

// testSpec is a minimal but real OCI spec, close to `runc spec`.
func testSpec(rootfs, cgroupsPath string, args []string, o ctrOpts) *specs.Spec {
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.NetworkNamespace}}
	if !o.hostPID {
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	res := &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
	if o.memoryLimit > 0 {
		res.Memory = &specs.LinuxMemory{Limit: &o.memoryLimit}
	}
	if o.pidsLimit > 0 {
		res.Pids = &specs.LinuxPids{Limit: &o.pidsLimit}
	}
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: rootfs},
		Process: &specs.Process{
			Terminal:        o.tty,
			Args:            args,
			Env:             []string{"PATH=/bin", "HOME=/"},
			Cwd:             "/",
			NoNewPrivileges: true,
			Capabilities:    &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		},
		Hostname: "test",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: cgroupsPath,
			Namespaces:  ns,
			Resources:   res,
			MaskedPaths: []string{"/proc/kcore", "/sys/firmware"},
		},
	}
}
