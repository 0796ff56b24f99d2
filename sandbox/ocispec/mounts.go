package ocispec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Where the pod's files go in the container.
const (
	etcHostname = "/etc/hostname"
	etcHosts    = "/etc/hosts"
	resolvConf  = "/etc/resolv.conf"
	devShm      = "/dev/shm"
	hostDevShm  = "/dev/shm"
)

// bindReq is a bind mount to make: a CRI mount or one of the pod's files.
type bindReq struct {
	Mount
	// pod marks one of the pod's files or image volumes (containerd's
	// "extra" mounts).
	pod bool
}

// mounts is containerd's WithMounts over the CRI mounts and, as its extra
// mounts, the pod's files (linuxContainerMounts): the default mounts
// (/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys, /sys/fs/cgroup)
// less those a bind mount replaces, then the bind mounts sorted by depth.
func (g *Generator) mounts(t *template, in Input, s *specs.Spec) error {
	binds, err := bindRequests(in)
	if err != nil {
		return err
	}
	// Fewer path elements first, so that a mount does not hide a deeper
	// one; stable, so CRI mounts precede the pod's files of equal depth.
	sort.SliceStable(binds, func(i, j int) bool {
		return depth(binds[i].ContainerPath) < depth(binds[j].ContainerPath)
	})

	replaced := map[string]bool{}
	for _, b := range binds {
		replaced[b.ContainerPath] = true
	}
	for _, m := range g.defaultMounts(t, in.Container.Security.Privileged, s.Linux.Namespaces) {
		dst := filepath.Clean(m.Destination)
		if replaced[dst] || (replaced["/dev"] && strings.HasPrefix(dst, "/dev/")) {
			continue
		}
		s.Mounts = append(s.Mounts, m)
	}
	for _, b := range binds {
		m, prop, err := g.bindMount(b)
		if err != nil {
			return err
		}
		// The rootfs must propagate for a shared or slave mount to.
		switch {
		case prop == "rshared":
			s.Linux.RootfsPropagation = "rshared"
		case prop == "rslave" && s.Linux.RootfsPropagation != "rshared":
			s.Linux.RootfsPropagation = "rslave"
		}
		if filepath.Clean(m.Destination) == devShm {
			// runc remounts a bind with exactly the flags asked for, so the
			// pod tmpfs's nosuid, nodev and noexec must be asked again.
			m.Options = append(m.Options, "nosuid", "nodev", "noexec")
		}
		s.Mounts = append(s.Mounts, m)
	}
	return nil
}

// defaultMounts are containerd's default mounts and its cgroupfs mount,
// read-only unless privileged (WithWriteableSysfs, WithWriteableCgroupfs).
func (g *Generator) defaultMounts(t *template, privileged bool, ns []specs.LinuxNamespace) []specs.Mount {
	mode := "ro"
	if privileged {
		mode = "rw"
	}
	cgroupOpts := []string{"nosuid", "noexec", "nodev", "relatime", mode}
	// Without a cgroup namespace the container's cgroup2 mount shares the
	// host's superblock: keep the host's options that it would otherwise
	// drop (containerd's withMounts).
	if !slices.ContainsFunc(ns, func(n specs.LinuxNamespace) bool { return n.Type == specs.CgroupNamespace }) {
		for _, o := range strings.Split(g.host.cgroupfsOptions(), ",") {
			if o == "nsdelegate" || o == "memory_recursiveprot" {
				cgroupOpts = append(cgroupOpts, o)
			}
		}
	}
	ms := append(cloneMounts(t.mounts), specs.Mount{
		Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: cgroupOpts,
	})
	if privileged {
		for _, m := range ms {
			if m.Type == "sysfs" {
				for i, o := range m.Options {
					if o == "ro" {
						m.Options[i] = "rw"
					}
				}
			}
		}
	}
	return ms
}

