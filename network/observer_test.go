package network

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

type recordedOp struct {
	op   string
	took time.Duration
	err  error
}

type recordingObserver struct {
	mu  sync.Mutex
	ops []recordedOp
}

func (o *recordingObserver) CNIDone(op string, took time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ops = append(o.ops, recordedOp{op, took, err})
}

// Every Setup and Teardown is reported once, failures with their error;
// no plugin has to run for that.
func TestObserverSeesEverySetupAndTeardown(t *testing.T) {
	dir := t.TempDir()
	obs := &recordingObserver{}
	m := NewManager(ManagerOptions{
		ConfDir: filepath.Join(dir, "net.d"), BinDirs: []string{filepath.Join(dir, "bin")},
		CacheDir: filepath.Join(dir, "cache"), Observer: obs,
	})
	ctx := context.Background()
	if _, err := m.Setup(ctx, Attachment{PodID: "pod1", NetNSPath: filepath.Join(dir, "no-netns")}); err == nil {
		t.Fatal("Setup without a pinned netns succeeded")
	}
	// Nothing cached and no config: DEL has nothing to run, which is success.
	if err := m.Teardown(ctx, Attachment{PodID: "pod1"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Teardown(ctx, Attachment{PodID: "../x"}); err == nil {
		t.Fatal("Teardown of an invalid pod ID succeeded")
	}
	if len(obs.ops) != 3 {
		t.Fatalf("observed %d operations, want 3: %+v", len(obs.ops), obs.ops)
	}
	for i, want := range []struct {
		op     string
		failed bool
	}{{OpAdd, true}, {OpDel, false}, {OpDel, true}} {
		got := obs.ops[i]
		if got.op != want.op || (got.err != nil) != want.failed || got.took <= 0 {
			t.Errorf("operation %d: %+v, want %s failed=%v", i, got, want.op, want.failed)
		}
	}
}

// A manager without an observer works as before.
func TestNoObserverIsFine(t *testing.T) {
	dir := t.TempDir()
	m := NewManager(ManagerOptions{ConfDir: filepath.Join(dir, "net.d"), BinDirs: []string{dir}, CacheDir: filepath.Join(dir, "cache")})
	if err := m.Teardown(context.Background(), Attachment{PodID: "pod1"}); err != nil {
		t.Fatal(err)
	}
}
