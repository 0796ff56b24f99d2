package libctinit_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"

	"github.com/berth-runtime/berth/internal/libctinit"
)

// cgroupParent is the parent cgroup (in every hierarchy) under which test
// containers are placed.
const cgroupParent = "/berth-test"

// threadCheckEnv makes "<test binary> init" report whether its main
// goroutine stays on the main thread instead of becoming a container init.
const threadCheckEnv = "LIBCTINIT_TEST_THREAD_CHECK"

func TestMain(m *testing.M) {
	if os.Getenv(threadCheckEnv) == "1" {
		os.Exit(reportMainThread())
	}
	// libcontainer re-executes this very test binary as "<exe> init" to set up
	// each container; that child must not run the tests.
	libctinit.RunIfInit()
	os.Exit(m.Run())
}

// reportMainThread gives the scheduler every chance to move the main
// goroutine to another thread (blocking system calls, whose P the other,
// busy goroutines take meanwhile) and exits 0 if it never left the main
// thread.
func reportMainThread() int {
	stop := make(chan struct{})
	for range 4 {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
					runtime.Gosched()
				}
			}
		}()
	}
	defer close(stop)
	for i := range 300 {
		ts := unix.Timespec{Nsec: 200_000}
		_ = unix.Nanosleep(&ts, nil) // a blocking syscall, unlike time.Sleep
		if tid := unix.Gettid(); tid != unix.Getpid() {
			fmt.Printf("main goroutine on thread %d, not the main thread %d, after %d sleeps\n", tid, unix.Getpid(), i)
			return 1
		}
	}
	return 0
}

// A container init's main goroutine must stay on the main thread, so that
// its final execve comes from the thread group leader (see libctinit's
// init): otherwise /proc/<pid>/ns/* of a just-started container vanishes
// for a moment and an exec into it fails.
func TestInitModeRunsMainOnMainThread(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		cmd := exec.Command(self, "init")
		cmd.Env = append(os.Environ(), threadCheckEnv+"=1", "GOMAXPROCS=2")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
}

func TestRunIfInitReturnsWhenNotInit(t *testing.T) {
	// We are obviously not running as "init" here; RunIfInit must be a no-op.
	libctinit.RunIfInit()
}

func TestContainerLifecycle(t *testing.T) {
	requireRoot(t)

	rootfs := newRootfs(t)
	id := randomID(t)
	cgPath := cgroupParent + "/" + id

	var stdout, stderr bytes.Buffer
	container, status, err := runContainer(t, rootfs, id, cgPath,
		[]string{"/bin/sh", "-c", "echo hello-$((6*7)); exit 3"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run container: %v (stderr: %q)", err, stderr.String())
	}
	if got := strings.TrimSpace(stdout.String()); got != "hello-42" {
		t.Errorf("stdout = %q, want %q (stderr: %q)", got, "hello-42", stderr.String())
	}
	if status != 3 {
		t.Errorf("exit status = %d, want 3 (stderr: %q)", status, stderr.String())
	}

	var primary string
	if cgroups.IsCgroup2UnifiedMode() {
		primary = filepath.Join("/sys/fs/cgroup", cgPath)
	} else {
		primary = filepath.Join("/sys/fs/cgroup/memory", cgPath)
	}
	// The container has exited but is not destroyed yet: its cgroup must
	// still exist (otherwise the check below would prove nothing).
	if _, err := os.Stat(primary); err != nil {
		t.Errorf("container cgroup before Destroy: %v", err)
	}

	if err := container.Destroy(); err != nil {
		t.Fatalf("destroy: %v", err)
	}

	// After Destroy, the container's cgroup must be gone in every hierarchy.
	if _, err := os.Stat(primary); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("container cgroup %s still exists after Destroy (stat err: %v)", primary, err)
	}
	for _, mnt := range cgroupMountpoints(t) {
		p := filepath.Join(mnt, cgPath)
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("container cgroup %s still exists after Destroy (stat err: %v)", p, err)
		}
	}
}

