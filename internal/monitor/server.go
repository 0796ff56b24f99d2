package monitor

// The unix socket server: one request per connection (monitorapi), except
// events and attach (attach.go), whose connections stay open.

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/containerd/errdefs"
)

const (
	// requestTimeout bounds reading a request and writing its answer, so a
	// client that stops mid-call cannot pin a goroutine.
	requestTimeout = 30 * time.Second
	// maxRequestSize bounds one request line (a create is well under 1 KiB,
	// an update a few KiB).
	maxRequestSize = 1 << 20
)

// monitor is the state of one pod's monitor process.
type monitor struct {
	dir, pod  string
	root      string // libcontainer's state root
	sockPath  string
	ln        *net.UnixListener
	idle      *idler
	helper    string   // the container-op binary
	helperEnv []string // its environment
	logLevel  string   // the helpers' --log-level
	reaper    *reaper

	// busy counts the requests in flight and the exits being handled:
	// the monitor is quiet (and may renew itself) only at zero.
	busy atomic.Int32
	// attachers counts the open attachments (attach.go): the monitor does
	// not renew while a client is attached.
	attachers atomic.Int32
	// Pausing the accept loop for a renewal: with pauseAccept set, the
	// loop reports on acceptParked (unbuffered) and waits for acceptResume
	// to be closed.
	pauseAccept  atomic.Bool
	acceptParked chan struct{}
	acceptResume chan struct{}
	// sigs and chld are the monitor's signal channels (monitor.go).
	sigs, chld chan os.Signal

	mu         sync.Mutex
	containers map[string]*container
	subs       map[*subscriber]struct{}
	// stopping is set once the monitor accepted to end: no more creates.
	stopping bool
	stopped  chan struct{} // closed when the monitor is to exit
}

