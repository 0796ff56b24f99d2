package image

import (
	"context"
	"fmt"
	"strings"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// rootfsLease names the lease that owns a container's writable snapshot.
func rootfsLease(containerID string) string { return "container/" + containerID }

// rootfsKey is the snapshot key of a container's writable layer.
func rootfsKey(containerID string) string { return "container/" + containerID }

// PrepareRootfs creates a container's writable overlay snapshot on top of an
// image's layers and returns the mounts for it. The snapshot belongs to a
// lease named after the container, so removing the image while the container
// exists keeps the layers it runs on; RemoveRootfs releases them.
//
// For a container in a user namespace, uidMap and gidMap are its ID
// mappings ("containerID:hostID:length[,...]", containerd's snapshot
// labels): the mounts then carry them, so that mount.All mounts the overlay
// on ID-mapped layers, and the writable layer is owned by the mapped root,
// as containerd's overlay snapshotter does it. Empty means no mapping.
func (s *Store) PrepareRootfs(ctx context.Context, containerID, imageRefOrID, uidMap, gidMap string) ([]mount.Mount, error) {
	if containerID == "" {
		return nil, fmt.Errorf("%w: container ID is empty", errdefs.ErrInvalidArgument)
	}
	ctx = namespaces.WithNamespace(ctx, Namespace)
	img, err := s.Get(ctx, imageRefOrID)
	if err != nil {
		return nil, err
	}
	lease, err := s.leases.Create(ctx, leases.WithID(rootfsLease(containerID)))
	if err != nil {
		return nil, fmt.Errorf("rootfs of container %s: %w", containerID, err)
	}
	var opts []snapshots.Opt
	if uidMap != "" || gidMap != "" {
		if uidMap == "" || gidMap == "" {
			return nil, fmt.Errorf("%w: rootfs of container %s: both a UID and a GID mapping are needed", errdefs.ErrInvalidArgument, containerID)
		}
		opts = append(opts, snapshots.WithLabels(map[string]string{
			snapshots.LabelSnapshotUIDMapping: uidMap,
			snapshots.LabelSnapshotGIDMapping: gidMap,
		}))
	}
	mounts, err := s.snapshotter.Prepare(leases.WithLease(ctx, lease.ID), rootfsKey(containerID), img.ChainID, opts...)
	if err != nil {
		_ = s.leases.Delete(context.WithoutCancel(ctx), lease)
		return nil, fmt.Errorf("rootfs of container %s from image %s: %w", containerID, img.ID, err)
	}
	return mounts, nil
}

// RootfsMounts returns the mounts of a container's existing writable snapshot.
func (s *Store) RootfsMounts(ctx context.Context, containerID string) ([]mount.Mount, error) {
	ctx = namespaces.WithNamespace(ctx, Namespace)
	mounts, err := s.snapshotter.Mounts(ctx, rootfsKey(containerID))
	if err != nil {
		return nil, fmt.Errorf("rootfs of container %s: %w", containerID, err)
	}
	return mounts, nil
}

// RemoveRootfs deletes a container's writable snapshot and its lease, and
// collects the layers no image needs any more. A container without a rootfs
// is already clean: that is success.
func (s *Store) RemoveRootfs(ctx context.Context, containerID string) error {
	ctx = namespaces.WithNamespace(ctx, Namespace)
	if err := s.snapshotter.Remove(ctx, rootfsKey(containerID)); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove rootfs of container %s: %w", containerID, err)
	}
	err := s.leases.Delete(ctx, leases.Lease{ID: rootfsLease(containerID)})
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("release rootfs lease of container %s: %w", containerID, err)
	}
	return s.collectGarbage(ctx)
}

// RootfsUsage returns how much a container's writable layer holds, in bytes
// and inodes.
func (s *Store) RootfsUsage(ctx context.Context, containerID string) (bytes, inodes uint64, err error) {
	ctx = namespaces.WithNamespace(ctx, Namespace)
	u, err := s.snapshotter.Usage(ctx, rootfsKey(containerID))
	if err != nil {
		return 0, 0, fmt.Errorf("usage of the rootfs of container %s: %w", containerID, err)
	}
	return uint64(max(u.Size, 0)), uint64(max(u.Inodes, 0)), nil
}

// RootfsOwners lists the containers that hold a writable snapshot or image
// volumes in the store (by their leases), for the daemon to find those no
// container record owns any more.
func (s *Store) RootfsOwners(ctx context.Context) ([]string, error) {
	ctx = namespaces.WithNamespace(ctx, Namespace)
	ls, err := s.leases.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list container leases: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, l := range ls {
		id, ok := strings.CutPrefix(l.ID, "container/")
		if !ok {
			id, ok = strings.CutPrefix(l.ID, "image-volume/")
		}
		if ok && id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}
