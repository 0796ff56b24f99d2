package sandbox

// A container's volumes, as containerd's CRI plugin makes them:
//
//   - image volumes (the CRI's Mount.image, kubelet's ImageVolume): a
//     read-only view of the image's layers, owned by a lease of the
//     container's image volumes in the image store, mounted at
//     <state>/containers/<id>/image-volumes/<n> (n: the mount's index in the
//     CRI config) and bound read-only into the container, or its
//     image_sub_path;
//   - the image's VOLUMEs that no CRI mount covers: a directory per VOLUME
//     at <root>/volumes/<id>/<n> (n: its index in path order), seeded with
//     what the image has at that path, bound read-write. They live in the
//     root, not the state dir, as containerd keeps them in its root: the
//     state dir is usually a small tmpfs.
//
// Both are found again from the container's ID and bundle alone, so a
// cleanup after a crash or a daemon restart removes them whatever the
// record says.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/berth-runtime/berth/sandbox/ocispec"
	"github.com/containerd/containerd/v2/core/mount"
	cfs "github.com/containerd/continuity/fs"
	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
	crierrors "k8s.io/cri-api/pkg/errors"
)

// imageVolumesDir is where a container's image volumes are mounted in its
// bundle.
const imageVolumesDir = "image-volumes"

// volumesDir holds the directories of a container's image VOLUMEs.
func (m *Manager) volumesDir(containerID string) string {
	return filepath.Join(m.opts.Root, "volumes", containerID)
}

// mountImageVolumes mounts a read-only view of the image of each CRI mount
// that names one, and returns the CRI mounts with the host paths of those
// set (the view, or its image_sub_path) and marked read-only.
func (m *Manager) mountImageVolumes(ctx context.Context, c *Container) ([]ocispec.Mount, error) {
	mounts := slices.Clone(c.Config.Spec.Mounts)
	for i := range mounts {
		mt := &mounts[i]
		if mt.Image == "" {
			continue
		}
		fail := func(err error) error {
			// kubelet recognises the CRI's reason in the message, as
			// containerd sends it; the class stays err's.
			return fmt.Errorf("%w: mount %q of image %q: %w", crierrors.ErrImageVolumeMountFailed, mt.ContainerPath, mt.Image, err)
		}
		if mt.HostPath != "" {
			return nil, fail(fmt.Errorf("%w: host_path %q must be empty: an image volume mounts the image", errdefs.ErrInvalidArgument, mt.HostPath))
		}
		ref := mt.ImageID
		if ref == "" {
			ref = mt.Image
		}
		target := filepath.Join(c.Dir, imageVolumesDir, strconv.Itoa(i))
		if err := os.MkdirAll(target, 0o700); err != nil {
			return nil, fail(err)
		}
		view, err := m.opts.Rootfs.PrepareImageVolume(ctx, c.ID, i, ref)
		if errdefs.IsNotFound(err) {
			return nil, fail(fmt.Errorf("%w: pull it first", err))
		}
		if err != nil {
			return nil, fail(err)
		}
		if err := mount.All(view, target); err != nil {
			return nil, fail(fmt.Errorf("mount the image read-only at %s: %w", target, err))
		}
		src, err := imageSubPath(target, mt.ImageSubPath)
		if err != nil {
			return nil, fail(err)
		}
		mt.HostPath, mt.Readonly = src, true
	}
	return mounts, nil
}

