package sandbox

// Pods in a user namespace (kubelet's hostUsers: false, the CRI's
// UsernsOptions mode POD). The pod's network, IPC and UTS namespaces (and
// its PID namespace for pid: POD) must be owned by its user namespace, so
// that its containers' root may use them (mount /proc and sysfs, set up its
// network) while holding no privilege over the host's. A thread cannot
// create a user namespace in a multi-threaded process, so the namespaces
// are made by a process: the holder (berth-monitor pod-holder) is started
// in all of them at once, the namespaces are pinned, and the holder stays
// only as the PID 1 of a shared PID namespace.

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"github.com/berth-runtime/berth/internal/nsthread"
	"github.com/berth-runtime/berth/internal/podholder"
	"github.com/berth-runtime/berth/internal/reaper"
	"github.com/berth-runtime/berth/sandbox/ocispec"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ValidateUserNamespace checks a pod's ID mappings: at least one range
// each, none empty or past the 32-bit ID space, and the container's root
// mapped (a pod's containers run as root unless told otherwise).
func ValidateUserNamespace(u *ocispec.UserNamespace) error {
	for _, set := range []struct {
		name string
		m    []ocispec.IDMapping
	}{{"uids", u.UIDs}, {"gids", u.GIDs}} {
		if len(set.m) == 0 {
			return fmt.Errorf("%w: user namespace: no %s mapping", errdefs.ErrInvalidArgument, set.name)
		}
		rootMapped := false
		for _, r := range set.m {
			if r.Length == 0 || uint64(r.HostID)+uint64(r.Length) > 1<<32 || uint64(r.ContainerID)+uint64(r.Length) > 1<<32 {
				return fmt.Errorf("%w: user namespace: %s mapping %d:%d:%d is empty or past the 32-bit ID range", errdefs.ErrInvalidArgument, set.name, r.ContainerID, r.HostID, r.Length)
			}
			if r.HostID == 0 {
				return fmt.Errorf("%w: user namespace: %s mapping %d:%d:%d maps the host's root into the pod", errdefs.ErrInvalidArgument, set.name, r.ContainerID, r.HostID, r.Length)
			}
			rootMapped = rootMapped || r.ContainerID == 0
		}
		if !rootMapped {
			return fmt.Errorf("%w: user namespace: the %s mappings do not map the container's root (ID 0)", errdefs.ErrInvalidArgument, set.name)
		}
	}
	return nil
}

// mappedRoot is the host ID that ID 0 in the namespace maps to
// (ValidateUserNamespace made sure there is one).
func mappedRoot(m []ocispec.IDMapping) uint32 {
	for _, r := range m {
		if r.ContainerID == 0 {
			return r.HostID
		}
	}
	return 0
}

// idMapLabel writes mappings as containerd's snapshot labels do:
// "containerID:hostID:length[,...]".
func idMapLabel(m []ocispec.IDMapping) string {
	var b []byte
	for i, r := range m {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, "%d:%d:%d", r.ContainerID, r.HostID, r.Length)
	}
	return string(b)
}

func sysProcIDMap(m []ocispec.IDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, 0, len(m))
	for _, r := range m {
		out = append(out, syscall.SysProcIDMap{ContainerID: int(r.ContainerID), HostID: int(r.HostID), Size: int(r.Length)})
	}
	return out
}

