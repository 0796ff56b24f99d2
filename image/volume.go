package image

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// imageVolumeLease names the lease that owns a container's image-volume
// views (all of them: one lease per container).
func imageVolumeLease(containerID string) string { return "image-volume/" + containerID }

// imageVolumeKeyPrefix starts the snapshot keys of a container's image
// volumes; imageVolumeKey is the key of its n-th.
func imageVolumeKeyPrefix(containerID string) string { return "image-volume/" + containerID + "/" }

func imageVolumeKey(containerID string, n int) string {
	return imageVolumeKeyPrefix(containerID) + strconv.Itoa(n)
}

// PrepareImageVolume creates a read-only view of an image's layers for a
// container's image volume (the CRI's Mount.image), the n-th of the
// container, and returns how to mount it. The view belongs to a lease of
// the container's image volumes, so that removing the image while the
// container exists keeps the layers the volume shows, as it keeps those of
// the container's rootfs; RemoveImageVolumes releases them.
func (s *Store) PrepareImageVolume(ctx context.Context, containerID string, n int, imageRefOrID string) ([]mount.Mount, error) {
	if containerID == "" {
		return nil, fmt.Errorf("%w: container ID is empty", errdefs.ErrInvalidArgument)
	}
	ctx = namespaces.WithNamespace(ctx, Namespace)
	img, err := s.Get(ctx, imageRefOrID)
	if err != nil {
		return nil, err
	}
	lease, err := s.leases.Create(ctx, leases.WithID(imageVolumeLease(containerID)))
	if errdefs.IsAlreadyExists(err) { // the container's earlier image volumes made it
		lease, err = leases.Lease{ID: imageVolumeLease(containerID)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image volume of container %s: %w", containerID, err)
	}
	// On failure the lease stays: the container's cleanup removes it with
	// the views made before.
	mounts, err := s.snapshotter.View(leases.WithLease(ctx, lease.ID), imageVolumeKey(containerID, n), img.ChainID)
	if err != nil {
		return nil, fmt.Errorf("image volume of container %s from image %s: %w", containerID, img.ID, err)
	}
	return mounts, nil
}

// RemoveImageVolumes deletes the image-volume views of a container and
// their lease, and collects the layers no image needs any more. The views
// must be unmounted. A container without image volumes is already clean:
// that is success, and cheap (no garbage collection).
func (s *Store) RemoveImageVolumes(ctx context.Context, containerID string) error {
	if containerID == "" {
		return fmt.Errorf("%w: container ID is empty", errdefs.ErrInvalidArgument)
	}
	ctx = namespaces.WithNamespace(ctx, Namespace)
	lease := leases.Lease{ID: imageVolumeLease(containerID)}
	res, err := s.leases.ListResources(ctx, lease)
	if errdefs.IsNotFound(err) {
		return nil // the lease comes first and goes last: no views either
	}
	if err != nil {
		return fmt.Errorf("image volumes of container %s: %w", containerID, err)
	}
	var errs []error
	for _, r := range res {
		if r.Type != "snapshots/"+Snapshotter || !strings.HasPrefix(r.ID, imageVolumeKeyPrefix(containerID)) {
			continue
		}
		if err := s.snapshotter.Remove(ctx, r.ID); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove image volume %s of container %s: %w", r.ID, containerID, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // keep the lease: the next attempt finds the views through it
	}
	if err := s.leases.Delete(ctx, lease); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("release image volume lease of container %s: %w", containerID, err)
	}
	return s.collectGarbage(ctx)
}
