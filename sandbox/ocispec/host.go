package ocispec

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/contrib/apparmor"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cap"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	ctrdseccomp "github.com/containerd/containerd/v2/pkg/seccomp"
	"github.com/moby/sys/capability"
	"github.com/moby/sys/mountinfo"
	ocgroups "github.com/opencontainers/cgroups"
	rseccomp "github.com/opencontainers/runc/libcontainer/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// host is what the generator asks the machine it runs on. Each probe is a
// field so that tests can replace it; NewGenerator fills them with the real
// ones, and wraps the ones that cannot change while berth runs so that they
// are asked once per Generator.
type host struct {
	// cgroupV2 reports a cgroup v2 unified host (cgroup namespace,
	// unified resources).
	cgroupV2 func() bool
	// currentCaps are the capabilities berth holds (its effective set):
	// what a privileged container gets and what "ALL" adds, as containerd's
	// cap.Current(). A container cannot get more than its runtime holds.
	currentCaps func() ([]string, error)
	// swapAccounting reports whether memory+swap can be limited (v1:
	// memory.memsw.limit_in_bytes, v2: memory.swap.max), as containerd's
	// SwapControllerAvailable decides.
	swapAccounting func() bool
	// hugetlb reports whether the hugetlb controller is present.
	hugetlb func() bool
	// hugePageSizes lists the page sizes the kernel offers ("2MB", "1GB").
	hugePageSizes func() []string
	// seccomp reports whether seccomp filters can be applied: berth built
	// with libseccomp (-tags seccomp) and a kernel with seccomp.
	seccomp func() bool
	// hostDevices lists every device node of the host's /dev (privileged).
	hostDevices func() ([]specs.LinuxDevice, error)
	// lookupMount returns the mount that contains path.
	lookupMount func(path string) (*mountinfo.Info, error)
	// cgroupfsOptions are the super options of the host's /sys/fs/cgroup.
	cgroupfsOptions func() string
	// hostname is the node's hostname (HOSTNAME of a pod without one).
	hostname func() (string, error)
	// appArmorProfileLoaded reports whether the kernel has a profile.
	appArmorProfileLoaded func(name string) (bool, error)
	// loadAppArmorDefault loads berth's default AppArmor profile.
	loadAppArmorDefault func(name string) error
}

// realHost probes the machine; what cannot change is asked once.
func realHost() host {
	return host{
		cgroupV2:              ocgroups.IsCgroup2UnifiedMode,
		currentCaps:           sync.OnceValues(cap.Current),
		swapAccounting:        sync.OnceValue(swapAccounting),
		hugetlb:               sync.OnceValue(hugetlbPresent),
		hugePageSizes:         ocgroups.HugePageSizes,
		seccomp:               sync.OnceValue(func() bool { return rseccomp.Enabled && ctrdseccomp.IsEnabled() }),
		hostDevices:           oci.HostDevices,
		lookupMount:           lookupMount,
		cgroupfsOptions:       sync.OnceValue(func() string { return superOptions("/sys/fs/cgroup") }),
		hostname:              os.Hostname,
		appArmorProfileLoaded: appArmorProfileLoaded,
		loadAppArmorDefault:   apparmor.LoadDefaultProfile,
	}
}

// swapAccounting is containerd's SwapControllerAvailable.
func swapAccounting() bool {
	p := "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"
	if ocgroups.IsCgroup2UnifiedMode() {
		// memory.swap.max does not exist in the root cgroup: look in ours.
		own, err := ocgroups.ParseCgroupFile("/proc/self/cgroup")
		if err != nil {
			return false
		}
		p = filepath.Join("/sys/fs/cgroup", own[""], "memory.swap.max")
	}
	_, err := os.Stat(p)
	return err == nil
}

// hugetlbPresent is containerd's isHugetlbControllerPresent.
func hugetlbPresent() bool {
	if ocgroups.IsCgroup2UnifiedMode() {
		b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		return err == nil && slices.Contains(strings.Fields(string(b)), "hugetlb")
	}
	_, err := os.ReadDir("/sys/fs/cgroup/hugetlb")
	return err == nil
}

// lookupMount finds the mount containing path, as containerd's
// mount.Lookup: the parent mount with the longest mount point. Where mounts
// are stacked on one mount point the last (visible) one wins; containerd
// takes the first, which only differs for stacked mounts.
func lookupMount(path string) (*mountinfo.Info, error) {
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	ms, err := mountinfo.GetMounts(mountinfo.ParentsFilter(resolved))
	if err != nil {
		return nil, fmt.Errorf("read the host's mount table: %w", err)
	}
	var best *mountinfo.Info
	for _, m := range ms {
		if best == nil || len(m.Mountpoint) >= len(best.Mountpoint) {
			best = m
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no mount contains %q", resolved)
	}
	return best, nil
}

// superOptions returns the super options of the mount at mountpoint ("" if
// it is not a mount point).
func superOptions(mountpoint string) string {
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mountpoint))
	if err != nil || len(ms) == 0 {
		return ""
	}
	return ms[len(ms)-1].VFSOptions
}

// appArmorProfileLoaded looks the profile up in the kernel's list, as
// containerd's appArmorProfileExists.
func appArmorProfileLoaded(name string) (bool, error) {
	f, err := os.Open("/sys/kernel/security/apparmor/profiles")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), name+" (") {
			return true, nil
		}
	}
	return false, sc.Err()
}

// template holds the parts of containerd's default spec (pkg/oci's
// populateDefaultUnixSpec) that a CRI container starts from. Taking them
// from containerd itself keeps berth in step when containerd changes them.
type template struct {
	caps          []string      // default capabilities
	mounts        []specs.Mount // default mounts without /run (WithoutRunMount)
	maskedPaths   []string
	readonlyPaths []string
	// known and supported are the "CAP_..." names the capability library
	// knows and those this kernel supports.
	known, supported map[string]bool
}

func newTemplate() (*template, error) {
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "template"})
	if err != nil {
		return nil, fmt.Errorf("containerd's default spec: %w", err)
	}
	if s.Process == nil || s.Process.Capabilities == nil || s.Linux == nil {
		return nil, errors.New("containerd's default spec has no process capabilities or linux section")
	}
	t := &template{
		caps:          s.Process.Capabilities.Bounding,
		maskedPaths:   s.Linux.MaskedPaths,
		readonlyPaths: s.Linux.ReadonlyPaths,
		known:         map[string]bool{},
		supported:     map[string]bool{},
	}
	for _, m := range s.Mounts {
		if filepath.Clean(m.Destination) != "/run" {
			t.mounts = append(t.mounts, m)
		}
	}
	for _, c := range capability.ListKnown() {
		t.known[capName(c)] = true
	}
	supported, err := capability.ListSupported()
	if err != nil {
		return nil, fmt.Errorf("list the capabilities this kernel supports: %w", err)
	}
	for _, c := range supported {
		t.supported[capName(c)] = true
	}
	return t, nil
}

// capName is the spec's name of a capability ("CAP_CHOWN").
func capName(c capability.Cap) string { return "CAP_" + strings.ToUpper(c.String()) }

// cloneMounts deep-copies mounts so a spec never shares option slices.
func cloneMounts(ms []specs.Mount) []specs.Mount {
	out := make([]specs.Mount, len(ms))
	for i, m := range ms {
		out[i] = m
		out[i].Options = slices.Clone(m.Options)
	}
	return out
}