// serve accepts connections until the monitor stops.
func (m *monitor) serve() {
	for {
		conn, err := m.ln.AcceptUnix()
		if err != nil {
			select {
			case <-m.stopped:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				if m.pauseAccept.Load() { // a renewal (renew.go)
					resume := m.acceptResume
					select {
					case m.acceptParked <- struct{}{}:
						<-resume
					case <-m.stopped:
					}
				}
				continue
			}
			// EMFILE and the like: do not spin.
			slog.Error("accept", "error", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		m.busy.Add(1)
		go m.handle(conn)
	}
}

// request is monitorapi.Request as the monitor decodes it: the resources
// of an update stay raw JSON, handed to the update helper as they came, so
// the monitor never decodes (nor keeps the decoder tables of) the OCI
// resource types. TestRequestMatchesAPI keeps the two in step.
type request struct {
	Op        monitorapi.Op             `json:"op"`
	ID        string                    `json:"id,omitempty"`
	Create    *monitorapi.CreateRequest `json:"create,omitempty"`
	Signal    int                       `json:"signal,omitempty"`
	All       bool                      `json:"all,omitempty"`
	Resources json.RawMessage           `json:"resources,omitempty"`
	Attach    *monitorapi.AttachRequest `json:"attach,omitempty"`
}

// handle reads one request and answers it. The accept loop counted it as
// busy.
func (m *monitor) handle(conn *net.UnixConn) {
	done := sync.OnceFunc(func() { m.busy.Add(-1) })
	defer done()
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	var req request
	dec := json.NewDecoder(io.LimitReader(conn, maxRequestSize))
	if err := dec.Decode(&req); err != nil {
		m.reply(conn, nil, fmt.Errorf("%w: bad request: %v", errdefs.ErrInvalidArgument, err))
		_ = conn.Close()
		return
	}
	if req.Op == monitorapi.OpEvents {
		m.subscribe(conn, done) // owns conn from here; not busy once started
		return
	}
	if req.Op == monitorapi.OpAttach {
		// Owns conn from here; not busy once attached. The decoder may
		// have read past the request.
		m.serveAttach(conn, &req, dec.Buffered(), done)
		return
	}
	defer m.idle.touch()
	resp, err := m.dispatch(&req)
	if err != nil {
		slog.Debug("request failed", "op", req.Op, "id", req.ID, "error", err)
	}
	m.reply(conn, resp, err)
	_ = conn.Close()
	if req.Op == monitorapi.OpShutdown && err == nil {
		m.stop("shutdown requested")
	}
}

// reply writes resp, or err as an error answer.
func (m *monitor) reply(conn net.Conn, resp *monitorapi.Response, err error) {
	if resp == nil {
		resp = &monitorapi.Response{}
	}
	if err != nil {
		resp = &monitorapi.Response{Error: err.Error(), Code: monitorapi.CodeOf(err)}
	}
	if err := json.NewEncoder(conn).Encode(resp); err != nil {
		slog.Debug("cannot answer", "error", err)
	}
}

// dispatch runs one call.
func (m *monitor) dispatch(req *request) (*monitorapi.Response, error) {
	stateResp := func(st monitorapi.State, err error) (*monitorapi.Response, error) {
		if err != nil {
			return nil, err
		}
		return &monitorapi.Response{State: &st}, nil
	}
	if req.Op != monitorapi.OpHello && req.Op != monitorapi.OpList && req.Op != monitorapi.OpShutdown && req.ID == "" {
		return nil, fmt.Errorf("%w: %s needs a container id", errdefs.ErrInvalidArgument, req.Op)
	}
	switch req.Op {
	case monitorapi.OpHello:
		return &monitorapi.Response{Hello: &monitorapi.Hello{Version: monitorapi.Version, Pid: os.Getpid()}}, nil
	case monitorapi.OpCreate:
		if req.Create == nil {
			return nil, fmt.Errorf("%w: create without a bundle", errdefs.ErrInvalidArgument)
		}
		return stateResp(m.create(req.ID, req.Create))
	case monitorapi.OpStart:
		return stateResp(m.start(req.ID))
	case monitorapi.OpKill:
		return nil, m.kill(req.ID, req.Signal, req.All)
	case monitorapi.OpState:
		return stateResp(m.state(req.ID))
	case monitorapi.OpList:
		return &monitorapi.Response{States: m.list()}, nil
	case monitorapi.OpDelete:
		return nil, m.delete(req.ID)
	case monitorapi.OpUpdate:
		return nil, m.update(req.ID, req.Resources)
	case monitorapi.OpReopenLog:
		return nil, m.reopenLog(req.ID)
	case monitorapi.OpShutdown:
		return nil, m.shutdown()
	}
	return nil, fmt.Errorf("%w: unknown op %q", errdefs.ErrInvalidArgument, req.Op)
}

// lookup returns a container that is created (not still being created).
func (m *monitor) lookup(id string) (*container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.containers[id]
	if c == nil || c.creating {
		return nil, fmt.Errorf("%w: container %s", errdefs.ErrNotFound, id)
	}
	return c, nil
}

// state answers a container's State.
func (m *monitor) state(id string) (monitorapi.State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.containers[id]
	if c == nil || c.creating {
		return monitorapi.State{}, fmt.Errorf("%w: container %s", errdefs.ErrNotFound, id)
	}
	return c.st, nil
}

// list answers the States of all containers, oldest first.
func (m *monitor) list() []monitorapi.State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.statesLocked()
}

func (m *monitor) statesLocked() []monitorapi.State {
	out := make([]monitorapi.State, 0, len(m.containers))
	for _, c := range m.containers {
		if !c.creating {
			out = append(out, c.st)
		}
	}
	slices.SortFunc(out, func(a, b monitorapi.State) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// shutdown accepts to end the monitor if it holds no container.
func (m *monitor) shutdown() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.containers) > 0 {
		ids := make([]string, 0, len(m.containers))
		for id := range m.containers {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return fmt.Errorf("%w: the monitor still holds containers %s: delete them first",
			errdefs.ErrFailedPrecondition, strings.Join(ids, ", "))
	}
	m.stopping = true
	return nil
}

// stop ends the monitor: the listener closes and its socket goes away.
// The caller made sure no container is held.
func (m *monitor) stop(why string) {
	m.mu.Lock()
	select {
	case <-m.stopped:
		m.mu.Unlock()
		return
	default:
	}
	m.stopping = true
	close(m.stopped)
	for s := range m.subs {
		s.dropLocked()
	}
	m.mu.Unlock()
	slog.Info("monitor stopping", "reason", why)
	_ = os.Remove(m.sockPath)
	_ = m.ln.Close()
}
