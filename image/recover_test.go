package image_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-runtime/berth/image"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/plugins/snapshots/overlay"
)

// A crash inside a snapshot's Prepare leaves a snapshot the overlay
// snapshotter committed but the metadata never recorded, and a half-made
// snapshot directory; the next Open removes both.
func TestOpenRemovesSnapshotsACrashLeft(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "image")
	s := testStore(t, image.Options{Dir: dir})
	s.Close()

	snDir := filepath.Join(dir, "snapshots", image.Snapshotter)
	sn, err := overlay.NewSnapshotter(snDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := sn.Prepare(ctx, "unrecorded-by-metadata", ""); err != nil {
		t.Fatal(err)
	}
	sn.Close()
	halfMade := filepath.Join(snDir, "snapshots", "new-123456")
	if err := os.MkdirAll(filepath.Join(halfMade, "fs"), 0o755); err != nil {
		t.Fatal(err)
	}

	testStore(t, image.Options{Dir: dir}).Close()

	sn, err = overlay.NewSnapshotter(snDir)
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	var left []string
	if err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		left = append(left, info.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("snapshots left after reopening: %v", left)
	}
	if _, err := os.Stat(halfMade); !os.IsNotExist(err) {
		t.Errorf("half-made snapshot directory %s left after reopening (%v)", halfMade, err)
	}
}
