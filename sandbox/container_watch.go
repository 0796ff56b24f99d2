package sandbox

// Following the pod monitors: their events move containers to running and
// exited; a monitor that died leaves its containers exited with a reason.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
)

// watchMonitor follows a pod monitor's events until unwatchMonitor; a second
// call for the same pod does nothing.
func (m *Manager) watchMonitor(podID string, c *monitorapi.Client) {
	m.mu.Lock()
	if _, ok := m.watchers[podID]; ok {
		m.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.watchers[podID] = cancel
	m.mu.Unlock()
	go m.followMonitor(ctx, podID, c)
}

func (m *Manager) unwatchMonitor(podID string) {
	m.mu.Lock()
	cancel := m.watchers[podID]
	delete(m.watchers, podID)
	m.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// followMonitor reconnects to the event stream while the monitor lives:
// each new stream begins with every container's current state, so nothing
// is missed across a reconnect.
func (m *Manager) followMonitor(ctx context.Context, podID string, c *monitorapi.Client) {
	backoff := 20 * time.Millisecond
	for {
		err := c.Events(ctx, func(ev monitorapi.Event) { m.applyMonitorState(podID, ev.State) })
		if ctx.Err() != nil {
			return
		}
		m.mu.RLock()
		var mon Monitor
		if sb := m.sandboxes[podID]; sb != nil && sb.Monitor != nil {
			mon = *sb.Monitor
		}
		m.mu.RUnlock()
		if mon.PID == 0 || !monitorLives(ctx, &mon, c) {
			m.monitorDied(podID, mon.PID)
			return
		}
		m.log.Debug("pod monitor event stream broke; reconnecting", "pod_id", podID, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// applyMonitorState brings a container's record up to what its monitor
// reports, persists the change and publishes it.
func (m *Manager) applyMonitorState(podID string, st monitorapi.State) {
	m.mu.Lock()
	e := m.containers[st.ID]
	if e == nil || e.rec.SandboxID != podID {
		m.mu.Unlock()
		return
	}
	c := e.rec
	var ev *Event
	// startedUnseen: the container started and exited before its start was
	// recorded; its started event goes out before its stopped one.
	startedUnseen := false
	switch {
	case st.Status == monitorapi.StatusRunning && c.State == ContainerCreated:
		c.State, c.StartedAt, c.Pid = ContainerRunning, st.StartedAt, st.Pid
		ev = &Event{Type: EventContainerStarted, At: st.StartedAt}
	case st.Status == monitorapi.StatusStopped && st.Exit != nil && c.State != ContainerExited && c.State != ContainerCreating:
		if c.StartedAt.IsZero() {
			c.StartedAt = st.StartedAt
		}
		startedUnseen = c.State == ContainerCreated && !st.StartedAt.IsZero()
		setExit(c, *st.Exit)
		ev = &Event{Type: EventContainerStopped, At: st.Exit.FinishedAt}
	}
	m.mu.Unlock()
	if ev == nil {
		return
	}
	if err := m.saveContainer(e); err != nil {
		m.log.Error("could not record a container's state change", "pod_id", podID, "container_id", st.ID, "error", err)
	}
	if ev.Type == EventContainerStopped {
		e.markExited()
		m.log.Info("container exited", "pod_id", podID, "container_id", st.ID, "exit_code", c.ExitCode, "reason", c.Reason)
	}
	if startedUnseen {
		m.publish(Event{Type: EventContainerStarted, ContainerID: st.ID, SandboxID: podID, At: st.StartedAt})
	}
	ev.ContainerID, ev.SandboxID = st.ID, podID
	m.publish(*ev)
}

// setExit records how a container ended; the caller holds m.mu.
func setExit(c *Container, x monitorapi.Exit) {
	c.State = ContainerExited
	c.FinishedAt, c.ExitCode, c.Message = x.FinishedAt, int32(x.Code), x.Message
	switch {
	case x.OOMKilled:
		c.Reason = ReasonOOMKilled
	case x.Code == 0:
		c.Reason = ReasonCompleted
	default:
		c.Reason = ReasonError
	}
}

// refreshContainer asks the monitor for a container's state directly.
func (m *Manager) refreshContainer(ctx context.Context, e *containerEntry) {
	m.mu.RLock()
	id, podID := e.rec.ID, e.rec.SandboxID
	sb := m.sandboxes[podID]
	m.mu.RUnlock()
	if sb == nil {
		return
	}
	client := m.monitorClient(sb)
	if client == nil {
		return
	}
	if st, err := client.State(ctx, id); err == nil {
		m.applyMonitorState(podID, st)
	}
}

// monitorDied settles the containers of a pod whose monitor is gone: an
// exit the monitor recorded before it died is taken as is; otherwise the
// container is reported exited with a message that says why.
func (m *Manager) monitorDied(podID string, pid int) {
	var lost []string
	defer func() {
		m.observer().MonitorDied(podID, len(lost))
		// An error only when it cost running containers: a monitor with
		// none left (its pod stopped, or after a reboot) is no news.
		if len(lost) > 0 {
			m.log.Error("pod monitor is gone; its running containers are reported exited", "pod_id", podID, "monitor_pid", pid, "container_ids", lost)
		} else {
			m.log.Info("pod monitor is gone; it had no running container", "pod_id", podID, "monitor_pid", pid)
		}
	}()
	for _, e := range m.podContainers(podID) {
		m.mu.Lock()
		c := e.rec
		if c.State == ContainerExited || c.State == ContainerCreating {
			m.mu.Unlock()
			continue
		}
		x, err := readExitFile(c.Dir)
		if err != nil {
			lost = append(lost, c.ID)
			x = monitorapi.Exit{
				Code: 255, FinishedAt: time.Now(),
				Message: fmt.Sprintf("the pod's monitor (pid %d) died, so the container's end is unknown: remove the pod", pid),
			}
		}
		setExit(c, x)
		m.mu.Unlock()
		if err := m.saveContainer(e); err != nil {
			m.log.Error("could not record a container's state change", "pod_id", podID, "container_id", c.ID, "error", err)
		}
		e.markExited()
		m.publish(Event{Type: EventContainerStopped, ContainerID: c.ID, SandboxID: podID, At: x.FinishedAt})
	}
}

// readExitFile reads the exit status a monitor persisted in the bundle.
func readExitFile(dir string) (monitorapi.Exit, error) {
	var x monitorapi.Exit
	b, err := os.ReadFile(filepath.Join(dir, monitorapi.ExitFile))
	if err == nil {
		err = json.Unmarshal(b, &x)
	}
	return x, err
}
