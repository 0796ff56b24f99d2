package sandbox

import (
	"context"
	"fmt"

	"github.com/berth-runtime/berth/sandbox/ocispec"
	"github.com/containerd/errdefs"
)

// UpdateContainerResources applies new limits to a running (or created)
// container's cgroup live, and records them for ContainerStatus.
func (m *Manager) UpdateContainerResources(ctx context.Context, id string, res *ocispec.Resources) error {
	e, err := m.lookupContainer(id)
	if err != nil {
		return err
	}
	e.lifecycle.Lock()
	defer e.lifecycle.Unlock()
	m.mu.RLock()
	c := e.rec
	state, sb := c.State, m.sandboxes[c.SandboxID]
	m.mu.RUnlock()
	if state != ContainerRunning && state != ContainerCreated {
		return fmt.Errorf("%w: container %s is %s: only a created or running container can be updated", errdefs.ErrFailedPrecondition, c.ID, state)
	}
	linux, err := m.specs.Resources(res)
	if err != nil {
		return err
	}
	client := m.monitorClient(sb)
	if client == nil {
		return fmt.Errorf("%w: pod sandbox %s has no monitor", errdefs.ErrFailedPrecondition, c.SandboxID)
	}
	if err := client.Update(ctx, c.ID, linux); err != nil {
		return fmt.Errorf("update resources of container %s: %w", c.ID, err)
	}
	m.mu.Lock()
	c.Resources = linux
	c.Config.Spec.Resources = res
	m.mu.Unlock()
	if err := m.saveContainer(e); err != nil {
		return err
	}
	m.log.InfoContext(ctx, "container resources updated", "pod_id", c.SandboxID, "container_id", c.ID)
	return nil
}

// ReopenContainerLog makes the monitor continue a running container's log
// in a new file at its log path (kubelet renamed the old one to rotate it).
func (m *Manager) ReopenContainerLog(ctx context.Context, id string) error {
	e, err := m.lookupContainer(id)
	if err != nil {
		return err
	}
	m.mu.RLock()
	c := e.rec
	state, sb, logPath := c.State, m.sandboxes[c.SandboxID], c.LogPath
	m.mu.RUnlock()
	if state != ContainerRunning {
		return fmt.Errorf("%w: container %s is %s: only a running container's log can be reopened", errdefs.ErrFailedPrecondition, c.ID, state)
	}
	if logPath == "" {
		return fmt.Errorf("%w: container %s has no log path", errdefs.ErrFailedPrecondition, c.ID)
	}
	client := m.monitorClient(sb)
	if client == nil {
		return fmt.Errorf("%w: pod sandbox %s has no monitor", errdefs.ErrFailedPrecondition, c.SandboxID)
	}
	if err := client.ReopenLog(ctx, c.ID); err != nil {
		return fmt.Errorf("reopen the log of container %s: %w", c.ID, err)
	}
	return nil
}
