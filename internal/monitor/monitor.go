// Package monitor is berth's per-pod monitor process (cmd/berth-monitor).
//
// One monitor runs per pod, in a session of its own, started by the berth
// daemon. It is the parent of the pod's containers (a child subreaper): it
// reaps them, persists each exit durably (exit.json in the bundle), writes
// their output to kubelet's CRI log files, holds their stdin and terminal
// for attach (attach.go), and answers the daemon on a unix socket (the
// protocol is sandbox/monitorapi). Containers and their logs carry on while
// the daemon is down; the daemon reconnects and reads the current state
// from the events stream.
//
// The libcontainer work (create, delete, update, kill of every process) is
// done by short-lived helper processes, `<helper> container-op <op>` (see
// internal/containerops), as conmon has runc do it: a created container's
// init is the helper's child and is reparented to the monitor when the
// helper exits. The monitor itself does the exec fifo handshake of start,
// signals the init through a pidfd, and owns all reaping (reaper.go).
//
// Its memory is paid once per pod, so it links only the standard library,
// golang.org/x/sys/unix and the protocol (no libcontainer, no cgo), keeps
// goroutines and buffers few and small, tunes the Go runtime for a mostly
// idle process (tune.go) and, once quiet after some activity, renews its
// process image, handing its state over to a fresh copy of itself with the
// same pid (renew.go).
package monitor

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"golang.org/x/sys/unix"
)

// ReadyFDEnv names the inherited descriptor on which the monitor reports
// "ok\n" once it listens, or "error: <why>\n" before it exits.
const ReadyFDEnv = "BERTH_MONITOR_READY_FD"

// options are the command line.
type options struct {
	dir, pod string
	helper   string
	level    slog.Level
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("berth-monitor", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.dir, "dir", "", "the pod's state directory (socket, libcontainer root)")
	fs.StringVar(&o.pod, "pod", "", "the pod's ID")
	fs.StringVar(&o.helper, "helper", "", "the binary run as `<helper> container-op ...` for libcontainer work")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.dir == "" || !filepath.IsAbs(o.dir):
		return o, errors.New("--dir must be an absolute path")
	case o.pod == "":
		return o, errors.New("--pod must be set")
	case o.helper == "" || !filepath.IsAbs(o.helper):
		return o, errors.New("--helper must be an absolute path")
	}
	if *level == "" {
		*level = "info"
	}
	if err := o.level.UnmarshalText([]byte(*level)); err != nil {
		return o, fmt.Errorf("--log-level: %w", err)
	}
	return o, nil
}

// Main runs the monitor with the given arguments (without the program
// name) and returns its exit status.
func Main(args []string) int {
	resetIgnoredSignals()
	tuneRuntime()
	ready := takeReadyFile()
	o, err := parseFlags(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-monitor: %v\n", err)
		reportReady(ready, err)
		return 2
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.level})).With("pod", o.pod))

	sigs := make(chan os.Signal, 4)
	// Caught, not ignored: an ignored disposition would be inherited by
	// every container process across exec, a caught one is reset.
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	// Its own channel: a burst of exits must not crowd out a SIGTERM. One
	// pending notification is enough, the reaper reaps all there is.
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)

	state, err := takeRenewState()
	var m *monitor
	switch {
	case err != nil:
	case state != nil:
		m, err = adopt(o, state)
	default:
		m, err = newMonitor(o)
	}
	if err != nil {
		slog.Error("cannot start", "error", err)
		reportReady(ready, err)
		return 1
	}
	m.sigs, m.chld = sigs, chld
	reportReady(ready, nil)
	go m.handleSignals(sigs, chld)
	if state != nil {
		// Exits during the exec found no SIGCHLD handler.
		m.reaper.reap()
		slog.Info("monitor renewed", "containers", len(state.Containers), "pid", os.Getpid())
	} else {
		slog.Info("monitor listening", "socket", m.sockPath, "pid", os.Getpid())
	}
	m.idle.settle()
	m.serve()
	return 0
}