// bindRequests checks the CRI mounts and adds the pod's files that no CRI
// mount replaces, then the image's volumes (containerd's extra mounts:
// pod files, then volumes; the caller left out volumes a CRI mount covers).
func bindRequests(in Input) ([]bindReq, error) {
	var binds []bindReq
	for _, m := range in.Container.Mounts {
		if err := checkMount(m, in.Pod.UserNS != ""); err != nil {
			return nil, err
		}
		m.ContainerPath = filepath.Clean(m.ContainerPath)
		binds = append(binds, bindReq{Mount: m})
	}
	inCRI := func(dst string) bool {
		return slices.ContainsFunc(binds, func(b bindReq) bool { return b.ContainerPath == dst })
	}
	sc, pod := in.Container.Security, in.Pod
	shm := pod.Shm
	if sc.IPCNS == NamespaceNode || pod.HostIPC {
		shm = hostDevShm
	}
	// The files are read-only with a read-only rootfs; /dev/shm never is.
	for _, f := range []struct {
		dst, src string
		ro       bool
	}{
		{etcHostname, pod.HostnameFile, sc.ReadonlyRootfs},
		{etcHosts, pod.Hosts, sc.ReadonlyRootfs},
		{resolvConf, pod.ResolvConf, sc.ReadonlyRootfs},
		{devShm, shm, false},
	} {
		if f.src == "" || inCRI(f.dst) {
			continue
		}
		// containerd leaves out a pod file that does not exist (and
		// the container keeps the image's, or a tmpfs for /dev/shm).
		if _, err := os.Stat(f.src); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("pod file %q for %s: %w", f.src, f.dst, err)
		}
		binds = append(binds, bindReq{
			Mount: Mount{ContainerPath: f.dst, HostPath: f.src, Readonly: f.ro, Propagation: PropagationPrivate},
			pod:   true,
		})
	}
	for _, v := range in.Volumes {
		if !filepath.IsAbs(v.ContainerPath) || !filepath.IsAbs(v.HostPath) {
			return nil, invalidf("image volume %q: host directory %q: both paths must be absolute", v.ContainerPath, v.HostPath)
		}
		v.ContainerPath = filepath.Clean(v.ContainerPath)
		binds = append(binds, bindReq{Mount: v, pod: true})
	}
	return binds, nil
}

// checkMount refuses what a CRI mount cannot ask for.
func checkMount(m Mount, userNS bool) error {
	if !filepath.IsAbs(m.ContainerPath) {
		return invalidf("mount container_path %q must be an absolute path", m.ContainerPath)
	}
	if len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 {
		switch {
		case !userNS:
			return invalidf("mount %q: ID-mapped mounts are for pods in a user namespace (hostUsers: false)", m.ContainerPath)
		case len(m.UIDMappings) == 0 || len(m.GIDMappings) == 0:
			return invalidf("mount %q: an ID-mapped mount needs both UID and GID mappings", m.ContainerPath)
		case m.Image != "":
			return invalidf("mount %q: image volumes cannot be ID-mapped", m.ContainerPath)
		}
	}
	if m.Image != "" {
		// The caller mounts the image and points HostPath at it.
		if m.HostPath == "" {
			return invalidf("mount %q: image volume of image %q was not prepared (no host path)", m.ContainerPath, m.Image)
		}
		if !m.Readonly {
			return invalidf("mount %q: image volumes are read-only (image %q)", m.ContainerPath, m.Image)
		}
	}
	if !filepath.IsAbs(m.HostPath) {
		return invalidf("mount %q: host_path %q must be an absolute path", m.ContainerPath, m.HostPath)
	}
	// The container path is cleaned (it cannot leave the rootfs: it is
	// absolute, and libcontainer resolves it inside); a host path with ".."
	// is refused, as Kubernetes refuses it for hostPath volumes.
	if slices.Contains(strings.Split(m.HostPath, "/"), "..") {
		return invalidf("mount %q: host_path %q must not contain \"..\"", m.ContainerPath, m.HostPath)
	}
	if strings.ContainsRune(m.ContainerPath, 0) || strings.ContainsRune(m.HostPath, 0) {
		return invalidf("mount %q: container_path or host_path %q contains a NUL byte", m.ContainerPath, m.HostPath)
	}
	switch m.Propagation {
	case PropagationPrivate, PropagationHostToCtr, PropagationBidirection:
	default:
		return invalidf("mount %q: unknown propagation %d", m.ContainerPath, m.Propagation)
	}
	// containerd's checks for recursive read-only.
	if m.RecursiveReadonly {
		if !m.Readonly {
			return invalidf("mount %q: recursive read-only needs readonly: true (host path %q)", m.ContainerPath, m.HostPath)
		}
		if m.Propagation != PropagationPrivate {
			return invalidf("mount %q: recursive read-only needs private propagation, got %s (host path %q)",
				m.ContainerPath, propagationName(m.Propagation), m.HostPath)
		}
	}
	return nil
}