// imageSubPath resolves an image_sub_path inside a mounted image volume
// (symlinks resolved within the image, as chroot would); it must be a
// directory (the KEP mounts no single files).
func imageSubPath(root, sub string) (string, error) {
	if sub == "" {
		return root, nil
	}
	if !filepath.IsLocal(sub) {
		return "", fmt.Errorf("%w: image_sub_path %q must be a relative path inside the image, without \"..\"", errdefs.ErrInvalidArgument, sub)
	}
	p, err := securejoin.SecureJoin(root, sub)
	if err != nil {
		return "", fmt.Errorf("%w: image_sub_path %q: %v", errdefs.ErrInvalidArgument, sub, err)
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: image_sub_path %q does not exist in the image", errdefs.ErrNotFound, sub)
	}
	if err != nil {
		return "", fmt.Errorf("image_sub_path %q: %w", sub, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%w: image_sub_path %q is not a directory in the image: only directories can be mounted", errdefs.ErrInvalidArgument, sub)
	}
	return p, nil
}

// makeVolumes gives each of the image's VOLUMEs that no CRI mount covers
// a directory of its own with a copy of what the image has there
// (containerd's volumeMounts and WithVolumes: ownership, modes, times and
// xattrs are kept), and returns the bind mounts for them. rootfs is the
// container's mounted rootfs, still as the image made it.
//
// In a user namespace the rootfs shows the image's files ID-mapped, so the
// copies are owned by the mapped users; a VOLUME the image has no content
// for is given to the mapped root, as the image's root owns it elsewhere.
func (m *Manager) makeVolumes(c *Container, rootfs string, criMounts []ocispec.Mount, userNS *ocispec.UserNamespace) ([]ocispec.Mount, error) {
	dsts := volumePaths(c.Config.Image.Config.Volumes, criMounts)
	if len(dsts) == 0 {
		return nil, nil
	}
	if slices.Contains(dsts, "/") { // as Docker refuses it: it would hide the rootfs
		return nil, fmt.Errorf("%w: the image declares VOLUME /, which cannot be mounted", errdefs.ErrInvalidArgument)
	}
	base := m.volumesDir(c.ID)
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, fmt.Errorf("create the volumes directory of container %s: %w", c.ID, err)
	}
	var out []ocispec.Mount
	for i, dst := range dsts {
		host := filepath.Join(base, strconv.Itoa(i))
		if err := os.Mkdir(host, 0o755); err != nil {
			return nil, fmt.Errorf("create the directory of VOLUME %q: %w", dst, err)
		}
		if userNS != nil {
			if err := os.Lchown(host, int(mappedRoot(userNS.UIDs)), int(mappedRoot(userNS.GIDs))); err != nil {
				return nil, fmt.Errorf("give the directory of VOLUME %q to the container's root: %w", dst, err)
			}
		}
		if err := copyImageContent(rootfs, dst, host); err != nil {
			return nil, err
		}
		out = append(out, ocispec.Mount{ContainerPath: dst, HostPath: host, SELinuxRelabel: true})
	}
	return out, nil
}

// volumePaths are the image's VOLUMEs (absolute, clean, sorted, once each)
// less those a CRI mount has the path of.
func volumePaths(volumes map[string]struct{}, criMounts []ocispec.Mount) []string {
	var out []string
	for dst := range volumes {
		dst = filepath.Clean(filepath.Join("/", dst))
		if slices.ContainsFunc(criMounts, func(m ocispec.Mount) bool { return filepath.Clean(m.ContainerPath) == dst }) {
			continue
		}
		out = append(out, dst)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// copyImageContent copies what the image has at dst (resolved inside
// rootfs) into the empty directory host; nothing there is nothing to copy.
func copyImageContent(rootfs, dst, host string) error {
	src, err := securejoin.SecureJoin(rootfs, dst)
	if err != nil {
		return fmt.Errorf("%w: VOLUME %q of the image: %v", errdefs.ErrInvalidArgument, dst, err)
	}
	fi, err := os.Stat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("VOLUME %q of the image: %w", dst, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: VOLUME %q of the image is not a directory", errdefs.ErrInvalidArgument, dst)
	}
	if err := cfs.CopyDir(host, src, cfs.WithXAttrExclude("security.selinux")); err != nil {
		return fmt.Errorf("copy the image's content of VOLUME %q: %w", dst, err)
	}
	return nil
}

// unmountImageVolumes unmounts whatever is mounted below the bundle's
// image-volumes directory.
func unmountImageVolumes(bundle string) error {
	base := filepath.Join(bundle, imageVolumesDir)
	entries, err := os.ReadDir(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list image volumes: %w", err)
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(base, e.Name())
		if err := mount.UnmountAll(p, unix.MNT_DETACH); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unmount image volume %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
