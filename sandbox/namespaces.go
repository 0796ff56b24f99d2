package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berth-runtime/berth/internal/nsthread"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// NamespaceOptions says which of a pod's own namespaces to create.
type NamespaceOptions struct {
	// IPC false means the pod uses the host's IPC namespace.
	IPC bool
	// UTS false means the pod uses the host's UTS namespace (host-network
	// pods share the host's hostname).
	UTS bool
	// Hostname is set in the new UTS namespace. Empty keeps the copy of the
	// host's name a new UTS namespace starts with, as containerd does; it is
	// ignored without UTS.
	Hostname string
	// IPCSysctls are written inside the new IPC namespace; see SplitSysctls
	// for the names accepted.
	IPCSysctls map[string]string
}

// Pinned holds the bind-mount pins of a pod's namespaces; containers join
// the namespaces by these paths. A path is "" when the pod uses the host's
// namespace.
type Pinned struct {
	IPC string `json:"ipc,omitempty"`
	UTS string `json:"uts,omitempty"`
	// User is the pod's user namespace (hostUsers: false), which owns the
	// others; "" for a pod in the host's.
	User string `json:"user,omitempty"`
}

// PinPaths returns the pin paths CreatePinnedNamespaces uses in dir, so a
// teardown after a crash that lost the returned Pinned can still find and
// remove them (RemovePinnedNamespaces treats missing pins as removed).
func PinPaths(dir string) Pinned {
	return Pinned{IPC: filepath.Join(dir, "ipc"), UTS: filepath.Join(dir, "uts"), User: filepath.Join(dir, "user")}
}

// CreatePinnedNamespaces creates the pod's IPC and UTS namespaces as asked,
// sets the hostname and IPC sysctls in them and pins each with a bind mount
// at dir/ipc and dir/uts. A pod has no infra process to hold its namespaces:
// the pins keep them alive until RemovePinnedNamespaces. dir must exist; an
// existing pin is errdefs.ErrAlreadyExists. Bad options are
// errdefs.ErrInvalidArgument and are caught before anything is made; on any
// failure nothing is left behind.
func CreatePinnedNamespaces(dir string, opts NamespaceOptions) (_ Pinned, retErr error) {
	if dir == "" {
		return Pinned{}, fmt.Errorf("%w: pod namespaces need a directory for their pins", errdefs.ErrInvalidArgument)
	}
	if opts.UTS && opts.Hostname != "" {
		if err := validateHostname(opts.Hostname); err != nil {
			return Pinned{}, err
		}
	}
	sysctls, err := ipcSysctls(opts)
	if err != nil {
		return Pinned{}, err
	}
	var flags int
	var want Pinned
	if opts.IPC {
		flags |= unix.CLONE_NEWIPC
		want.IPC = PinPaths(dir).IPC
	}
	if opts.UTS {
		flags |= unix.CLONE_NEWUTS
		want.UTS = PinPaths(dir).UTS
	}
	if flags == 0 {
		return Pinned{}, nil
	}

	// made records only the pins this call created, so a failure never
	// removes a pin some earlier call made.
	var made Pinned
	defer func() {
		if retErr != nil {
			if err := RemovePinnedNamespaces(made); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("clean up: %w", err))
			}
		}
	}()
	if want.IPC != "" {
		if err := createPinFile(want.IPC); err != nil {
			return Pinned{}, err
		}
		made.IPC = want.IPC
	}
	if want.UTS != "" {
		if err := createPinFile(want.UTS); err != nil {
			return Pinned{}, err
		}
		made.UTS = want.UTS
	}

	err = nsthread.RunDisposable(func(tid int) error {
		// Only this thread enters the new namespaces; the process and
		// every other goroutine stay in the host's.
		if err := unix.Unshare(flags); err != nil {
			return fmt.Errorf("unshare pod namespaces: %w", err)
		}
		if opts.UTS && opts.Hostname != "" {
			if err := unix.Sethostname([]byte(opts.Hostname)); err != nil {
				return fmt.Errorf("set hostname %q: %w", opts.Hostname, err)
			}
		}
		// /proc/sys has no per-process variant: the kernel picks the IPC
		// namespace of the thread that opens the file, so these writes
		// land in the new namespace because this thread is in it.
		for _, name := range slices.Sorted(maps.Keys(sysctls)) {
			if err := writeSysctl(name, sysctls[name]); err != nil {
				return err
			}
		}
		// /proc/self/ns would name the thread-group leader's namespaces,
		// which are the host's; this thread's are under its task entry.
		for _, p := range []struct{ ns, pin string }{{"ipc", want.IPC}, {"uts", want.UTS}} {
			if p.pin == "" {
				continue
			}
			src := fmt.Sprintf("/proc/self/task/%d/ns/%s", tid, p.ns)
			if err := unix.Mount(src, p.pin, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("pin %s namespace at %s: %w", p.ns, p.pin, err)
			}
		}
		return nil
	})
	if err != nil {
		return Pinned{}, err
	}
	return made, nil
}

