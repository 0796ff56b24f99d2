package image_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-runtime/berth/conformance/framework"
	"github.com/berth-runtime/berth/image"
)

// stallWait polls cond until it holds or ctx ends.
func stallWait(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func TestStalledPullFailsWithNoProgress(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "image")
	s := testStore(t, image.Options{Dir: dir, ProgressTimeout: 300 * time.Millisecond})
	reg := framework.StartRegistry(t, framework.RegistryOptions{StallAfter: 32 << 10})
	img := framework.MustBuildImage(t, framework.ImageSpec{})
	ref, _ := reg.Push(t, "test/stall:1", img)
	ctx := ctxT(t) // far longer than the progress timeout

	start := time.Now()
	_, err := s.Pull(ctx, ref, nil)
	t.Logf("pull returned after %v: %v", time.Since(start), err)
	if err == nil {
		t.Fatal("pull from a stalled registry succeeded")
	}
	if ctx.Err() != nil {
		t.Fatalf("the test's own deadline ended the pull, not the progress timeout: %v", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("error is not a stall (DeadlineExceeded): %v", err)
	}
	if !strings.Contains(err.Error(), "no progress") {
		t.Errorf("error does not say the pull made no progress: %v", err)
	}
	if reg.StalledFetches() == 0 {
		t.Error("the registry never stalled a download")
	}
	checkPullLeftNothing(t, s, dir)
}

func TestSlowPullIsNotStalled(t *testing.T) {
	s := testStore(t, image.Options{ProgressTimeout: 300 * time.Millisecond})
	reg := framework.StartRegistry(t, framework.RegistryOptions{BytesPerSecond: 400 << 10})
	img := framework.MustBuildImage(t, framework.ImageSpec{Layers: 2,
		Files: []framework.File{{Path: "/data", Content: sfRandom(1<<20, 4)}}})
	ref, _ := reg.Push(t, "test/slow:1", img)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, l := range layers {
		n, _ := l.Size()
		total += n
	}
	ctx := ctxT(t)

	start := time.Now()
	got, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatalf("slow pull failed: %v", err)
	}
	t.Logf("pulled %d KiB of layers at 400 KiB/s per download in %v", total>>10, time.Since(start))
	if l := s.List(ctx); len(l) != 1 || l[0].ID != got.ID {
		t.Errorf("List = %v", l)
	}
}

func TestCancelledPullStopsAndCleansUp(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "image")
	s := testStore(t, image.Options{Dir: dir, ProgressTimeout: time.Minute})
	reg := framework.StartRegistry(t, framework.RegistryOptions{StallAfter: 32 << 10})
	img := framework.MustBuildImage(t, framework.ImageSpec{})
	ref, _ := reg.Push(t, "test/cancel:1", img)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	outer := ctxT(t)
	ctx, cancel := context.WithCancel(outer)
	defer cancel()

	type result struct{ err error }
	done := make(chan result, 1)
	go func() {
		_, err := s.Pull(ctx, ref, nil)
		done <- result{err}
	}()
	// The layer download has started and is hanging mid-body.
	stallWait(t, outer, "the layer download to start and stall", func() bool {
		return reg.BlobFetches(layer.String()) > 0 && reg.StalledFetches() > 0
	})
	cancel()
	var res result
	select {
	case res = <-done:
	case <-outer.Done():
		t.Fatal("Pull did not return after its context was cancelled")
	}
	t.Logf("pull error: %v", res.err)
	if !errors.Is(res.err, context.Canceled) || errors.Is(res.err, context.DeadlineExceeded) {
		t.Errorf("error is not context.Canceled: %v", res.err)
	}
	if l := s.List(outer); len(l) != 0 {
		t.Errorf("cancelled pull left images listed: %v", l)
	}
	// The abandoned pull winds down in the background (see flights):
	// wait until it has collected what it downloaded before the store is
	// closed by cleanup.
	stallWait(t, outer, "the cancelled pull to clean up", func() bool {
		return stallDirEmpty(filepath.Join(dir, "content", "ingest")) &&
			stallDirEmpty(filepath.Join(dir, "content", "blobs", "sha256")) &&
			stallDirEmpty(filepath.Join(s.SnapshotDir(), "snapshots"))
	})
	checkPullLeftNothing(t, s, dir, layer.String())
}

// stallDirEmpty reports whether dir has no entries (or does not exist).
func stallDirEmpty(dir string) bool {
	entries, err := os.ReadDir(dir)
	return errors.Is(err, fs.ErrNotExist) || (err == nil && len(entries) == 0)
}
