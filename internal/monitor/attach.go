package monitor

// Attach: clients connected to a container's stdio (monitorapi's Attach).
// The log copiers hand every read to the attachers' queues and never wait
// for one: an attacher that falls MaxAttachBacklog behind is dropped. Each
// attacher has two goroutines: the one that served its request reads its
// frames (stdin, resize) and a writer sends its queue. A container nobody
// attaches costs a few words in its containerIO and no goroutine.

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/containerd/errdefs"
)

const (
	// attachEndTimeout bounds, once a container's output ended, how long
	// an attacher may take to receive the rest and to hang up.
	attachEndTimeout = 10 * time.Second
	// stdinPoll is how often a stdin write that blocks (the container does
	// not read) checks that its attacher is still connected: nothing else
	// reads that connection meanwhile.
	stdinPoll = 500 * time.Millisecond
	// spareKeep is the largest queue buffer a writer keeps for reuse; a
	// burst's bigger one goes back to the collector.
	spareKeep = 64 << 10
)

// attacher is one attach connection.
type attacher struct {
	cio  *containerIO
	id   string
	conn *net.UnixConn
	req  monitorapi.AttachRequest
	wake chan struct{} // poked when there is work for the writer
	done chan struct{} // closed when the writer ended
	// stdinSem is the container's attachSet.stdinSem if req.Stdin.
	stdinSem chan struct{}

	// Guarded by cio.att.mu.
	queue     []byte // framed output the writer has not taken
	inflight  int    // bytes the writer is sending
	gone      bool   // detached or dropped: the writer stops at once
	ended     bool   // the output ended: the writer sends the rest, then ends
	stdinDone bool   // this attacher sends no more stdin
}

// attach validates an attach request and registers the attacher.
func (m *monitor) attach(conn *net.UnixConn, req *request) (*attacher, monitorapi.State, error) {
	if req.ID == "" {
		return nil, monitorapi.State{}, fmt.Errorf("%w: attach needs a container id", errdefs.ErrInvalidArgument)
	}
	c, err := m.lookup(req.ID)
	if err != nil {
		return nil, monitorapi.State{}, err
	}
	notRunning := fmt.Errorf("%w: container %s is not running", errdefs.ErrFailedPrecondition, req.ID)
	m.mu.Lock()
	st := c.st
	m.mu.Unlock()
	if st.Status == monitorapi.StatusStopped {
		return nil, st, notRunning
	}
	a := &attacher{cio: c.io, id: c.id, conn: conn, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if req.Attach != nil {
		a.req = *req.Attach
	}
	s := &c.io.att
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended { // the exit is being handled
		return nil, st, notRunning
	}
	a.req.Stdin = a.req.Stdin && c.io.stdin != nil
	if a.req.Stdin {
		if s.stdinSem == nil {
			s.stdinSem = make(chan struct{}, 1)
		}
		a.stdinSem = s.stdinSem
	}
	s.list = append(s.list, a)
	s.count.Store(int32(len(s.list)))
	// Before the request stops counting as busy: no renewal in between.
	m.attachers.Add(1)
	return a, st, nil
}

// serveAttach answers an attach request and serves the attachment until
// it ends. rest is what the request's decoder read past the request.
func (m *monitor) serveAttach(conn *net.UnixConn, req *request, rest io.Reader, started func()) {
	a, st, err := m.attach(conn, req)
	if err != nil {
		slog.Debug("request failed", "op", req.Op, "id", req.ID, "error", err)
		m.reply(conn, nil, err)
		_ = conn.Close()
		m.idle.touch()
		return
	}
	m.reply(conn, &monitorapi.Response{State: &st}, nil)
	s := &a.cio.att
	s.mu.Lock()
	if !a.ended { // else the end's deadline stays
		_ = conn.SetDeadline(time.Time{})
	}
	s.mu.Unlock()
	started()
	slog.Debug("attached", "id", a.id, "stdin", a.req.Stdin, "stdout", a.req.Stdout, "stderr", a.req.Stderr)
	go a.pump()
	a.readFrames(&afterLine{r: io.MultiReader(rest, conn)})
	m.detach(a)
}

// afterLine reads r from past the newline that ends the request line:
// the request's decoder stops at the end of the JSON value, so the
// newline is still in its buffer or in the connection.
type afterLine struct {
	r    io.Reader
	past bool
}

func (l *afterLine) Read(p []byte) (int, error) {
	if l.past {
		return l.r.Read(p)
	}
	for {
		n, err := l.r.Read(p)
		if n > 0 {
			l.past = true
			if p[0] == '\n' {
				n = copy(p, p[1:n])
			}
			return n, err
		}
		if err != nil {
			return 0, err
		}
	}
}

// readFrames handles the client's frames until the connection ends.
func (a *attacher) readFrames(r io.Reader) {
	fr := monitorapi.NewFrameReader(r)
	for {
		kind, p, err := fr.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				slog.Debug("attach connection ended", "id", a.id, "error", err)
			}
			return
		}
		switch kind {
		case monitorapi.FrameStdin:
			if !a.writeStdin(p) {
				return // the client hung up while the write blocked
			}
		case monitorapi.FrameStdinClosed:
			a.closeStdin()
		case monitorapi.FrameResize:
			w, h, err := monitorapi.ParseResize(p)
			if err != nil {
				slog.Debug("attach protocol error", "id", a.id, "error", err)
				return
			}
			a.cio.resize(w, h)
		default:
			slog.Debug("attach protocol error", "id", a.id, "kind", kind)
			return
		}
	}
}

// pump sends the attacher's queue until it is gone or its output ended.
func (a *attacher) pump() {
	defer close(a.done)
	s := &a.cio.att
	var spare []byte
	for range a.wake {
		s.mu.Lock()
		out, gone, ended := a.queue, a.gone, a.ended
		a.queue, a.inflight = spare[:0], len(out)
		s.mu.Unlock()
		if gone {
			_ = a.conn.Close()
			return
		}
		if len(out) > 0 {
			if _, err := a.conn.Write(out); err != nil {
				slog.Debug("attach connection broken", "id", a.id, "error", err)
				_ = a.conn.Close() // the reader then detaches
				return
			}
		}
		s.mu.Lock()
		a.inflight = 0
		s.mu.Unlock()
		spare = nil
		if cap(out) <= spareKeep {
			spare = out
		}
		if ended {
			// No output is queued after the end: out was the rest. The
			// client reads a clean EOF; the reader waits for it to hang up.
			_ = a.conn.CloseWrite()
			return
		}
	}
}

// poke wakes the writer.
func (a *attacher) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// detach ends an attachment once its reader returned.
func (m *monitor) detach(a *attacher) {
	a.closeStdin()
	s := &a.cio.att
	s.mu.Lock()
	if i := slices.Index(s.list, a); i >= 0 {
		s.list = slices.Delete(s.list, i, i+1)
		s.count.Store(int32(len(s.list)))
	}
	a.gone, a.queue = true, nil
	a.poke()
	s.mu.Unlock()
	_ = a.conn.Close()
	<-a.done
	m.attachers.Add(-1)
	slog.Debug("detached", "id", a.id)
	m.idle.touch()
}
