package monitor

// Renewal: a quiet monitor that grew replaces its process image with a
// fresh one of the same binary (execve of /proc/self/exe), handing its
// state and descriptors over. The pid, the parenthood of the containers,
// the socket, the events connections, the log files and the output pipes
// all stay; what goes is the Go heap's garbage, the collector's metadata,
// grown stacks and idle threads, which a collection cannot give back (see
// tune.go). The fresh process costs what a monitor that just started does.
//
// It happens only when nothing is in flight: no request (the accept loop
// is paused first, new connections wait in the socket's backlog), no exit
// being handled, no helper running, no event unsent, no client attached
// (attach.go: the renewal waits until the last one went); the log copiers
// are paused where every byte they read is written, an unterminated line
// travelling with the state. Anything else, or a failed exec, and the
// monitor carries on as it was.

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"golang.org/x/sys/unix"
)

// renewStateEnv names the descriptor (a memfd) holding a renewed
// monitor's renewState.
const renewStateEnv = "BERTH_MONITOR_RENEW_FD"

// pauseTimeout bounds how long a renewal waits for the log copiers to
// stop (one may be blocked writing the log).
const pauseTimeout = time.Second

// renewState is what a monitor hands over to its renewed self.
type renewState struct {
	Listener    int              `json:"listener"`
	Subscribers []int            `json:"subscribers,omitempty"`
	Containers  []renewContainer `json:"containers,omitempty"`
}

// renewContainer is one container's part; descriptors are -1 when absent.
type renewContainer struct {
	State     monitorapi.State `json:"state"`
	Bundle    string           `json:"bundle"`
	Pidfd     int              `json:"pidfd"`
	OwnPidNS  bool             `json:"own_pid_ns,omitempty"`
	OOMFile   string           `json:"oom_file,omitempty"`
	OOMBase   uint64           `json:"oom_base,omitempty"`
	Destroyed bool             `json:"destroyed,omitempty"`
	LogPath   string           `json:"log_path,omitempty"`
	Log       int              `json:"log"`
	TTY       bool             `json:"tty,omitempty"`
	StdinOnce bool             `json:"stdin_once,omitempty"`
	Stdin     int              `json:"stdin"`
	Out       int              `json:"out"`
	ErrOut    int              `json:"err_out"`
	// Pending are the unterminated lines of stdout and stderr.
	Pending [2][]byte `json:"pending"`
}

// errNotQuiet is why a renewal waits: something is in flight.
var errNotQuiet = errors.New("the monitor is not quiet")

