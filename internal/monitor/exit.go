package monitor

// A container's end: once the reaper collected its init, make the exit
// durable, clean up, finish the log, then report. The order is the
// contract (monitorapi.EventExited): once the daemon hears of an exit,
// exit.json is on disk and every line of output is in the log.

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/berth-runtime/berth/internal/atomicfile"
	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"golang.org/x/sys/unix"
)

// drainTimeout bounds how long an exit waits for the output pipes to reach
// EOF once the container is destroyed.
const drainTimeout = 2 * time.Second

// initReaped is the reaper's callback for c's init; it runs with the
// reaper's lock held and must not block.
func (m *monitor) initReaped(c *container, ws unix.WaitStatus) {
	c.exitMu.Lock()
	c.ws = ws
	close(c.reaped)
	armed := c.armed
	c.exitMu.Unlock()
	if armed {
		m.busy.Add(1)
		go m.handleExit(c)
	}
}

// armExit makes c's exit be handled, now if the init already ended: create
// calls it once the container is complete. No goroutine waits for a
// running container's end.
func (m *monitor) armExit(c *container) {
	c.exitMu.Lock()
	c.armed = true
	var ended bool
	select {
	case <-c.reaped:
		ended = true
	default:
	}
	c.exitMu.Unlock()
	if ended {
		m.busy.Add(1)
		go m.handleExit(c)
	}
}

// handleExit handles c's end once its init was reaped. Its starter
// counted it as busy.
func (m *monitor) handleExit(c *container) {
	defer m.busy.Add(-1)
	c.exitMu.Lock()
	x := exitOf(c.ws)
	c.exitMu.Unlock()
	if c.oomFile != "" {
		// Read before the delete helper removes the cgroup.
		if n, err := readOOMKills(c.oomFile); err == nil && n > c.oomBase {
			x.OOMKilled = true
		}
	}
	x.FinishedAt = time.Now()
	if err := writeExit(c.bundle, x); err != nil {
		slog.Error("cannot persist the container's exit", "id", c.id, "error", err)
	}
	if err := m.destroy(c); err != nil {
		slog.Error("cannot destroy the exited container", "id", c.id, "error", err)
	}
	if !c.io.drain(drainTimeout) {
		slog.Warn("container output still open after its end; the log was cut", "id", c.id)
	}
	c.log.close()
	c.io.endAttach()

	// A start that is still reporting goes first: "started" must not
	// follow "exited".
	c.mu.Lock()
	m.mu.Lock()
	c.st.Status = monitorapi.StatusStopped
	c.st.Exit = &x
	if !c.creating {
		m.emitLocked(monitorapi.EventExited, c)
	}
	m.mu.Unlock()
	c.mu.Unlock()
	close(c.done)
	slog.Info("container exited", "id", c.id, "code", x.Code, "signal", x.Signal, "oom_killed", x.OOMKilled)
	m.idle.touch()
}

// exitOf turns a wait status into an Exit.
func exitOf(ws unix.WaitStatus) monitorapi.Exit {
	if ws.Signaled() {
		return monitorapi.Exit{Code: 128 + int(ws.Signal()), Signal: int(ws.Signal())}
	}
	return monitorapi.Exit{Code: ws.ExitStatus()}
}

// writeExit persists x as the bundle's exit file.
func writeExit(bundle string, x monitorapi.Exit) error {
	b, err := json.Marshal(x)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(bundle, monitorapi.ExitFile), b, 0o644)
}

// destroy has the delete helper remove the container's cgroup and
// libcontainer state, killing any process left (once; a failed destroy may
// be retried).
func (m *monitor) destroy(c *container) error {
	c.destroyMu.Lock()
	defer c.destroyMu.Unlock()
	if c.destroyed {
		return nil
	}
	if _, err := m.runHelper(helperCall{op: "delete", id: c.id}); err != nil {
		return err
	}
	c.destroyed = true
	return nil
}
