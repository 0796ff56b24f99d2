package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/cgroups/systemd"
	"golang.org/x/sys/unix"
)

// Cgroup drivers, named as kubelet's cgroupDriver setting names them.
const (
	DriverCgroupfs = "cgroupfs"
	DriverSystemd  = "systemd"
)

// Berth's own parents for pods whose sandbox config names no cgroup parent
// (no kubelet pod cgroup, e.g. crictl): everything below them is berth's.
const (
	DefaultCgroupfsParent = "/berth"
	DefaultSystemdParent  = "berth.slice"
)

// CgroupState is what a daemon restart needs to find a pod cgroup again.
type CgroupState struct {
	Driver string `json:"driver"`
	// Path is relative to the cgroupfs mount(s), e.g. "/kubepods/burstable/pod<uid>"
	// or "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice".
	Path string `json:"path"`
	// Owned: berth created the cgroup, so berth removes it.
	Owned bool `json:"owned"`
}

// PodCgroup is a pod's cgroup: every container of the pod goes below it.
// Its methods are safe for concurrent use.
type PodCgroup struct {
	state CgroupState

	mu  sync.Mutex
	mgr cgroups.Manager // built on first use: LoadPodCgroup cannot fail
}

// LoadPodCgroup re-attaches to a pod cgroup recorded by State. Problems
// (an invalid record, no systemd) surface from the first method called.
func LoadPodCgroup(st CgroupState) *PodCgroup {
	return &PodCgroup{state: st}
}

// EnsurePodCgroup makes sure the pod's cgroup exists and applies res to it
// (if non-nil). The cgroup is parent itself, which kubelet normally creates;
// if it does not exist berth creates it and owns it. An empty parent puts the
// pod below berth's own default parent, in a cgroup berth always owns.
func EnsurePodCgroup(ctx context.Context, driver, parent, podID string, res *Resources) (*PodCgroup, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := podCgroupPath(driver, parent, podID)
	if err != nil {
		return nil, err
	}
	cr, err := res.CgroupResources()
	if err != nil {
		return nil, err
	}
	c := &PodCgroup{state: CgroupState{Driver: driver, Path: p}}
	c.mu.Lock()
	defer c.mu.Unlock()
	mgr, err := c.manager()
	if err != nil {
		return nil, err
	}
	existed := anyExists(mgr)
	// A child of berth's default parent can only be berth's, even one left
	// over by a crash before its state was recorded.
	c.state.Owned = !existed || parent == ""
	if err := mgr.Apply(-1); err != nil {
		c.rollback(existed)
		return nil, fmt.Errorf("create pod cgroup %s: %w", p, err)
	}
	if res != nil {
		if err := mgr.Set(cr); err != nil {
			c.rollback(existed)
			return nil, fmt.Errorf("set resources of pod cgroup %s: %w", p, classify(err))
		}
	}
	return c, nil
}

// rollback removes a cgroup this call created; it is empty, as nothing was
// added to it yet.
func (c *PodCgroup) rollback(existed bool) {
	if existed {
		return
	}
	if c.state.Driver == DriverSystemd {
		_ = c.mgr.Destroy() // also stops the slice unit
	} else {
		_ = removePaths(c.mgr)
	}
	c.mgr = nil
}

// podCgroupPath validates parent for driver and returns the cgroupfs-relative
// path of the pod cgroup.
func podCgroupPath(driver, parent, podID string) (string, error) {
	if len(podID) > 128 || !isName(podID, "_.-") {
		return "", fmt.Errorf("%w: pod ID %q is not a valid cgroup name", errdefs.ErrInvalidArgument, podID)
	}
	switch driver {
	case DriverCgroupfs:
		if parent == "" {
			return path.Join(DefaultCgroupfsParent, "berth-pod-"+podID), nil
		}
		if !path.IsAbs(parent) || slices.Contains(strings.Split(parent, "/"), "..") ||
			strings.ContainsRune(parent, 0) || path.Clean(parent) == "/" {
			return "", fmt.Errorf("%w: cgroupfs cgroup parent %q must be an absolute path below the root, without \"..\"", errdefs.ErrInvalidArgument, parent)
		}
		return path.Clean(parent), nil
	case DriverSystemd:
		if parent == "" {
			// "-" nests slices in systemd, so escape it the way kubelet
			// escapes pod UIDs.
			parent = strings.TrimSuffix(DefaultSystemdParent, ".slice") + "-pod_" + strings.ReplaceAll(podID, "-", "_") + ".slice"
		}
		return expandSlice(parent)
	default:
		return "", fmt.Errorf("%w: unknown cgroup driver %q (want %q or %q)", errdefs.ErrInvalidArgument, driver, DriverCgroupfs, DriverSystemd)
	}
}

