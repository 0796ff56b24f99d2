package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/berth-runtime/berth/network"
)

// recordingObserver keeps what the manager reported.
type recordingObserver struct {
	mu        sync.Mutex
	started   []string
	died      map[string]int
	rollbacks map[string]int
	orphans   map[string]int
}

func newRecordingObserver() *recordingObserver {
	return &recordingObserver{died: map[string]int{}, rollbacks: map[string]int{}, orphans: map[string]int{}}
}

func (o *recordingObserver) MonitorStarted(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.started = append(o.started, id)
}

func (o *recordingObserver) MonitorDied(id string, lost int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.died[id] += lost + 1
}

func (o *recordingObserver) RolledBack(kind string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rollbacks[kind]++
}

func (o *recordingObserver) OrphansRemoved(kind string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.orphans[kind] += n
}

func TestCountsByState(t *testing.T) {
	m := &Manager{sandboxes: map[string]*Sandbox{
		"a": {ID: "a", State: StateReady, Monitor: &Monitor{PID: 1}},
		"b": {ID: "b", State: StateReady},
		"c": {ID: "c", State: StateNotReady},
	}, containers: map[string]*containerEntry{
		"x": newContainerEntry(&Container{ID: "x", State: ContainerRunning}, "x"),
		"y": newContainerEntry(&Container{ID: "y", State: ContainerRunning}, "y"),
		"z": newContainerEntry(&Container{ID: "z", State: ContainerExited}, "z"),
	}}
	c := m.Counts()
	if c.Pods[StateReady] != 2 || c.Pods[StateNotReady] != 1 || c.Monitors != 1 {
		t.Errorf("pods %v monitors %d", c.Pods, c.Monitors)
	}
	if c.Containers[ContainerRunning] != 2 || c.Containers[ContainerExited] != 1 {
		t.Errorf("containers %v", c.Containers)
	}
}

// What recovery rolls back and reconciliation removes at start reaches the
// observer, by kind.
func TestRecoveryReportsToObserver(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	opts := Options{
		Root: filepath.Join(dir, "root"), State: filepath.Join(dir, "state"), CgroupDriver: DriverCgroupfs,
		Network: network.NewManager(network.ManagerOptions{
			ConfDir: filepath.Join(dir, "net.d"), BinDirs: []string{filepath.Join(dir, "bin")},
			CacheDir: filepath.Join(dir, "cni-cache"),
		}),
	}
	m, err := NewManager(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	// A RunPodSandbox cut off by a crash, and a pod directory no record owns.
	cut := &Sandbox{ID: newID(), State: StateCreating, Config: Config{HostNetwork: true}}
	cut.Dir = filepath.Join(opts.State, "sandboxes", cut.ID)
	if err := os.MkdirAll(cut.Dir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := m.records.save(cut); err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Join(opts.State, "sandboxes", newID())
	if err := os.MkdirAll(orphan, 0o711); err != nil {
		t.Fatal(err)
	}

	obs := newRecordingObserver()
	opts.Observer = obs
	if _, err := NewManager(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if obs.rollbacks[RollbackPodSandbox] != 1 {
		t.Errorf("rollbacks %v, want one pod_sandbox", obs.rollbacks)
	}
	if obs.orphans["pod_directory"] != 1 {
		t.Errorf("orphans %v, want one pod_directory", obs.orphans)
	}
	for _, p := range []string{cut.Dir, orphan} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
}