// newMonitorState is a monitor without a listener.
func newMonitorState(o options) *monitor {
	m := &monitor{
		dir:          o.dir,
		pod:          o.pod,
		root:         filepath.Join(o.dir, "runc"),
		sockPath:     filepath.Join(o.dir, monitorapi.SocketName),
		helper:       o.helper,
		helperEnv:    helperEnvironment(),
		logLevel:     levelName(o.level),
		containers:   make(map[string]*container),
		subs:         make(map[*subscriber]struct{}),
		stopped:      make(chan struct{}),
		reaper:       newReaper(),
		acceptParked: make(chan struct{}),
	}
	m.idle = newIdler(m.renew)
	return m
}

// newMonitor prepares the state directory and listens.
func newMonitor(o options) (*monitor, error) {
	m := newMonitorState(o)
	// Orphans of the pod (a container's init once its helper exited, and
	// whatever a container leaves behind) are reparented to the monitor
	// rather than to the host's init.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become a child subreaper: %w", err)
	}
	if fi, err := os.Stat(m.helper); err != nil {
		return nil, fmt.Errorf("the container helper: %w", err)
	} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("the container helper %s is not an executable", m.helper)
	}
	if err := os.MkdirAll(m.root, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(m.root, 0o700); err != nil {
		return nil, err
	}
	if left, _ := os.ReadDir(m.root); len(left) > 0 {
		// A previous monitor of this pod died: its containers were not
		// ours to reap. Creating one with the same ID will fail.
		slog.Warn("libcontainer state left by an earlier monitor", "root", m.root, "entries", len(left))
	}
	ln, err := listen(m.sockPath)
	if err != nil {
		return nil, err
	}
	m.ln = ln
	return m, nil
}

// listen binds the socket with mode 0600, replacing a stale socket file but
// never one that another monitor still answers on.
func listen(path string) (*net.UnixListener, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_, err := monitorapi.NewClient(path).Hello(ctx)
	cancel()
	if err == nil {
		return nil, fmt.Errorf("another monitor is listening on %s", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	// The umask makes the socket 0600 from the start; it is restored at
	// once, before any container (which would inherit it) is created.
	old := syscall.Umask(0o177)
	// monitorapi.Listen copes with paths too long for a socket address.
	ln, err := monitorapi.Listen(path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	return ln, nil
}

// handleSignals: SIGCHLD runs the reaper; SIGTERM ends a monitor that
// holds nothing; the others are caught only so that they do nothing.
func (m *monitor) handleSignals(sigs, chld <-chan os.Signal) {
	for {
		var s os.Signal
		select {
		case <-chld:
			m.reaper.reap()
			continue
		case s = <-sigs:
		}
		if s != syscall.SIGTERM {
			slog.Debug("signal ignored", "signal", s)
			continue
		}
		if err := m.shutdown(); err != nil {
			slog.Warn("SIGTERM ignored", "reason", err)
			continue
		}
		m.stop("SIGTERM")
	}
}

// takeReadyFile returns the readiness descriptor the daemon passed, if any,
// and hides it from the environment.
func takeReadyFile() *os.File {
	v, ok := os.LookupEnv(ReadyFDEnv)
	if !ok {
		return nil
	}
	_ = os.Unsetenv(ReadyFDEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		fmt.Fprintf(os.Stderr, "berth-monitor: ignoring %s=%q\n", ReadyFDEnv, v)
		return nil
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "ready")
}

// reportReady writes the readiness line and closes the descriptor.
func reportReady(f *os.File, err error) {
	if f == nil {
		return
	}
	msg := "ok\n"
	if err != nil {
		msg = "error: " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n"
	}
	_, _ = f.WriteString(msg)
	_ = f.Close()
}

// levelName is the --log-level a helper gets for the monitor's level.
func levelName(l slog.Level) string {
	switch {
	case l <= slog.LevelDebug:
		return "debug"
	case l <= slog.LevelInfo:
		return "info"
	case l <= slog.LevelWarn:
		return "warn"
	}
	return "error"
}
