package sandbox

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestCPURate(t *testing.T) {
	var c statsCache
	t0 := time.Now()
	if r := c.cpuRate("a", t0, 5e9); r != 0 {
		t.Fatalf("first sample: rate %d, want 0", r)
	}
	// 1.5 CPU seconds over 2 seconds.
	if r := c.cpuRate("a", t0.Add(2*time.Second), 6.5e9); r != 750_000_000 {
		t.Fatalf("rate %d, want 750000000 nanocores", r)
	}
	// Another caller right after: the same rate, and the base stays.
	if r := c.cpuRate("a", t0.Add(2*time.Second+time.Millisecond), 6.6e9); r != 750_000_000 {
		t.Fatalf("sample 1ms later: rate %d, want the previous 750000000", r)
	}
	// A sample taken before the stored one (a slower concurrent caller).
	if r := c.cpuRate("a", t0.Add(time.Second), 6e9); r != 750_000_000 {
		t.Fatalf("out-of-order sample: rate %d", r)
	}
	if r := c.cpuRate("a", t0.Add(4*time.Second), 6.5e9); r != 0 {
		t.Fatalf("idle for 2s: rate %d, want 0", r)
	}
	// A cgroup made anew starts counting from zero.
	if r := c.cpuRate("a", t0.Add(6*time.Second), 1e6); r != 0 {
		t.Fatalf("after the counter restarted: rate %d, want 0", r)
	}
	if r := c.cpuRate("a", t0.Add(7*time.Second), 1e6+250_000_000); r != 250_000_000 {
		t.Fatalf("rate after restart %d", r)
	}
	if r := c.cpuRate("b", t0.Add(7*time.Second), 1e9); r != 0 {
		t.Fatalf("first sample of another sandbox: rate %d", r)
	}
	c.retain(func(id string) bool { return id == "b" })
	if _, ok := c.prev["a"]; ok || len(c.prev) != 1 {
		t.Fatalf("after retain: %v", c.prev)
	}
}

// A host-network pod needs no CNI, so the manager can run one here for real.
func TestManagerStats(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	m, err := NewManager(ctx, Options{
		Root: filepath.Join(dir, "root"), State: filepath.Join(dir, "state"), CgroupDriver: DriverCgroupfs,
	})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := m.Run(ctx, Config{
		Metadata:     Metadata{Name: "stats", Namespace: "test", UID: randomName(t)},
		Labels:       map[string]string{"app": "stats"},
		HostNetwork:  true,
		CgroupParent: testTop(t) + "/pod" + randomName(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Remove(ctx, sb.ID); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})

	first, err := m.Stats(ctx, sb.ID[:12])
	if err != nil {
		t.Fatal(err)
	}
	if first.Sandbox.ID != sb.ID || first.Cgroup == nil || first.Cgroup.Timestamp.IsZero() || first.CPUNanoCores != 0 {
		t.Fatalf("first Stats: %+v", first)
	}
	if len(first.Interfaces) != 0 || first.DefaultInterface != "" {
		t.Fatalf("a host-network pod reports interfaces %+v (default %q)", first.Interfaces, first.DefaultInterface)
	}

	// One process spinning in the pod cgroup uses about one CPU.
	child := startChild(t, exec.Command("sh", "-c", "while :; do :; done"))
	cg := LoadPodCgroup(sb.Cgroup)
	if err := cg.AddProcess(child.Process.Pid); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	list, err := m.ListStats(ctx, Filter{Labels: map[string]string{"app": "stats"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Sandbox.ID != sb.ID {
		t.Fatalf("ListStats by label: %+v", list)
	}
	rate := list[0].CPUNanoCores
	t.Logf("spinning process: %d nanocores, %d pids", rate, list[0].Cgroup.Pids)
	if rate < 50_000_000 || rate > uint64(runtime.NumCPU())*1_100_000_000 {
		t.Errorf("CPU rate of one spinning process: %d nanocores", rate)
	}
	if list[0].Cgroup.Pids < 1 || list[0].Cgroup.CPUUsageNanos <= first.Cgroup.CPUUsageNanos {
		t.Errorf("cgroup stats did not follow the process: %+v", *list[0].Cgroup)
	}
	if other, err := m.ListStats(ctx, Filter{Labels: map[string]string{"app": "other"}}); err != nil || len(other) != 0 {
		t.Errorf("ListStats of another label: %+v %v", other, err)
	}

	// The cgroup vanishes behind berth's back, as kubelet deletes a
	// terminated pod's cgroup before it removes the sandbox.
	_ = child.Process.Kill()
	_ = child.Wait()
	if err := cg.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Stats(ctx, sb.ID); !errdefs.IsNotFound(err) {
		t.Errorf("Stats without a cgroup: %v, want NotFound", err)
	}
	if list, err := m.ListStats(ctx, Filter{}); err != nil || len(list) != 0 {
		t.Errorf("ListStats with the only cgroup gone: %+v %v, want it left out", list, err)
	}
	if _, err := m.Stats(ctx, "no-such-pod"); !errdefs.IsNotFound(err) {
		t.Errorf("Stats of a missing sandbox: %v, want NotFound", err)
	}

	// A removed sandbox's CPU sample goes at the next access.
	if err := m.Remove(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ListStats(ctx, Filter{}); err != nil {
		t.Fatal(err)
	}
	m.stats.mu.Lock()
	left := len(m.stats.prev)
	m.stats.mu.Unlock()
	if left != 0 {
		t.Errorf("%d CPU samples kept after the sandbox was removed", left)
	}
}

// kubelet polls stats while pods come and go: a sandbox removed under a
// ListStats is left out, never an error.
func TestListStatsDuringRemoval(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	m, err := NewManager(ctx, Options{
		Root: filepath.Join(dir, "root"), State: filepath.Join(dir, "state"), CgroupDriver: DriverCgroupfs,
	})
	if err != nil {
		t.Fatal(err)
	}
	top := testTop(t)
	var ids []string
	for range 6 {
		sb, err := m.Run(ctx, Config{
			Metadata:    Metadata{Name: "churn", Namespace: "test", UID: randomName(t)},
			HostNetwork: true, CgroupParent: top + "/pod" + randomName(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sb.ID)
		t.Cleanup(func() { _ = m.Remove(ctx, sb.ID) })
	}
	done := make(chan struct{})
	errs := make(chan error, 4)
	for range cap(errs) {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				if _, err := m.ListStats(ctx, Filter{}); err != nil {
					errs <- err
					return
				}
				if _, err := m.Stats(ctx, ids[0]); err != nil && !errdefs.IsNotFound(err) {
					errs <- err
					return
				}
			}
		}()
	}
	for _, id := range ids {
		time.Sleep(20 * time.Millisecond)
		if err := m.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("stats while sandboxes were removed: %v", err)
		}
	}
	if list, err := m.ListStats(ctx, Filter{}); err != nil || len(list) != 0 {
		t.Errorf("after removing every sandbox: %+v %v", list, err)
	}
}
