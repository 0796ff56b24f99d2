package image

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// FsUsage is the use of one filesystem by berth.
type FsUsage struct {
	// Mountpoint is the directory the usage is of.
	Mountpoint string
	UsedBytes  uint64
	InodesUsed uint64
	Timestamp  time.Time
}

// FsInfo reports the image filesystem (downloaded content plus committed,
// read-only snapshots) and the container filesystem (writable snapshots).
// Committed snapshot sizes are recorded at commit, so only writable layers
// are measured on the spot.
func (s *Store) FsInfo(ctx context.Context) (images, containers FsUsage, err error) {
	ctx = namespaces.WithNamespace(ctx, Namespace)
	now := time.Now()
	dir := s.SnapshotDir()
	images = FsUsage{Mountpoint: dir, Timestamp: now}
	containers = FsUsage{Mountpoint: dir, Timestamp: now}

	err = s.content.Walk(ctx, func(info content.Info) error {
		images.UsedBytes += uint64(info.Size)
		images.InodesUsed++
		return nil
	})
	if err != nil {
		return images, containers, fmt.Errorf("measure image content: %w", err)
	}
	err = s.snapshotter.Walk(ctx, func(ctx context.Context, info snapshots.Info) error {
		usage, err := s.snapshotter.Usage(ctx, info.Name)
		if errdefs.IsNotFound(err) { // removed while we walked
			return nil
		}
		if err != nil {
			return err
		}
		target := &images
		if info.Kind == snapshots.KindActive {
			target = &containers
		}
		target.UsedBytes += uint64(usage.Size)
		target.InodesUsed += uint64(usage.Inodes)
		return nil
	})
	if err != nil {
		return images, containers, fmt.Errorf("measure snapshots: %w", err)
	}
	return images, containers, nil
}

// SnapshotDir is where the overlay snapshots live.
func (s *Store) SnapshotDir() string {
	return filepath.Join(s.opts.Dir, "snapshots", Snapshotter)
}
