package monitor

// The calls on one container after create: start, kill, delete, reopen-log.

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// deleteWait bounds how long deleting a never-started container waits for
// its killed init to be reaped and cleaned up.
const deleteWait = 10 * time.Second

// status reads c's status.
func (m *monitor) status(c *container) monitorapi.Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return c.st.Status
}

// start lets a created container's process run.
func (m *monitor) start(id string) (monitorapi.State, error) {
	c, err := m.lookup(id)
	if err != nil {
		return monitorapi.State{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := m.status(c); st != monitorapi.StatusCreated {
		return monitorapi.State{}, fmt.Errorf("%w: container %s is %s, not created", errdefs.ErrFailedPrecondition, id, st)
	}
	if err := c.lc.Exec(); err != nil {
		// Mostly: the init died before start (its exit is being handled).
		return monitorapi.State{}, fmt.Errorf("%w: start container %s: %v", errdefs.ErrFailedPrecondition, id, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// The exit handler needs c.mu to report, so the status is still
	// created here even if the process already ended.
	c.st.Status = monitorapi.StatusRunning
	c.st.StartedAt = time.Now()
	m.emitLocked(monitorapi.EventStarted, c)
	slog.Info("container started", "id", id)
	return c.st, nil
}

// kill signals the container's init, or with all every process in its
// cgroup. runc 1.5 dropped `kill --all`: with a private PID namespace
// SIGKILL to the init ends them all, and libcontainer's Signal SIGKILLs the
// whole cgroup when the namespace is shared. Other signals are sent to
// each process of the cgroup here.
func (m *monitor) kill(id string, sig int, all bool) error {
	if sig < 0 || sig > 64 {
		return fmt.Errorf("%w: bad signal %d", errdefs.ErrInvalidArgument, sig)
	}
	c, err := m.lookup(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.status(c) == monitorapi.StatusStopped {
		return nil
	}
	s := unix.Signal(sig)
	err = c.lc.Signal(s)
	if errors.Is(err, libcontainer.ErrNotRunning) {
		return nil // it ended meanwhile
	}
	if err != nil {
		return fmt.Errorf("signal container %s: %w", id, err)
	}
	if all && s != unix.SIGKILL {
		pids, err := c.lc.Processes()
		if err != nil {
			return fmt.Errorf("signal every process of container %s: %w", id, err)
		}
		for _, pid := range pids {
			if err := unix.Kill(pid, s); err != nil && err != unix.ESRCH {
				slog.Warn("cannot signal a container process", "id", id, "pid", pid, "error", err)
			}
		}
	}
	return nil
}

// delete forgets a created or stopped container.
func (m *monitor) delete(id string) error {
	c, err := m.lookup(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch m.status(c) {
	case monitorapi.StatusRunning:
		return fmt.Errorf("%w: container %s is running", errdefs.ErrFailedPrecondition, id)
	case monitorapi.StatusCreated:
		// The init waits on the exec fifo: kill it and let the exit
		// handler (which needs c.mu to report) do the rest.
		if err := c.lc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("kill created container %s: %w", id, err)
		}
		c.mu.Unlock()
		t := time.NewTimer(deleteWait)
		select {
		case <-c.done:
		case <-t.C:
		}
		t.Stop()
		c.mu.Lock()
		select {
		case <-c.done:
		default:
			return fmt.Errorf("delete container %s: its killed init did not end within %s", id, deleteWait)
		}
	}
	// Stopped: the exit handler destroyed it unless that failed.
	if err := c.destroy(); err != nil {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	c.io.closeAll()
	c.log.close()
	m.mu.Lock()
	if m.containers[id] == c {
		delete(m.containers, id)
	}
	m.mu.Unlock()
	slog.Info("container deleted", "id", id)
	return nil
}

// reopenLog continues a live container's log in a new file.
func (m *monitor) reopenLog(id string) error {
	c, err := m.lookup(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.status(c) == monitorapi.StatusStopped {
		return fmt.Errorf("%w: container %s is stopped", errdefs.ErrFailedPrecondition, id)
	}
	if err := c.log.reopen(); err != nil {
		return fmt.Errorf("reopen the log of container %s: %w", id, err)
	}
	return nil
}
