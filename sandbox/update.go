package sandbox

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
)

// UpdateResources applies new pod resources and overhead to the pod cgroup
// live (in-place pod resize) and records them. Nil leaves a part unchanged.
func (m *Manager) UpdateResources(ctx context.Context, idOrPrefix string, res, overhead *Resources) error {
	sb, err := m.lookup(idOrPrefix)
	if err != nil {
		return err
	}
	unlock := m.lock(sb.ID)
	defer unlock()
	if sb.State != StateReady {
		return fmt.Errorf("%w: pod sandbox %s is not ready", errdefs.ErrFailedPrecondition, sb.ID)
	}
	if res == nil {
		res = sb.Config.Resources
	}
	if overhead == nil {
		overhead = sb.Config.Overhead
	}
	total := res.WithOverhead(overhead)
	if total == nil {
		return nil // nothing to apply
	}
	if err := LoadPodCgroup(sb.Cgroup).Update(total); err != nil {
		return fmt.Errorf("update resources of pod sandbox %s: %w", sb.ID, err)
	}
	m.mu.Lock()
	sb.Config.Resources, sb.Config.Overhead = res, overhead
	m.mu.Unlock()
	if err := m.records.save(sb); err != nil {
		return err
	}
	m.log.InfoContext(ctx, "pod sandbox resources updated", "pod_id", sb.ID)
	return nil
}