// runContainer creates a container with the given rootfs and cgroup path, runs
// args as its init process, waits for it and returns the (stopped) container
// and the exit status. The caller should Destroy the container; a cleanup
// does it (idempotently) in any case.
func runContainer(tb testing.TB, rootfs, id, cgPath string, args []string, stdout, stderr io.Writer) (*libcontainer.Container, int, error) {
	tb.Helper()

	spec := specconv.Example()
	spec.Root.Path = rootfs
	spec.Process.Terminal = false
	spec.Process.Args = args
	spec.Hostname = "berth-test"
	spec.Linux.CgroupsPath = cgPath

	config, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:       id,
		UseSystemdCgroup: false,
		NoPivotRoot:      false,
		NoNewKeyring:     false,
		Spec:             spec,
		RootlessEUID:     false,
		RootlessCgroups:  false,
	})
	if err != nil {
		return nil, 0, err
	}

	// Remove the (otherwise empty) parent cgroup in every hierarchy once all
	// containers of this test are gone. Registered before the container's own
	// cleanup so it runs after it (cleanups are LIFO).
	tb.Cleanup(func() { removeCgroupParent(tb) })

	container, err := libcontainer.Create(filepath.Join(tb.TempDir(), "state"), id, config)
	if err != nil {
		return nil, 0, err
	}
	tb.Cleanup(func() {
		// Best effort: kill whatever is left and tear the container down.
		// Destroy of an already destroyed container is a no-op.
		if st, err := container.Status(); err == nil && st != libcontainer.Stopped {
			_ = container.Signal(unix.SIGKILL)
		}
		if err := container.Destroy(); err != nil {
			tb.Errorf("cleanup: destroy container %s: %v", id, err)
		}
	})

	process := &libcontainer.Process{
		Args:   spec.Process.Args,
		Env:    spec.Process.Env,
		Cwd:    spec.Process.Cwd,
		Stdout: stdout,
		Stderr: stderr,
		Init:   true,
	}
	if err := container.Run(process); err != nil {
		return nil, 0, err
	}

	// Wait returns the ProcessState together with an *exec.ExitError for a
	// non-zero exit; only other errors are real failures.
	state, err := process.Wait()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return nil, 0, err
	}
	if state == nil {
		return nil, 0, errors.New("no process state after wait")
	}
	status := state.ExitCode()
	if ws, ok := state.Sys().(unix.WaitStatus); ok && ws.Signaled() {
		status = 128 + int(ws.Signal())
	}
	return container, status, nil
}

// newRootfs builds a minimal busybox rootfs in a temporary directory and
// bind-mounts it onto itself; the mount is removed on cleanup.
func newRootfs(tb testing.TB) string {
	tb.Helper()

	rootfs := filepath.Join(tb.TempDir(), "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc", "root"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(rootfs, "tmp"), 0o1777); err != nil {
		tb.Fatal(err)
	}
	busybox := filepath.Join(rootfs, "bin", "busybox")
	if err := copyFile("/bin/busybox", busybox, 0o755); err != nil {
		tb.Fatalf("copy busybox (is busybox-static installed?): %v", err)
	}
	if err := os.Link(busybox, filepath.Join(rootfs, "bin", "sh")); err != nil {
		tb.Fatal(err)
	}

	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		tb.Fatalf("bind-mount rootfs: %v", err)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(rootfs, 0); err != nil {
			tb.Logf("unmount %s: %v; retrying with MNT_DETACH", rootfs, err)
			if err := unix.Unmount(rootfs, unix.MNT_DETACH); err != nil {
				tb.Errorf("unmount %s: %v", rootfs, err)
			}
		}
		mounted, err := mountinfo.GetMounts(mountinfo.PrefixFilter(rootfs))
		if err != nil {
			tb.Errorf("read mountinfo: %v", err)
		}
		for _, m := range mounted {
			tb.Errorf("mount left behind: %s", m.Mountpoint)
		}
	})
	return rootfs
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// cgroupMountpoints returns the mountpoints of all cgroup (v1) and cgroup2
// hierarchies visible to this process.
func cgroupMountpoints(tb testing.TB) []string {
	tb.Helper()
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		tb.Fatalf("read mountinfo: %v", err)
	}
	var mnts []string
	for _, m := range mounts {
		mnts = append(mnts, m.Mountpoint)
	}
	return mnts
}

// removeCgroupParent removes cgroupParent from every hierarchy if it is
// empty. It is best effort: a concurrently running test may still use it, in
// which case rmdir fails with EBUSY/ENOTEMPTY and the last one out cleans up.
func removeCgroupParent(tb testing.TB) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		tb.Logf("read mountinfo: %v", err)
		return
	}
	for _, m := range mounts {
		_ = unix.Rmdir(filepath.Join(m.Mountpoint, cgroupParent))
	}
}

func randomID(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return "berth-test-" + hex.EncodeToString(b)
}

// requireRoot skips the test unless running as root; with
// BERTH_INTEGRATION=1 it fails instead, so CI cannot silently skip it.
func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("BERTH_INTEGRATION") == "1" {
		tb.Fatal("BERTH_INTEGRATION=1 but not running as root")
	}
	tb.Skip("needs root to create containers (set BERTH_INTEGRATION=1 to make this a failure)")
}
