package monitor

// Creating a container: like `runc create`, its init waits on the exec
// fifo until start. Whatever fails, everything made so far is undone.

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// container is one container the monitor holds.
type container struct {
	id     string
	bundle string

	// mu serializes the calls on this container (create, start, kill,
	// update, reopen-log, delete) and orders the exit report after a
	// concurrent start's.
	mu sync.Mutex

	// Set by create, then read-only.
	lc      *libcontainer.Container
	proc    *libcontainer.Process
	cgroup  cgroups.Manager // nil if it could not be built: no OOM report
	oomBase uint64          // the cgroup's OOM kill count when created
	log     *criLog
	io      *containerIO

	// destroyMu guards destroyed: both the exit handler and delete may
	// destroy, and libcontainer should see it once.
	destroyMu sync.Mutex
	destroyed bool

	// done is closed once the exit is fully handled (durable, logged,
	// reported).
	done chan struct{}

	// Guarded by monitor.mu.
	creating bool // reserved by a create in progress: invisible to others
	st       monitorapi.State
}

// create makes container id from the bundle in r.
func (m *monitor) create(id string, r *monitorapi.CreateRequest) (monitorapi.State, error) {
	c := &container{id: id, bundle: r.Bundle, creating: true, done: make(chan struct{})}
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
	invalid := func(err error) error {
		return fmt.Errorf("%w: container %s: %v", errdefs.ErrInvalidArgument, c.id, err)
	}
	spec, err := loadSpec(r.Bundle)
	if err != nil {
		return invalid(err)
	}
	if spec.Process.Terminal != r.TTY {
		return invalid(fmt.Errorf("the spec's process.terminal (%v) and the request's tty (%v) differ", spec.Process.Terminal, r.TTY))
	}
	cfg, err := libcontainerConfig(c.id, r.Bundle, spec, r.SystemdCgroup)
	if err != nil {
		return invalid(err)
	}
	proc, err := newProcess(spec.Process)
	if err != nil {
		return invalid(err)
	}
	proc.LogLevel = libcontainerLogLevel()
	uid, err := cfg.HostRootUID()
	if err != nil {
		return invalid(err)
	}
	gid, err := cfg.HostRootGID()
	if err != nil {
		return invalid(err)
	}

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
	if c.io, err = setupIO(proc, r.Stdin, r.TTY, r.LogPath != "", uid, gid); err != nil {
		return fmt.Errorf("container %s: %w", c.id, err)
	}
	undo = append(undo, c.io.closeAll)

	c.lc, err = libcontainer.Create(m.root, c.id, cfg)
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			return fmt.Errorf("%w: container %s has libcontainer state in %s", errdefs.ErrAlreadyExists, c.id, m.root)
		}
		return fmt.Errorf("container %s: %w", c.id, err)
	}
	undo = append(undo, func() {
		if err := c.lc.Destroy(); err != nil {
			slog.Error("cannot destroy a container that failed to create", "id", c.id, "error", err)
		}
	})
	if err = c.lc.Start(proc); err != nil {
		return fmt.Errorf("container %s: start its init: %w", c.id, err)
	}
	c.proc = proc
	// From here the init runs: kill and reap it should anything fail.
	undo = append(undo, func() {
		_ = proc.Signal(unix.SIGKILL)
		_, _ = proc.Wait()
	})
	if err = c.io.started(r.Stdin); err != nil {
		return fmt.Errorf("container %s: %w", c.id, err)
	}
	c.cgroup, c.oomBase = oomBaseline(c.id, cfg.Cgroups)
	pid, _ := proc.Pid()
	c.st = monitorapi.State{ID: c.id, Status: monitorapi.StatusCreated, Pid: pid, CreatedAt: time.Now()}
	c.io.startCopiers(c.log, c.id)
	go m.waitExit(c)
	return nil
}

// oomBaseline builds a manager for the container's cgroup (libcontainer
// keeps its own private) and reads its OOM kill count, so that the exit
// can tell whether the OOM killer struck while the container ran.
func oomBaseline(id string, cg *cgroups.Cgroup) (cgroups.Manager, uint64) {
	mgr, err := manager.New(cg)
	if err != nil {
		slog.Warn("no OOM kill report for this container", "id", id, "error", err)
		return nil, 0
	}
	n, err := mgr.OOMKillCount()
	if err != nil {
		slog.Warn("cannot read the container's OOM kill count", "id", id, "error", err)
	}
	return mgr, n
}