// renew replaces the process with a fresh monitor if the monitor is
// quiet; it returns only if it did not (why, for the log).
func (m *monitor) renew() error {
	if m.busy.Load() != 0 {
		return errNotQuiet
	}
	if m.attachers.Load() != 0 {
		return fmt.Errorf("%w: attached", errNotQuiet)
	}
	m.mu.Lock()
	stopping := m.stopping
	m.mu.Unlock()
	if stopping {
		return errors.New("stopping")
	}
	// New connections wait in the backlog from here. The accept loop
	// answers at once (its Accept fails on the deadline), unless it ended.
	m.acceptResume = make(chan struct{})
	m.pauseAccept.Store(true)
	_ = m.ln.SetDeadline(time.Unix(1, 0))
	defer func() { // when renewal fails
		_ = m.ln.SetDeadline(time.Time{})
		m.pauseAccept.Store(false)
		close(m.acceptResume)
	}()
	select {
	case <-m.acceptParked:
	case <-m.stopped:
		return errors.New("stopping")
	}

	// No reaping (so no exit can begin) from here.
	m.reaper.mu.Lock()
	defer m.reaper.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.quietLocked(); err != nil {
		return err
	}
	var paused []*containerIO
	defer func() {
		for _, cio := range paused {
			cio.unpause()
		}
	}()
	until := time.Now().Add(pauseTimeout)
	for _, c := range m.containers {
		if c.st.Status == monitorapi.StatusStopped {
			continue
		}
		if !c.io.pause(until) {
			return fmt.Errorf("%w: the log copiers of container %s did not pause", errNotQuiet, c.id)
		}
		paused = append(paused, c.io)
	}

	var fds []int // handed over: close-on-exec cleared, restored on failure
	defer func() {
		for _, fd := range fds {
			unix.CloseOnExec(fd)
		}
	}()
	inherit := func(conn interface {
		SyscallConn() (syscall.RawConn, error)
	}) int {
		if conn == nil {
			return -1
		}
		fd := -1
		if rc, err := conn.SyscallConn(); err == nil {
			_ = rc.Control(func(u uintptr) { fd = int(u) })
		}
		if fd >= 0 {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
				return -1
			}
			fds = append(fds, fd)
		}
		return fd
	}
	file := func(f *os.File) int {
		if f == nil {
			return -1
		}
		return inherit(f)
	}
	st := renewState{Listener: inherit(m.ln)}
	for s := range m.subs {
		st.Subscribers = append(st.Subscribers, inherit(s.conn))
	}
	for _, c := range m.containers {
		rc := renewContainer{
			State: c.st, Bundle: c.bundle, Pidfd: -1, OwnPidNS: c.ownPidNS,
			OOMFile: c.oomFile, OOMBase: c.oomBase, Destroyed: c.destroyed,
			LogPath: c.log.path, Log: -1, Stdin: -1, Out: -1, ErrOut: -1, TTY: c.io.tty,
			StdinOnce: c.io.stdinOnce,
		}
		if c.st.Status != monitorapi.StatusStopped {
			if c.pidfd >= 0 {
				rc.Pidfd = c.pidfd
				if _, err := unix.FcntlInt(uintptr(c.pidfd), unix.F_SETFD, 0); err == nil {
					fds = append(fds, c.pidfd)
				}
			}
			rc.Log = file(c.log.f)
			rc.Stdin = file(c.io.stdin)
			streams, pending := c.io.handover()
			rc.Out, rc.ErrOut, rc.Pending = file(streams[0]), file(streams[1]), pending
		}
		st.Containers = append(st.Containers, rc)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	mfd, err := unix.MemfdCreate("berth-monitor-state", 0)
	if err != nil {
		return fmt.Errorf("memfd: %w", err)
	}
	defer unix.Close(mfd)
	if _, err := unix.Write(mfd, b); err != nil {
		return fmt.Errorf("memfd: %w", err)
	}
	if _, err := unix.Seek(mfd, 0, 0); err != nil {
		return fmt.Errorf("memfd: %w", err)
	}

	// A SIGTERM, SIGHUP or SIGINT during the exec would find no handler
	// (the default kills): ignored, they are dropped instead, and the
	// renewed monitor catches them again.
	signal.Ignore(syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT)
	slog.Debug("monitor renewing itself", "containers", len(st.Containers))
	env := append(os.Environ(), renewStateEnv+"="+strconv.Itoa(mfd))
	err = syscall.Exec("/proc/self/exe", os.Args, env)
	signal.Notify(m.sigs, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT)
	return fmt.Errorf("exec: %w", err)
}

// quietLocked says why the monitor is not quiet, if it is not. The caller
// holds monitor.mu and the reaper's lock, and paused the accept loop.
func (m *monitor) quietLocked() error {
	switch {
	case m.stopping:
		return errors.New("stopping")
	case len(m.containers) == 0:
		return errors.New("no container")
	case m.busy.Load() != 0:
		return fmt.Errorf("%w: busy", errNotQuiet)
	case m.attachers.Load() != 0:
		// An attachment's connection and goroutines are not handed over.
		return fmt.Errorf("%w: attached", errNotQuiet)
	case len(m.reaper.unclaimed) > 0:
		return fmt.Errorf("%w: unclaimed exit statuses", errNotQuiet)
	}
	for s := range m.subs {
		if s.pending.Load() != 0 {
			return fmt.Errorf("%w: events unsent", errNotQuiet)
		}
	}
	for _, c := range m.containers {
		if c.creating {
			return fmt.Errorf("%w: a create in flight", errNotQuiet)
		}
		if c.st.Status != monitorapi.StatusStopped {
			select {
			case <-c.reaped:
				return fmt.Errorf("%w: an exit to handle", errNotQuiet)
			default:
			}
		}
	}
	return nil
}

