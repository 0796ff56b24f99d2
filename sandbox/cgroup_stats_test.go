package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

func TestPodCgroupProcessAndStats(t *testing.T) {
	requireRoot(t)
	parent := testTop(t) + "/pod" + randomName(t)
	cg, err := EnsurePodCgroup(context.Background(), DriverCgroupfs, parent, "p1",
		&Resources{CPUShares: 512, MemoryLimit: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	empty, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if empty.Pids != 0 || empty.MemoryLimit != 256<<20 || empty.Timestamp.IsZero() {
		t.Errorf("Stats of an empty cgroup = %+v", *empty)
	}

	// The child waits on stdin until it is in the cgroup, then re-executes
	// itself so that it allocates there (v1 does not move memory charges
	// along with a process), burns CPU for a bounded time and sleeps.
	cmd := exec.Command("sh", "-c", `read x; exec sh -c 'i=0; while [ $i -lt 20000000 ]; do i=$((i+1)); done; exec sleep 60'`)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	child := startChild(t, cmd)
	pid := child.Process.Pid
	if err := cg.AddProcess(pid); err != nil {
		t.Fatal(err)
	}
	for _, controller := range []string{"memory", "cpu", "pids"} {
		if !slices.Contains(procs(t, cgroupDir(t, parent, controller)), pid) {
			t.Errorf("process %d not in the %s cgroup %s", pid, controller, parent)
		}
	}
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}

	// memory.stat counters (page faults) lag behind memory usage: the kernel
	// flushes them in batches, or every 2s.
	first := waitStats(t, cg, "a process, memory and CPU use", func(s *CgroupStats) bool {
		return s.Pids >= 1 && s.MemoryUsage > 0 && s.CPUUsageNanos > 0 && s.PageFaults > 0
	})
	later := waitStats(t, cg, "CPU use to grow", func(s *CgroupStats) bool {
		return s.CPUUsageNanos > first.CPUUsageNanos
	})
	t.Logf("stats: %+v", *later)
	if !later.Timestamp.After(first.Timestamp) {
		t.Errorf("timestamps %v then %v", first.Timestamp, later.Timestamp)
	}
	if later.MemoryWorkingSet > later.MemoryUsage || later.MemoryWorkingSet == 0 {
		t.Errorf("working set %d, usage %d", later.MemoryWorkingSet, later.MemoryUsage)
	}
	if later.MemoryLimit != 256<<20 || later.MemoryAvailable != later.MemoryLimit-later.MemoryWorkingSet {
		t.Errorf("limit %d, available %d, working set %d", later.MemoryLimit, later.MemoryAvailable, later.MemoryWorkingSet)
	}

	if err := cg.Remove(); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Remove with a process inside = %v; want FailedPrecondition", err)
	}
	if n, of := existsIn(t, parent); n != of {
		t.Errorf("failed Remove left the cgroup in only %d of %d hierarchies", n, of)
	}
	if err := cg.AddProcess(0); !errdefs.IsInvalidArgument(err) {
		t.Errorf("AddProcess(0) = %v; want InvalidArgument", err)
	}

	_ = child.Process.Kill()
	_ = child.Wait()
	if err := cg.Remove(); err != nil {
		t.Fatalf("Remove after the process exited: %v", err)
	}
	if n, _ := existsIn(t, parent); n != 0 {
		t.Errorf("pod cgroup left in %d hierarchies", n)
	}
}

// waitStats polls Stats until ok or a generous deadline.
func waitStats(t *testing.T, cg *PodCgroup, what string, ok func(*CgroupStats) bool) *CgroupStats {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := cg.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, *s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func procs(t *testing.T, dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		out = append(out, pid)
	}
	return out
}

// Helpers shared by the cgroup tests.

// requireRoot skips cgroup tests unless root; BERTH_INTEGRATION=1 makes a
// missing root a failure instead.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("BERTH_INTEGRATION") == "1" {
		t.Fatal("cgroup integration tests need root")
	}
	t.Skip("cgroup integration tests need root")
}

func randomName(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// testTop returns a fresh top-level cgroup name ("/berth-test-<random>")
// that is removed from every hierarchy, leaf first, when the test ends.
func testTop(t *testing.T) string {
	top := "/berth-test-" + randomName(t)
	t.Cleanup(func() { removeEverywhere(t, top) })
	return top
}

// hierarchies are the cgroup mount points: one on v2; on v1 one per
// controller plus name=systemd and, on hybrid hosts, the unified one.
func hierarchies(t *testing.T) []string {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range mounts {
		out = append(out, m.Mountpoint)
	}
	return out
}

func removeEverywhere(t *testing.T, rel string) {
	for _, h := range hierarchies(t) {
		if err := rmdirTree(filepath.Join(h, rel)); err != nil {
			t.Errorf("clean up: %v", err)
		}
	}
}

func rmdirTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := rmdirTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: dir, Err: err}
	}
	return nil
}

// cgroupDir is the directory of cgroup rel for controller.
func cgroupDir(t *testing.T, rel, controller string) string {
	t.Helper()
	if cgroups.IsCgroup2UnifiedMode() {
		return filepath.Join("/sys/fs/cgroup", rel)
	}
	mnt, err := cgroups.FindCgroupMountpoint("", controller)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(mnt, rel)
}

// cgroupValue reads file of cgroup rel ("memory.max", "cpu.shares", ...).
func cgroupValue(t *testing.T, rel, file string) string {
	t.Helper()
	controller, _, _ := strings.Cut(file, ".")
	b, err := os.ReadFile(filepath.Join(cgroupDir(t, rel, controller), file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// startChild starts cmd and kills and reaps it when the test ends.
func startChild(t *testing.T, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // if the test binary dies first
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// existsIn reports in how many of the hierarchies cgroup rel exists. v1's
// devices hierarchy is left out: pod cgroups restrict no devices, so neither
// kubelet nor berth creates them there.
func existsIn(t *testing.T, rel string) (n, of int) {
	devices, _ := cgroups.FindCgroupMountpoint("", "devices")
	for _, h := range hierarchies(t) {
		if h == devices {
			continue
		}
		if _, err := os.Stat(filepath.Join(h, rel)); err == nil {
			n++
		}
		of++
	}
	return n, of
}