// isName reports whether s is non-empty and only ASCII letters, digits and
// the extra characters.
func isName(s, extra string) bool {
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune(extra, r)) {
			return false
		}
	}
	return s != ""
}

// expandSlice turns a slice name into its cgroup path, as systemd, runc and
// kubelet do: "a-b-c.slice" is /a.slice/a-b.slice/a-b-c.slice.
func expandSlice(slice string) (string, error) {
	p, err := systemd.ExpandSlice(slice)
	// The characters systemd allows in unit names.
	if err == nil && (!isName(slice, ":_.-\\") || len(slice) > 255) {
		err = errors.New("not a valid systemd unit name")
	}
	if err == nil && p == "/" {
		err = errors.New("the root slice cannot be a pod's cgroup")
	}
	if err != nil {
		return "", fmt.Errorf("%w: systemd cgroup parent %q must be a slice name like kubepods-pod123.slice: %v", errdefs.ErrInvalidArgument, slice, err)
	}
	return p, nil
}

// manager returns the cgroup manager, building it on first use. c.mu is held.
func (c *PodCgroup) manager() (cgroups.Manager, error) {
	if c.mgr != nil {
		return c.mgr, nil
	}
	p := c.state.Path
	base, _ := (*Resources)(nil).CgroupResources()
	cfg := &cgroups.Cgroup{Resources: base}
	switch c.state.Driver {
	case DriverCgroupfs:
		if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
			return nil, fmt.Errorf("%w: invalid pod cgroup path %q", errdefs.ErrInvalidArgument, p)
		}
		cfg.Path = p
	case DriverSystemd:
		name := path.Base(p)
		if exp, err := expandSlice(name); err != nil || exp != p {
			return nil, fmt.Errorf("%w: invalid systemd pod cgroup path %q", errdefs.ErrInvalidArgument, p)
		}
		if !systemd.IsRunningSystemd() {
			return nil, fmt.Errorf("%w: the systemd cgroup driver needs systemd running as init (no /run/systemd/system); use the cgroupfs driver", errdefs.ErrFailedPrecondition)
		}
		cfg.Systemd, cfg.Name, cfg.Parent = true, name, "-.slice"
		if dir := path.Dir(p); dir != "/" {
			cfg.Parent = path.Base(dir)
		}
	default:
		return nil, fmt.Errorf("%w: unknown cgroup driver %q", errdefs.ErrInvalidArgument, c.state.Driver)
	}
	mgr, err := manager.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("cgroup manager for %s: %w", p, err)
	}
	c.mgr = mgr
	return mgr, nil
}

// State returns what to persist to re-attach with LoadPodCgroup.
func (c *PodCgroup) State() CgroupState { return c.state }

// Path is the cgroupfs-relative path, e.g. "/kubepods/burstable/pod<uid>".
func (c *PodCgroup) Path() string { return c.state.Path }

// Owned reports whether berth created the cgroup (and so removes it).
func (c *PodCgroup) Owned() bool { return c.state.Owned }

// Update changes the cgroup's limits live (UpdatePodSandboxResources).
func (c *PodCgroup) Update(res *Resources) error {
	cr, err := res.CgroupResources()
	if err != nil || res == nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	mgr, err := c.existing()
	if err != nil {
		return err
	}
	if err := mgr.Set(cr); err != nil {
		return fmt.Errorf("update pod cgroup %s: %w", c.state.Path, classify(err))
	}
	return nil
}

// AddProcess moves the process pid into the pod cgroup, in every hierarchy
// the cgroup exists in.
func (c *PodCgroup) AddProcess(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("%w: pid %d", errdefs.ErrInvalidArgument, pid)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	mgr, err := c.existing()
	if err != nil {
		return err
	}
	if err := addPid(c.state.Driver, mgr, pid); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("%w: add process %d to pod cgroup %s: %w", errdefs.ErrNotFound, pid, c.state.Path, err)
		}
		return fmt.Errorf("add process %d to pod cgroup %s: %w", pid, c.state.Path, err)
	}
	return nil
}