// createUserNamespaces makes the pod's user namespace and, owned by it,
// its network, IPC and UTS namespaces (and PID namespace if shared), pins
// them, names the host and writes the IPC sysctls. The holder stays for a
// shared PID namespace only. The caller tears down on failure.
func (m *Manager) createUserNamespaces(ctx context.Context, sb *Sandbox, cg *PodCgroup, ipcSysctls map[string]string) error {
	cfg := sb.Config
	bin := append([]string{m.opts.MonitorBinary}, m.opts.MonitorArgs...)
	if bin[0] == "" {
		return fmt.Errorf("%w: no berth-monitor binary to create the pod's user namespace with (runtime.monitor_path)", errdefs.ErrFailedPrecondition)
	}
	pins := PinPaths(sb.Dir)
	flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS)
	if cfg.SharedPID {
		flags |= unix.CLONE_NEWPID
	}
	// The holder starts as the mapped root, which has no access to the
	// host's root-owned directories: it is executed through a descriptor
	// the daemon opened, which needs no path to be searchable.
	exe, err := os.Open(bin[0])
	if err != nil {
		return fmt.Errorf("%w: the berth-monitor binary: %v", errdefs.ErrFailedPrecondition, err)
	}
	defer exe.Close()
	cmd := exec.Command("/proc/self/fd/3", append(bin[1:], podholder.Command, "--dir", sb.Dir)...)
	cmd.Args[0] = bin[0]
	cmd.ExtraFiles = []*os.File{exe}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: flags, Setsid: true,
		UidMappings: sysProcIDMap(cfg.UserNS.UIDs), GidMappings: sysProcIDMap(cfg.UserNS.GIDs),
		GidMappingsEnableSetgroups: true,
	}
	if cfg.Hostname != "" {
		if err := validateHostname(cfg.Hostname); err != nil {
			return err
		}
	}
	h, err := startHolderCmd(ctx, cmd, cg)
	if err != nil {
		return fmt.Errorf("pod user namespace: %w", err)
	}
	if cfg.SharedPID {
		h.Pin = filepath.Join(sb.Dir, "pid")
	}
	// Recorded before anything is pinned, so that a crash from here on
	// stops the holder and removes every pin (missing ones are no error).
	sb.PIDHolder = h
	sb.Namespaces = pins
	sb.NetNS = filepath.Join(sb.Dir, "netns")
	if err := m.records.save(sb); err != nil {
		return err
	}
	type pin struct{ ns, path string }
	todo := []pin{{"user", pins.User}, {"net", sb.NetNS}, {"ipc", pins.IPC}, {"uts", pins.UTS}}
	if h.Pin != "" {
		todo = append(todo, pin{"pid", h.Pin})
	}
	for _, p := range todo {
		if err := pinNamespace(fmt.Sprintf("/proc/%d/ns/%s", h.PID, p.ns), p.path); err != nil {
			return fmt.Errorf("pod user namespace: %w", err)
		}
	}
	if !cfg.SharedPID {
		// Its namespaces are pinned; without a shared PID namespace it
		// has nothing left to hold.
		if err := stopHolder(ctx, h); err != nil {
			return err
		}
		sb.PIDHolder = nil
	}
	if err := m.records.save(sb); err != nil {
		return err
	}
	return configurePinnedNamespaces(sb.Namespaces, cfg.Hostname, ipcSysctls)
}

// startHolderCmd starts a holder process, moves it into the pod cgroup and
// gives it the sandbox's OOM score.
func startHolderCmd(ctx context.Context, cmd *exec.Cmd, cg *PodCgroup) (*Holder, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the pod's namespace holder: %w", err)
	}
	h := &Holder{PID: cmd.Process.Pid}
	// Reap it if it exits while this daemon is its parent; after a daemon
	// restart, init is.
	reaper.Reap(cmd.Process)
	start, err := processStartTime(h.PID)
	if err == nil && cg != nil {
		err = cg.AddProcess(h.PID)
	}
	if err == nil {
		h.StartTime = start
		// Like an infra container, the holder should be the last thing the
		// OOM killer picks (-998, as containerd gives sandboxes), clamped to
		// what this process may set.
		adj := strconv.Itoa(ClampOOMScoreAdj(sandboxOOMScoreAdj))
		err = os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", h.PID), []byte(adj), 0)
	}
	if err != nil {
		_ = stopHolder(ctx, h)
		return nil, err
	}
	return h, nil
}

// configurePinnedNamespaces sets the hostname in the pinned UTS namespace
// and the sysctls in the pinned IPC namespace, from a thread that joins
// them (and is discarded afterwards).
func configurePinnedNamespaces(p Pinned, hostname string, ipcSysctls map[string]string) error {
	if hostname == "" && len(ipcSysctls) == 0 {
		return nil
	}
	return nsthread.RunDisposable(func(int) error {
		enter := func(pin string, nstype int) error {
			f, err := os.Open(pin)
			if err != nil {
				return err
			}
			defer f.Close()
			return unix.Setns(int(f.Fd()), nstype)
		}
		if hostname != "" {
			if err := enter(p.UTS, unix.CLONE_NEWUTS); err != nil {
				return fmt.Errorf("enter the pod's UTS namespace: %w", err)
			}
			if err := unix.Sethostname([]byte(hostname)); err != nil {
				return fmt.Errorf("set hostname %q: %w", hostname, err)
			}
		}
		if len(ipcSysctls) > 0 {
			if err := enter(p.IPC, unix.CLONE_NEWIPC); err != nil {
				return fmt.Errorf("enter the pod's IPC namespace: %w", err)
			}
			for _, name := range slices.Sorted(maps.Keys(ipcSysctls)) {
				if err := writeSysctl(name, ipcSysctls[name]); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