// ipcSysctls validates opts.IPCSysctls and returns them with dotted names.
func ipcSysctls(opts NamespaceOptions) (map[string]string, error) {
	if len(opts.IPCSysctls) == 0 {
		return nil, nil
	}
	net, ipc, err := SplitSysctls(opts.IPCSysctls, false, !opts.IPC)
	if err != nil {
		return nil, err
	}
	for name := range net {
		return nil, fmt.Errorf("%w: sysctl %s belongs to the network namespace, not the IPC one", errdefs.ErrInvalidArgument, name)
	}
	return ipc, nil
}

// writeSysctl writes one sysctl of the calling thread's namespaces. It opens
// without O_CREAT or O_TRUNC: /proc/sys files exist or they do not.
func writeSysctl(name, value string) error {
	f, err := os.OpenFile(sysctlPath(name), os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: sysctl %s does not exist on this kernel", errdefs.ErrInvalidArgument, name)
	}
	if err != nil {
		return fmt.Errorf("sysctl %s: %w", name, err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ERANGE) {
		return fmt.Errorf("%w: sysctl %s: the kernel refuses value %q", errdefs.ErrInvalidArgument, name, value)
	}
	if err != nil {
		return fmt.Errorf("sysctl %s=%q: %w", name, value, err)
	}
	return nil
}

// createPinFile creates the empty file a namespace is bind-mounted onto.
func createPinFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: namespace pin %s already exists", errdefs.ErrAlreadyExists, path)
	}
	if err != nil {
		return fmt.Errorf("create namespace pin: %w", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("create namespace pin: %w", err)
	}
	return nil
}

// RemovePinnedNamespaces unpins the namespaces and removes the pin files;
// each namespace goes away once no process is in it any more. Pins that do
// not exist count as removed, so teardown can be repeated.
func RemovePinnedNamespaces(p Pinned) error {
	var errs []error
	for _, pin := range []string{p.IPC, p.UTS, p.User} {
		if pin == "" {
			continue
		}
		if err := unmountAll(pin); err != nil {
			errs = append(errs, fmt.Errorf("unpin namespace: %w", err))
			continue
		}
		if err := os.Remove(pin); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove namespace pin: %w", err))
		}
	}
	return errors.Join(errs...)
}

// unmountAll lazily unmounts everything mounted at path. Lazy, because a
// process holding the namespace or a file on the mount open must not make
// teardown fail; repeated, because the same path may have been mounted
// over more than once.
func unmountAll(path string) error {
	for range 16 {
		err := unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil // not (or no longer) a mount point, or missing
		default:
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 16 unmounts", path)
}

// validateHostname checks an RFC 1123 host name that Linux can hold: at most
// 64 characters (the kernel's limit), dot-separated labels of letters,
// digits and inner hyphens, each at most 63 long.
func validateHostname(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: hostname %q %s", errdefs.ErrInvalidArgument, name, why)
	}
	if len(name) > 64 {
		return bad("is longer than 64 characters")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return bad("is not an RFC 1123 host name: labels must be 1 to 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return bad("is not an RFC 1123 host name: labels must not begin or end with '-'")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return bad("is not an RFC 1123 host name: only letters, digits, '-' and '.' are allowed")
			}
		}
	}
	return nil
}
