package monitor

// The container's side of attach (attach.go): the attachers of one
// containerIO, the copiers' output handed to them, the container's stdin
// they share, its terminal's size, and the end of it all.

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"golang.org/x/sys/unix"
)

// attachSet is the attach side of a containerIO. mu guards every field
// but count; it is a leaf lock.
type attachSet struct {
	mu    sync.Mutex
	list  []*attacher
	count atomic.Int32 // len(list), read by the copiers without mu
	// ended: the output ended; no attacher may join, stdin is discarded.
	ended bool
	// writing is the attacher whose stdin write is in flight, to be
	// interrupted (a past write deadline) if it goes.
	writing *attacher
	// stdinSem serializes writes to the container's stdin, so that each
	// frame goes in whole. A channel rather than a mutex: a writer that
	// waits for it must notice its client hanging up. Made at the first
	// attach with stdin.
	stdinSem chan struct{}
}

// writeStdin writes one stdin frame to the container. It returns false if
// the client hung up while the write was blocked.
func (a *attacher) writeStdin(p []byte) bool {
	if !a.req.Stdin || len(p) == 0 {
		return true
	}
	s := &a.cio.att
	if !a.acquireStdin() {
		return false
	}
	defer func() { <-a.stdinSem }()
	for len(p) > 0 {
		s.mu.Lock()
		f := a.cio.stdin
		if f == nil || a.gone || a.stdinDone || s.ended {
			s.mu.Unlock()
			return true
		}
		s.writing = a
		_ = f.SetWriteDeadline(time.Now().Add(stdinPoll))
		s.mu.Unlock()
		n, err := f.Write(p)
		p = p[n:]
		s.mu.Lock()
		s.writing = nil
		s.mu.Unlock()
		if err == nil {
			return true
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			// The container closed its stdin or is gone: the frame is lost.
			slog.Debug("attach: cannot write the container's stdin", "id", a.id, "error", err)
			return true
		}
		if hungUp(a.conn) {
			return false
		}
	}
	return true
}

// acquireStdin waits for the container's stdin; false if the client hung
// up meanwhile (another attacher's write blocks).
func (a *attacher) acquireStdin() bool {
	select {
	case a.stdinSem <- struct{}{}:
		return true
	default:
	}
	t := time.NewTicker(stdinPoll)
	defer t.Stop()
	for {
		select {
		case a.stdinSem <- struct{}{}:
			return true
		case <-t.C:
			if hungUp(a.conn) {
				return false
			}
		}
	}
}

// interruptLocked ends a stdin write of a in flight. The caller holds
// cio.att.mu.
func (a *attacher) interruptLocked() {
	if a.cio.att.writing == a && a.cio.stdin != nil {
		_ = a.cio.stdin.SetWriteDeadline(time.Unix(1, 0))
	}
}

// hungUp says whether the client closed the connection (its end).
func hungUp(conn *net.UnixConn) bool {
	rc, err := conn.SyscallConn()
	if err != nil {
		return true
	}
	hup := false
	err = rc.Control(func(fd uintptr) {
		pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(pfd[:], 0); err == nil && n > 0 {
			hup = pfd[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return err != nil || hup
}

// closeStdin ends a's stdin (FrameStdinClosed, or a going without it).
// With StdinOnce it closes the container's stdin pipe, so its process
// reads EOF; never a terminal's, which is also the container's output.
func (a *attacher) closeStdin() {
	s := &a.cio.att
	s.mu.Lock()
	var f *os.File
	if a.req.Stdin && !a.stdinDone && a.cio.stdinOnce && !a.cio.tty && !s.ended {
		f, a.cio.stdin = a.cio.stdin, nil
	}
	a.stdinDone = true
	s.mu.Unlock()
	if f != nil {
		_ = f.Close() // also ends another attacher's write in flight
		slog.Debug("container stdin closed (stdin once)", "id", a.id)
	}
}

// tapOutput queues what a copier read from stream kind for the attachers
// that want it. It never blocks: an attacher whose backlog would pass
// MaxAttachBacklog is dropped.
func (cio *containerIO) tapOutput(kind monitorapi.FrameKind, p []byte) {
	s := &cio.att
	if s.count.Load() == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.list {
		if a.gone || a.ended || !(kind == monitorapi.FrameStdout && a.req.Stdout || kind == monitorapi.FrameStderr && a.req.Stderr) {
			continue
		}
		if len(a.queue)+a.inflight+monitorapi.FramedSize(len(p)) > monitorapi.MaxAttachBacklog {
			slog.Warn("attacher too slow; dropping it", "id", a.id, "backlog", len(a.queue)+a.inflight)
			a.gone, a.queue = true, nil
			a.interruptLocked()
			_ = a.conn.Close() // its writer may be blocked writing
			a.poke()
			continue
		}
		a.queue = monitorapi.AppendFrames(a.queue, kind, p)
		a.poke()
	}
}

// endAttach ends the attachments once the container's output ended: each
// gets the rest of its queue, then a clean EOF.
func (cio *containerIO) endAttach() {
	s := &cio.att
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	until := time.Now().Add(attachEndTimeout)
	for _, a := range s.list {
		a.interruptLocked()
		a.ended = true
		_ = a.conn.SetDeadline(until)
		a.poke()
	}
}

// dropAttachers closes every attachment at once (the container is being
// deleted).
func (cio *containerIO) dropAttachers() {
	s := &cio.att
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	for _, a := range s.list {
		a.interruptLocked()
		a.gone, a.queue = true, nil
		_ = a.conn.Close()
		a.poke()
	}
}

// resize sets a terminal's size; other containers have none.
func (cio *containerIO) resize(width, height uint16) {
	if !cio.tty || cio.out == nil {
		return
	}
	rc, err := cio.out.SyscallConn()
	if err != nil {
		return
	}
	ws := unix.Winsize{Row: height, Col: width}
	_ = rc.Control(func(fd uintptr) { err = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &ws) })
	if err != nil {
		slog.Debug("cannot resize the terminal", "error", err)
	}
}

// takeStdin returns the container's stdin for closing and forgets it.
func (cio *containerIO) takeStdin() *os.File {
	cio.att.mu.Lock()
	defer cio.att.mu.Unlock()
	f := cio.stdin
	cio.stdin = nil
	return f
}