// takeRenewState reads the state a renewing monitor handed over, if this
// process is one.
func takeRenewState() (*renewState, error) {
	v, ok := os.LookupEnv(renewStateEnv)
	if !ok {
		return nil, nil
	}
	_ = os.Unsetenv(renewStateEnv)
	fd, err := strconv.Atoi(v)
	if err != nil {
		return nil, fmt.Errorf("%s=%q", renewStateEnv, v)
	}
	f := os.NewFile(uintptr(fd), "renew-state")
	defer f.Close()
	var st renewState
	if err := json.NewDecoder(f).Decode(&st); err != nil {
		return nil, fmt.Errorf("the renewed state: %w", err)
	}
	return &st, nil
}

// adopt builds the monitor from the state its previous self handed over.
func adopt(o options, st *renewState) (*monitor, error) {
	m := newMonitorState(o)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become a child subreaper: %w", err)
	}
	file := func(fd int, name string) *os.File {
		if fd < 0 {
			return nil
		}
		unix.CloseOnExec(fd)
		return os.NewFile(uintptr(fd), name)
	}
	lf := file(st.Listener, "listener")
	l, err := net.FileListener(lf)
	_ = lf.Close()
	if err != nil {
		return nil, fmt.Errorf("the listener: %w", err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		_ = l.Close()
		return nil, errors.New("the listener is not a unix socket")
	}
	ul.SetUnlinkOnClose(false)
	m.ln = ul

	for _, rc := range st.Containers {
		c := &container{
			id: rc.State.ID, bundle: rc.Bundle, pid: rc.State.Pid, pidfd: -1,
			ownPidNS: rc.OwnPidNS, oomFile: rc.OOMFile, oomBase: rc.OOMBase,
			destroyed: rc.Destroyed, st: rc.State,
			reaped: make(chan struct{}), done: make(chan struct{}),
			log: &criLog{path: rc.LogPath},
			io:  &containerIO{tty: rc.TTY, stdinOnce: rc.StdinOnce, copied: make(chan struct{})},
		}
		m.containers[c.id] = c
		if c.st.Status == monitorapi.StatusStopped {
			close(c.reaped)
			close(c.done)
			close(c.io.copied)
			continue
		}
		if rc.Pidfd >= 0 {
			unix.CloseOnExec(rc.Pidfd)
			c.pidfd = rc.Pidfd
		}
		c.log.f = file(rc.Log, "log")
		c.io.out = file(rc.Out, "stdout")
		c.io.errOut = file(rc.ErrOut, "stderr")
		switch {
		case rc.TTY && rc.Stdin >= 0 && rc.Stdin == rc.Out:
			c.io.stdin = c.io.out // the pty master
		default:
			c.io.stdin = file(rc.Stdin, "stdin")
		}
		c.io.startCopiers(c.log, c.id, rc.Pending[0], rc.Pending[1])
		c.armed = true
		m.reaper.waiters[c.pid] = func(ws unix.WaitStatus) { m.initReaped(c, ws) }
	}
	for _, fd := range st.Subscribers {
		cf := file(fd, "events")
		conn, err := net.FileConn(cf)
		_ = cf.Close()
		if err != nil {
			slog.Warn("an events subscriber was lost in the renewal", "error", err)
			continue
		}
		uc, ok := conn.(*net.UnixConn)
		if !ok {
			_ = conn.Close()
			continue
		}
		s := &subscriber{conn: uc, ch: make(chan monitorapi.Event, subscriberBuffer)}
		m.subs[s] = struct{}{}
		go m.watchClosed(s)
		go m.pump(s, json.NewEncoder(uc))
	}
	return m, nil
}
