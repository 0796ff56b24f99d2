package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berth-runtime/berth/network"
)

// stopNetwork runs CNI DEL and removes the netns pin. It runs even for a
// stopped sandbox whose earlier teardown failed half-way.
func (m *Manager) stopNetwork(ctx context.Context, sb *Sandbox) error {
	if sb.Config.HostNetwork || sb.NetNS == "" {
		return nil
	}
	if err := m.opts.Network.Teardown(ctx, m.attachment(sb)); err != nil {
		return err
	}
	return network.RemoveNetNS(sb.NetNS)
}

// teardown releases every resource of sb, in reverse order of creation.
// Each step tolerates what is already gone, so it can be repeated.
func (m *Manager) teardown(ctx context.Context, sb *Sandbox) error {
	// The monitor first: it is in the pod cgroup. (Remove has stopped it
	// already; a rollback of RunPodSandbox has not.)
	if err := m.stopMonitor(ctx, sb); err != nil {
		return fmt.Errorf("tear down pod sandbox %s: %w", sb.ID, err)
	}
	var errs []error
	errs = append(errs, m.stopNetwork(ctx, sb))
	errs = append(errs, stopHolder(ctx, sb.PIDHolder))
	if sb.Dir != "" {
		// The PID namespace pin, also when the record lost its holder.
		errs = append(errs, unpinNamespace(filepath.Join(sb.Dir, "pid")))
	}
	errs = append(errs, RemovePodFiles(sb.Dir))
	// From the directory, not the record: a crash can come between pinning
	// and saving the record, and removal of absent pins is harmless.
	errs = append(errs, RemovePinnedNamespaces(PinPaths(sb.Dir)))
	cg := sb.Cgroup
	if cg.Path == "" {
		cg = m.unrecordedPodCgroup(sb)
	}
	if cg.Path != "" {
		errs = append(errs, LoadPodCgroup(cg).Remove())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tear down pod sandbox %s: %w", sb.ID, err)
	}
	if err := os.RemoveAll(sb.Dir); err != nil {
		return fmt.Errorf("remove sandbox dir: %w", err)
	}
	return nil
}

// unrecordedPodCgroup finds the pod cgroup of a sandbox whose record does
// not name one: RunPodSandbox records the sandbox before it makes the
// cgroup, and records the cgroup only after, so a crash in between leaves
// a cgroup that only its path can find. Below berth's default parent that
// path is the pod's own (berth-pod-<id>); a kubelet-given parent is
// kubelet's, and is left alone. It returns the zero state if there is none.
func (m *Manager) unrecordedPodCgroup(sb *Sandbox) CgroupState {
	if sb.Config.CgroupParent != "" {
		return CgroupState{}
	}
	p, err := podCgroupPath(m.opts.CgroupDriver, "", sb.ID)
	if err != nil {
		return CgroupState{}
	}
	st := CgroupState{Driver: m.opts.CgroupDriver, Path: p, Owned: true}
	c := LoadPodCgroup(st)
	c.mu.Lock()
	defer c.mu.Unlock()
	if mgr, err := c.manager(); err != nil || !anyExists(mgr) {
		return CgroupState{}
	}
	return st
}
