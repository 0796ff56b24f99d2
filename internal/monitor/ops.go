package monitor

// The calls on one container after create: start, kill, delete, reopen-log.

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/containerd/errdefs"
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
	if err := c.execFifo(filepath.Join(m.root, id, execFifoName)); err != nil {
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

// kill signals the container's init through its pidfd, or with all every
// process of the container. With a private PID namespace SIGKILL to the
// init ends them all (the kernel kills the rest of the namespace); in any
// other case the kill helper signals each process of the cgroup (and for
// SIGKILL of a shared PID namespace, libcontainer freezes the cgroup
// first, so nothing escapes by forking).
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
	if all && sig != 0 && !(s == unix.SIGKILL && c.ownPidNS) {
		args := []string{"--signal", strconv.Itoa(sig), "--all"}
		if _, err := m.runHelper(helperCall{op: "kill", id: id, args: args}); err != nil {
			return fmt.Errorf("signal every process of container %s: %w", id, err)
		}
		return nil
	}
	if err := c.signal(s); err != nil {
		return fmt.Errorf("signal container %s: %w", id, err)
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
		if err := c.signal(unix.SIGKILL); err != nil {
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
	if err := m.destroy(c); err != nil {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	c.io.closeAll()
	c.log.close()
	c.closePidfd()
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

// execFifoName is libcontainer's exec fifo in the container's state
// directory (execFifoFilename).
const execFifoName = "exec.fifo"

// execFifoPoll is how often execFifo checks that the init is still alive,
// as libcontainer does.
const execFifoPoll = 100 * time.Millisecond

// execFifo lets the created container's init exec its process: the init
// blocks opening the fifo for writing until a reader opens it, writes one
// byte and execs, which closes its end. This is libcontainer's
// (*Container).exec with awaitFifoOpen, fifoOpen, handleFifoResult and
// readFromExecFifo (runc v1.5.2 libcontainer/container_linux.go), with the
// same check that the init died meanwhile, but without an OS thread
// blocked in open(2) (which upstream leaks when the init is dead): the
// fifo is opened non-blocking, which counts as the reader the init waits
// for, and read through the runtime's poller until the init wrote and
// closed its end. Every execFifoPoll the init is checked as upstream
// checks it (there with system.Stat for a zombie, here on its pidfd or the
// reaper's word), and a dead init's last write is still looked for.
func (c *container) execFifo(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("exec fifo: %w", err)
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("exec fifo: %w", err)
	}
	var buf [16]byte
	got := 0
	// readAll reads what the fifo holds; eof: no writer is left.
	readAll := func(fd uintptr) (eof bool, err error) {
		for {
			n, err := unix.Read(int(fd), buf[:])
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false, nil
			case err != nil:
				return false, err
			case n == 0:
				return true, nil
			}
			got += n
		}
	}
	for {
		_ = f.SetReadDeadline(time.Now().Add(execFifoPoll))
		var readErr error
		err := rc.Read(func(fd uintptr) bool {
			eof, err := readAll(fd)
			if err != nil {
				readErr = err
				return true
			}
			// Done once the init wrote and went (exec closed its end).
			// EOF before any data: it has not opened its end yet.
			return eof && got > 0
		})
		if err == nil {
			err = readErr
		}
		if err == nil {
			return removeFifo(path)
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("exec fifo: %w", err)
		}
		if c.initExited() {
			// It may have written and ended between two looks
			// (upstream: "started, ran, and completed").
			_ = rc.Control(func(fd uintptr) { _, _ = readAll(fd) })
			if got > 0 {
				return removeFifo(path)
			}
			return errors.New("container process is already dead")
		}
	}
}

// removeFifo removes the exec fifo once read (handleFifoResult): from now on
// the container counts as running, also for libcontainer.
func removeFifo(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
