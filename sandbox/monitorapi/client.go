package monitorapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/containerd/errdefs"
)

// Client calls one monitor. It holds no connection between calls, so it is
// safe for concurrent use and survives a monitor that is not up yet.
type Client struct {
	socket string
}

// NewClient returns a client for the monitor listening on socket.
func NewClient(socket string) *Client { return &Client{socket: socket} }

// Socket is the path the client dials.
func (c *Client) Socket() string { return c.socket }

// dial connects, honouring ctx's deadline for the whole call, however long
// the socket path is.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	var conn net.Conn
	err := viaDirFD(c.socket, func(addr string) error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, "unix", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: pod monitor at %s: %v", errdefs.ErrUnavailable, c.socket, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	return conn, nil
}

// Call sends req and returns the monitor's answer; an error answer comes
// back as an error wrapping the matching errdefs class.
func (c *Client) Call(ctx context.Context, req Request) (Response, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return Response{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return Response{}, c.ioError(ctx, req.Op, err)
	}
	var resp Response
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&resp); err != nil {
		return Response{}, c.ioError(ctx, req.Op, err)
	}
	if resp.Error != "" {
		return resp, resp.err()
	}
	return resp, nil
}

func (c *Client) ioError(ctx context.Context, op Op, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("pod monitor %s: %w", op, context.Cause(ctx))
	}
	return fmt.Errorf("%w: pod monitor %s at %s: %v", errdefs.ErrUnavailable, op, c.socket, err)
}

// err turns an error answer into an errdefs-classified error.
func (r Response) err() error {
	var class error = errdefs.ErrUnknown
	switch r.Code {
	case CodeNotFound:
		class = errdefs.ErrNotFound
	case CodeAlreadyExists:
		class = errdefs.ErrAlreadyExists
	case CodeInvalidArgument:
		class = errdefs.ErrInvalidArgument
	case CodeFailedPrecondition:
		class = errdefs.ErrFailedPrecondition
	case CodeInternal:
		class = errdefs.ErrInternal
	}
	return fmt.Errorf("%w: %s", class, r.Error)
}

// CodeOf classifies err for an error answer (the monitor's side of err()).
func CodeOf(err error) Code {
	switch {
	case errdefs.IsNotFound(err):
		return CodeNotFound
	case errdefs.IsAlreadyExists(err):
		return CodeAlreadyExists
	case errdefs.IsInvalidArgument(err):
		return CodeInvalidArgument
	case errdefs.IsFailedPrecondition(err):
		return CodeFailedPrecondition
	}
	return CodeInternal
}

// Hello checks that the monitor is up and speaks this protocol.
func (c *Client) Hello(ctx context.Context) (Hello, error) {
	resp, err := c.Call(ctx, Request{Op: OpHello})
	if err != nil {
		return Hello{}, err
	}
	if resp.Hello == nil {
		return Hello{}, errors.New("pod monitor: hello without an answer")
	}
	if resp.Hello.Version != Version {
		return *resp.Hello, fmt.Errorf("%w: pod monitor speaks protocol %d, this berth %d: remove the pod and create it again",
			errdefs.ErrFailedPrecondition, resp.Hello.Version, Version)
	}
	return *resp.Hello, nil
}

func (c *Client) state(ctx context.Context, req Request) (State, error) {
	resp, err := c.Call(ctx, req)
	if err != nil {
		return State{}, err
	}
	if resp.State == nil {
		return State{}, fmt.Errorf("pod monitor %s %s: answer without a state", req.Op, req.ID)
	}
	return *resp.State, nil
}

// Create creates container id from the bundle described by r.
func (c *Client) Create(ctx context.Context, id string, r CreateRequest) (State, error) {
	return c.state(ctx, Request{Op: OpCreate, ID: id, Create: &r})
}

// Start starts a created container.
func (c *Client) Start(ctx context.Context, id string) (State, error) {
	return c.state(ctx, Request{Op: OpStart, ID: id})
}

// Kill signals a container's init (all: every process in it).
func (c *Client) Kill(ctx context.Context, id string, signal int, all bool) error {
	_, err := c.Call(ctx, Request{Op: OpKill, ID: id, Signal: signal, All: all})
	return err
}

// State returns one container's state.
func (c *Client) State(ctx context.Context, id string) (State, error) {
	return c.state(ctx, Request{Op: OpState, ID: id})
}

// List returns the states of all containers of the monitor.
func (c *Client) List(ctx context.Context) ([]State, error) {
	resp, err := c.Call(ctx, Request{Op: OpList})
	return resp.States, err
}

// Delete forgets a stopped container.
func (c *Client) Delete(ctx context.Context, id string) error {
	_, err := c.Call(ctx, Request{Op: OpDelete, ID: id})
	return err
}

// Update applies resources to a live container.
func (c *Client) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	_, err := c.Call(ctx, Request{Op: OpUpdate, ID: id, Resources: res})
	return err
}

// ReopenLog makes the monitor continue the container's log in a new file.
func (c *Client) ReopenLog(ctx context.Context, id string) error {
	_, err := c.Call(ctx, Request{Op: OpReopenLog, ID: id})
	return err
}

// Shutdown ends the monitor once it holds no containers.
func (c *Client) Shutdown(ctx context.Context) error {
	_, err := c.Call(ctx, Request{Op: OpShutdown})
	return err
}

// Events streams the monitor's events to fn until ctx ends or the
// connection breaks (the monitor exited); it returns why it stopped.
// The monitor sends the current state of every container first, as
// "started"/"exited" events, so a subscriber that reconnects misses nothing.
func (c *Client) Events(ctx context.Context, fn func(Event)) error {
	conn, err := c.dial(context.WithoutCancel(ctx))
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if err := json.NewEncoder(conn).Encode(Request{Op: OpEvents}); err != nil {
		return c.ioError(ctx, OpEvents, err)
	}
	dec := json.NewDecoder(bufio.NewReader(conn))
	for {
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			return c.ioError(ctx, OpEvents, err)
		}
		fn(ev)
	}
}
