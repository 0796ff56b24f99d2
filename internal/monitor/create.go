package monitor

// Creating a container: like `runc create` under conmon. The create helper
// makes the container and starts its init, which waits on the exec fifo
// until start; the monitor claims the init (its child once the helper is
// gone) from the reaper. Whatever fails, everything made so far is undone.

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// undoWait bounds how long undoing a create waits for the killed init to
// be reaped.
const undoWait = 10 * time.Second

// container is one container the monitor holds.
type container struct {
	id     string
	bundle string

	// mu serializes the calls on this container (create, start, kill,
	// update, reopen-log, delete) and orders the exit report after a
	// concurrent start's.
	mu sync.Mutex

	// Set by create, then read-only (pidfd: until delete closes it, under
	// mu).
	pid      int
	pidfd    int  // the init's pidfd, -1 if none (it ended at once)
	ownPidNS bool // SIGKILL to the init ends every process
	oomFile  string
	oomBase  uint64 // the cgroup's OOM kill count when created
	log      *criLog
	io       *containerIO

	// destroyMu guards destroyed: both the exit handler and delete may
	// destroy, and it should happen once.
	destroyMu sync.Mutex
	destroyed bool

	// exitMu guards ws and armed. The reaper stores the init's status in
	// ws and closes reaped; the exit is handled once both that happened
	// and the create succeeded (armed).
	exitMu sync.Mutex
	ws     unix.WaitStatus
	armed  bool
	reaped chan struct{}
	// done is closed once the exit is fully handled (durable, logged,
	// reported).
	done chan struct{}

	// Guarded by monitor.mu.
	creating bool // reserved by a create in progress: invisible to others
	st       monitorapi.State
}

// create makes container id from the bundle in r.
func (m *monitor) create(id string, r *monitorapi.CreateRequest) (monitorapi.State, error) {
	c := &container{id: id, bundle: r.Bundle, creating: true, pidfd: -1,
		reaped: make(chan struct{}), done: make(chan struct{})}
	m.mu.Lock()
	switch {
	case m.stopping:
		m.mu.Unlock()
		return monitorapi.State{}, fmt.Errorf("%w: the monitor is shutting down", errdefs.ErrFailedPrecondition)
	case m.containers[id] != nil:
		m.mu.Unlock()
		return monitorapi.State{}, fmt.Errorf("%w: container %s", errdefs.ErrAlreadyExists, id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m.containers[id] = c
	m.mu.Unlock()

	start := time.Now()
	if err := m.build(c, r); err != nil {
		m.mu.Lock()
		delete(m.containers, id)
		m.mu.Unlock()
		slog.Warn("create failed", "id", id, "error", err)
		return monitorapi.State{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c.creating = false
	slog.Info("container created", "id", id, "pid", c.st.Pid, "took", time.Since(start))
	return c.st, nil
}

// build does the work of create on the reserved c.
func (m *monitor) build(c *container, r *monitorapi.CreateRequest) (err error) {
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	if c.log, err = newCRILog(r.LogPath); err != nil {
		return fmt.Errorf("container %s: open its log: %w", c.id, err)
	}
	undo = append(undo, c.log.close)
	var child []*os.File
	// Output is piped even without a log path (the log then discards it):
	// an attacher still reads it, as with containerd or CRI-O.
	c.io, child, err = setupIO(r.Stdin, r.TTY)
	if err != nil {
		return fmt.Errorf("container %s: %w", c.id, err)
	}
	c.io.stdinOnce = r.StdinOnce
	undo = append(undo, c.io.closeAll)

	args := []string{"--bundle", r.Bundle}
	if r.SystemdCgroup {
		args = append(args, "--systemd-cgroup")
	}
	if r.TTY {
		args = append(args, "--tty")
	}
	m.reaper.expectClaim()
	defer m.reaper.claimEnded()
	reply, err := m.runHelper(helperCall{op: "create", id: c.id, args: args, files: child, early: true})
	// The helper has its own copies; once the container's processes are
	// gone nothing holds the output pipes open.
	for _, f := range child {
		_ = f.Close()
	}
	if err != nil {
		return err
	}
	// The init runs, waiting on the exec fifo.
	c.pid, c.ownPidNS = reply.Pid, reply.OwnPidNS
	c.pidfd = m.reaper.claim(reply.Pid, func(ws unix.WaitStatus) { m.initReaped(c, ws) })
	undo = append(undo, func() {
		// Kill it, wait for the reaper, then remove the container.
		_ = c.signal(unix.SIGKILL)
		t := time.NewTimer(undoWait)
		select {
		case <-c.reaped:
		case <-t.C:
			slog.Error("the killed init of a container that failed to create was not reaped", "id", c.id, "pid", c.pid)
		}
		t.Stop()
		if err := m.destroy(c); err != nil {
			slog.Error("cannot destroy a container that failed to create", "id", c.id, "error", err)
		}
		c.closePidfd()
	})
	if err = c.io.takeConsole(r.Stdin); err != nil {
		return fmt.Errorf("container %s: %w", c.id, err)
	}
	c.oomFile, c.oomBase = oomBaseline(c.id, reply.CgroupPaths)
	c.st = monitorapi.State{ID: c.id, Status: monitorapi.StatusCreated, Pid: c.pid, CreatedAt: time.Now()}
	c.io.startCopiers(c.log, c.id)
	m.armExit(c)
	return nil
}

// signal sends sig to the container's init through its pidfd; an init
// that is gone is no error. The caller holds c.mu (or owns c).
func (c *container) signal(sig unix.Signal) error {
	if c.pidfd < 0 {
		return nil
	}
	err := unix.PidfdSendSignal(c.pidfd, sig, nil, 0)
	if err == unix.ESRCH {
		return nil
	}
	return err
}

// closePidfd releases the init's pidfd. The caller holds c.mu (or owns c).
func (c *container) closePidfd() {
	if c.pidfd >= 0 {
		_ = unix.Close(c.pidfd)
		c.pidfd = -1
	}
}

// initExited reports whether the init has ended (reaped or a zombie).
func (c *container) initExited() bool {
	select {
	case <-c.reaped:
		return true
	default:
	}
	if c.pidfd < 0 {
		return false
	}
	// A pidfd turns readable when its process ended.
	fds := []unix.PollFd{{Fd: int32(c.pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}
