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
	if sb.Cgroup.Path != "" {
		errs = append(errs, LoadPodCgroup(sb.Cgroup).Remove())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tear down pod sandbox %s: %w", sb.ID, err)
	}
	if err := os.RemoveAll(sb.Dir); err != nil {
		return fmt.Errorf("remove sandbox dir: %w", err)
	}
	return nil
}