// Remove deletes the cgroup (and any empty cgroups below it) if berth created
// it; a cgroup that is someone else's, or already gone, is left alone. It
// kills nothing: a cgroup that still holds processes is ErrFailedPrecondition.
func (c *PodCgroup) Remove() error {
	if !c.state.Owned {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	mgr, err := c.manager()
	if err != nil {
		return err
	}
	for _, p := range mgr.GetPaths() {
		// Checked first because rmdir would spin on EBUSY for a second, and
		// stopping a systemd slice would kill what is in it.
		pids, err := cgroups.GetAllPids(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("list processes of pod cgroup %s: %w", p, err)
		}
		if len(pids) > 0 {
			return fmt.Errorf("%w: pod cgroup %s still has %d processes (first %d)", errdefs.ErrFailedPrecondition, c.state.Path, len(pids), pids[0])
		}
	}
	if c.state.Driver == DriverSystemd {
		err = mgr.Destroy() // stops the slice unit and removes what is left
	} else {
		err = removePaths(mgr)
	}
	c.mgr = nil // Destroy empties the manager's paths: rebuild it if needed again
	if err != nil {
		return fmt.Errorf("remove pod cgroup %s: %w", c.state.Path, classify(err))
	}
	return nil
}

// addPid moves pid in. The fs managers' AddPid writes to every hierarchy and
// fails on v1's devices one, where a pod cgroup made with SkipDevices (by
// berth or kubelet) has no directory: join only the hierarchies it is in.
func addPid(driver string, mgr cgroups.Manager, pid int) error {
	if driver == DriverSystemd {
		return mgr.AddPid("", pid)
	}
	for _, p := range mgr.GetPaths() {
		if !cgroups.PathExists(p) {
			continue
		}
		if err := cgroups.WriteCgroupProc(p, pid); err != nil {
			return err
		}
	}
	return nil
}

// existing returns the manager of a cgroup that must exist. c.mu is held.
func (c *PodCgroup) existing() (cgroups.Manager, error) {
	mgr, err := c.manager()
	if err != nil {
		return nil, err
	}
	if !anyExists(mgr) {
		return nil, fmt.Errorf("%w: pod cgroup %s does not exist", errdefs.ErrNotFound, c.state.Path)
	}
	return mgr, nil
}

// statsPathsExist reports whether the cgroup still exists in every
// hierarchy Stats reads; a removal in progress takes it away hierarchy by
// hierarchy. (Not all of GetPaths: pod cgroups skip the v1 devices one.)
func statsPathsExist(mgr cgroups.Manager) bool {
	if cgroups.IsCgroup2UnifiedMode() {
		return cgroups.PathExists(mgr.Path(""))
	}
	for _, sub := range []string{"cpu", "cpuacct", "memory", "pids"} {
		if p := mgr.Path(sub); p != "" && !cgroups.PathExists(p) {
			return false
		}
	}
	return true
}

func anyExists(mgr cgroups.Manager) bool {
	for _, p := range mgr.GetPaths() {
		if cgroups.PathExists(p) {
			return true
		}
	}
	return false
}

// removePaths removes the cgroup in every hierarchy, sub-cgroups first.
// Unlike cgroups.RemovePaths (and so the fs managers' Destroy) it leaves the
// manager's own path map intact, so the manager stays usable.
func removePaths(mgr cgroups.Manager) error {
	var errs []error
	for _, p := range mgr.GetPaths() {
		errs = append(errs, cgroups.RemovePath(p))
	}
	return errors.Join(errs...)
}

// classify maps kernel errors from cgroup writes to errdefs types.
func classify(err error) error {
	switch {
	case errors.Is(err, cgroups.ErrV1NoUnified), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ERANGE):
		return fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%w: %w", errdefs.ErrFailedPrecondition, err)
	}
	return err
}

// ClampOOMScoreAdj returns the oom_score_adj closest to requested that this
// process may give its children. Without CAP_SYS_RESOURCE the kernel refuses
// values below our own (kubelet asks -998 for sandboxes), so clamp to
// [current, 1000] as containerd's restrict_oom_score_adj does.
func ClampOOMScoreAdj(requested int) int {
	current := 0 // the kernel's default, if /proc cannot tell
	if b, err := os.ReadFile("/proc/self/oom_score_adj"); err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			current = v
		}
	}
	return clampOOMScoreAdj(requested, current, hasCapSysResource())
}

func clampOOMScoreAdj(requested, current int, privileged bool) int {
	lowest := -1000
	if !privileged {
		lowest = current
	}
	return min(max(requested, lowest), 1000)
}

func hasCapSysResource() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_SYS_RESOURCE/32].Effective&(1<<(unix.CAP_SYS_RESOURCE%32)) != 0
}
