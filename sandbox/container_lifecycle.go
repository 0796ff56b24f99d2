package sandbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/signal"
	"golang.org/x/sys/unix"
)

// StartContainer starts a created container's process.
func (m *Manager) StartContainer(ctx context.Context, id string) error {
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
	if state != ContainerCreated {
		return fmt.Errorf("%w: container %s is %s, only a created container can be started", errdefs.ErrFailedPrecondition, c.ID, state)
	}
	if sb == nil {
		return fmt.Errorf("%w: the pod sandbox of container %s is gone", errdefs.ErrFailedPrecondition, c.ID)
	}
	client := m.monitorClient(sb)
	if client == nil {
		return fmt.Errorf("%w: pod sandbox %s has no monitor", errdefs.ErrFailedPrecondition, sb.ID)
	}
	st, err := client.Start(ctx, c.ID)
	if err != nil {
		return fmt.Errorf("start container %s: %w", c.ID, err)
	}
	m.mu.Lock()
	// The monitor's events may have come first: they then reported the
	// start (or the start and the exit) already, and published it; one
	// started event per container, whoever sees the start first.
	started := c.State == ContainerCreated
	if started {
		c.State = ContainerRunning
	}
	c.StartedAt, c.Pid = st.StartedAt, st.Pid
	m.mu.Unlock()
	if err := m.saveContainer(e); err != nil {
		return err
	}
	m.log.InfoContext(ctx, "container started", "pod_id", c.SandboxID, "container_id", c.ID, "pid", st.Pid)
	if started {
		m.publish(Event{Type: EventContainerStarted, ContainerID: c.ID, SandboxID: c.SandboxID, At: st.StartedAt})
	}
	return nil
}

// StopContainer sends the container's stop signal, then SIGKILL once
// timeout has passed (at once for 0), and waits until it has exited. A
// missing, created or exited container is success.
func (m *Manager) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	return m.withExisting(id, func(e *containerEntry) error { return m.stopContainer(ctx, e, timeout) })
}

// withExisting runs fn on a container with its lifecycle lock held; for
// Stop and Remove, to which a missing container is already done.
func (m *Manager) withExisting(id string, fn func(*containerEntry) error) error {
	e, err := m.lookupContainer(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	e.lifecycle.Lock()
	defer e.lifecycle.Unlock()
	return fn(e)
}

// stopContainer does StopContainer's work; the caller holds e.lifecycle.
func (m *Manager) stopContainer(ctx context.Context, e *containerEntry, timeout time.Duration) error {
	m.mu.RLock()
	c := e.rec
	state, sb, stopSignal := c.State, m.sandboxes[c.SandboxID], c.StopSignal
	m.mu.RUnlock()
	if state != ContainerRunning && state != ContainerUnknown {
		return nil
	}
	client := m.monitorClient(sb)
	if client == nil {
		return nil
	}
	log := m.log.With("pod_id", c.SandboxID, "container_id", c.ID)
	if timeout > 0 {
		sig := unix.SIGTERM
		if stopSignal != "" {
			if s, err := signal.ParseSignal(stopSignal); err == nil {
				sig = s
			}
		}
		if err := client.Kill(ctx, c.ID, int(sig), false); err != nil {
			return fmt.Errorf("signal container %s: %w", c.ID, err)
		}
		if exited, err := m.awaitExit(ctx, e, timeout); exited || err != nil {
			return err
		}
		log.InfoContext(ctx, "container did not stop in time: killing it", "timeout", timeout, "signal", sig.String())
	}
	if err := client.Kill(ctx, c.ID, int(unix.SIGKILL), true); err != nil {
		return fmt.Errorf("kill container %s: %w", c.ID, err)
	}
	_, err := m.awaitExit(ctx, e, 0)
	return err
}

// awaitExit waits until e has exited, for at most d (0: as long as ctx
// allows). It returns whether it exited; the error is ctx's. Should an
// event be missed, the monitor is asked directly every second.
func (m *Manager) awaitExit(ctx context.Context, e *containerEntry, d time.Duration) (bool, error) {
	var expire <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		expire = t.C
	}
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		select {
		case <-e.exited:
			return true, nil
		case <-expire:
			return false, nil
		case <-ctx.Done():
			return false, fmt.Errorf("%w: waiting for container %s to stop: %v", context.DeadlineExceeded, e.rec.ID, context.Cause(ctx))
		case <-poll.C:
			m.refreshContainer(ctx, e)
		}
	}
}

// RemoveContainer kills the container if it runs and removes everything it
// owns. A missing container is success.
func (m *Manager) RemoveContainer(ctx context.Context, id string) error {
	return m.withExisting(id, func(e *containerEntry) error { return m.removeContainer(ctx, e) })
}

// removeContainer does RemoveContainer's work; the caller holds e.lifecycle.
func (m *Manager) removeContainer(ctx context.Context, e *containerEntry) error {
	if err := m.stopContainer(ctx, e, 0); err != nil {
		return err
	}
	m.mu.RLock()
	c := e.rec.clone()
	sb := m.sandboxes[c.SandboxID]
	m.mu.RUnlock()
	if err := m.cleanupContainer(ctx, sb, &c); err != nil {
		return err
	}
	if err := m.ctrRecords.delete(c.ID); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.containers, c.ID)
	if m.ctrNames[e.name] == c.ID {
		delete(m.ctrNames, e.name)
	}
	m.mu.Unlock()
	e.markExited()
	m.log.InfoContext(ctx, "container removed", "pod_id", c.SandboxID, "container_id", c.ID)
	m.publish(Event{Type: EventContainerDeleted, ContainerID: c.ID, SandboxID: c.SandboxID, At: time.Now()})
	return nil
}

// stopContainers kills every running container of a pod.
func (m *Manager) stopContainers(ctx context.Context, podID string) error {
	var errs []error
	for _, e := range m.podContainers(podID) {
		e.lifecycle.Lock()
		errs = append(errs, m.stopContainer(ctx, e, 0))
		e.lifecycle.Unlock()
	}
	return errors.Join(errs...)
}

// removeContainers removes every container of a pod.
func (m *Manager) removeContainers(ctx context.Context, podID string) error {
	var errs []error
	for _, e := range m.podContainers(podID) {
		e.lifecycle.Lock()
		errs = append(errs, m.removeContainer(ctx, e))
		e.lifecycle.Unlock()
	}
	return errors.Join(errs...)
}
