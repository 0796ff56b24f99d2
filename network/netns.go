package network

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/berth-runtime/berth/internal/nsthread"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// CreateNetNS creates a new network namespace and pins it with a bind mount
// at exactly pinPath, so that it outlives every process in it (a pod has no
// infra container to hold it) and can be entered by path. pinPath's directory
// must exist and pinPath must not: an existing pin is errdefs.ErrAlreadyExists
// rather than silently shared between two pods. On failure nothing is left
// behind, neither the file nor a mount.
func CreateNetNS(pinPath string) error {
	f, err := os.OpenFile(pinPath, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: network namespace pin %s already exists", errdefs.ErrAlreadyExists, pinPath)
	}
	if err != nil {
		return fmt.Errorf("create network namespace pin: %w", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(pinPath)
		return fmt.Errorf("create network namespace pin: %w", err)
	}

	err = nsthread.RunDisposable(func(tid int) error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare network namespace: %w", err)
		}
		src := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), tid)
		if err := unix.Mount(src, pinPath, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("pin network namespace at %s: %w", pinPath, err)
		}
		return nil
	})
	if err != nil {
		_ = os.Remove(pinPath)
		return err
	}
	return nil
}

// RemoveNetNS unpins the namespace at pinPath and removes the pin file. The
// namespace itself goes away when the last process in it exits. A pin that
// does not exist (never created, or already removed) is success, so teardown
// can be retried.
func RemoveNetNS(pinPath string) error {
	// A lazy unmount cannot fail because something still has the namespace
	// open (a plugin, a tool entering it); the kernel finishes it later.
	// Loop in case the same path was pinned more than once.
	for range 8 {
		err := unix.Unmount(pinPath, unix.MNT_DETACH)
		if err == nil {
			continue
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break // not (or no longer) a mount point
		}
		return fmt.Errorf("unpin network namespace %s: %w", pinPath, err)
	}
	if err := os.Remove(pinPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove network namespace pin: %w", err)
	}
	return nil
}

// NetNSExists reports whether pinPath is a pinned network namespace (an nsfs
// mount), as opposed to a missing path or a plain file left over, for
// example, from before a reboot.
func NetNSExists(pinPath string) bool {
	if pinPath == "" {
		return false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(pinPath, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// BringUpLoopback sets "lo" up inside the pinned namespace; the kernel then
// gives it 127.0.0.1/8 and ::1. Doing it over netlink costs microseconds,
// where exec'ing the loopback CNI plugin costs about 4 ms per pod.
func BringUpLoopback(pinPath string) error {
	err := ns.WithNetNSPath(pinPath, func(ns.NetNS) error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	if err != nil {
		return fmt.Errorf("bring up loopback in %s: %w", pinPath, nsError(err))
	}
	return nil
}

// nsError types the errors of ns.WithNetNSPath: a pin that is gone or is not
// a namespace is a precondition the caller broke, not an internal failure.
func nsError(err error) error {
	var notExist ns.NSPathNotExistErr
	var notNS ns.NSPathNotNSErr
	if errors.As(err, &notExist) || errors.As(err, &notNS) {
		return fmt.Errorf("%w: %v", errdefs.ErrFailedPrecondition, err)
	}
	return err
}