// bindMount turns a request into a spec mount: the host path must exist
// and its symlinks are resolved on the host. The container path is left
// to libcontainer, which resolves it inside the rootfs (securejoin) when it
// mounts, so a symlink in the image cannot point the mount outside.
//
// containerd creates a missing host path as a directory; berth refuses it
// (NotFound), so that a typo or a missing device does not silently become
// an empty directory.
func (g *Generator) bindMount(b bindReq) (specs.Mount, string, error) {
	if _, err := os.Stat(b.HostPath); errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return specs.Mount{}, "", notFoundf("host path %q of mount %q does not exist; create it first", b.HostPath, b.ContainerPath)
	} else if badPathName(err) {
		return specs.Mount{}, "", invalidf("host path %q of mount %q: %v", b.HostPath, b.ContainerPath, err)
	} else if err != nil {
		return specs.Mount{}, "", fmt.Errorf("host path %q of mount %q: %w", b.HostPath, b.ContainerPath, err)
	}
	src, err := filepath.EvalSymlinks(b.HostPath)
	if err != nil {
		return specs.Mount{}, "", notFoundf("host path %q of mount %q: cannot resolve its symlinks: %v", b.HostPath, b.ContainerPath, err)
	}
	prop := "rprivate"
	switch b.Propagation {
	case PropagationBidirection:
		if err := g.checkPropagation(src, b, true); err != nil {
			return specs.Mount{}, "", err
		}
		prop = "rshared"
	case PropagationHostToCtr:
		if err := g.checkPropagation(src, b, false); err != nil {
			return specs.Mount{}, "", err
		}
		prop = "rslave"
	}
	opts := []string{"rbind", prop}
	switch {
	case b.RecursiveReadonly:
		// runc's "rro": mount_setattr(MOUNT_ATTR_RDONLY, AT_RECURSIVE).
		opts = append(opts, "rro")
	case b.Readonly:
		opts = append(opts, "ro")
	default:
		opts = append(opts, "rw")
	}
	m := specs.Mount{Destination: b.ContainerPath, Type: "bind", Source: src, Options: opts}
	if len(b.UIDMappings) > 0 {
		// runc makes an ID-mapped bind mount (mount_setattr MOUNT_ATTR_IDMAP).
		m.UIDMappings, m.GIDMappings = specIDMappings(b.UIDMappings), specIDMappings(b.GIDMappings)
	}
	return m, prop, nil
}

// badPathName reports whether looking a path up failed because of the path
// itself: too long, too many symlinks, or a NUL byte.
func badPathName(err error) bool {
	return errors.Is(err, syscall.ENAMETOOLONG) || errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.EINVAL)
}

// checkPropagation is containerd's ensureShared (shared) and
// ensureSharedOrSlave: a mount can only receive the host's mounts if the
// host mount holding its source propagates.
func (g *Generator) checkPropagation(src string, b bindReq, shared bool) error {
	info, err := g.host.lookupMount(src)
	if err != nil {
		return fmt.Errorf("mount %q: find the host mount of %q: %w", b.ContainerPath, src, err)
	}
	for _, o := range strings.Fields(info.Optional) {
		if strings.HasPrefix(o, "shared:") || (!shared && strings.HasPrefix(o, "master:")) {
			return nil
		}
	}
	if shared {
		return preconditionf("mount %q asks for Bidirectional propagation but host path %q is on %q, which is not a shared mount; make it shared (mount --make-rshared %s)",
			b.ContainerPath, b.HostPath, info.Mountpoint, info.Mountpoint)
	}
	return preconditionf("mount %q asks for HostToContainer propagation but host path %q is on %q, which is neither a shared nor a slave mount; make it shared (mount --make-rshared %s)",
		b.ContainerPath, b.HostPath, info.Mountpoint, info.Mountpoint)
}

// depth is the number of path elements of a clean absolute path
// (containerd's orderedMounts.parts).
func depth(p string) int { return strings.Count(filepath.Clean(p), string(os.PathSeparator)) }

func propagationName(p Propagation) string {
	switch p {
	case PropagationPrivate:
		return "PRIVATE"
	case PropagationHostToCtr:
		return "HOST_TO_CONTAINER"
	case PropagationBidirection:
		return "BIDIRECTIONAL"
	}
	return "UNKNOWN"
}
