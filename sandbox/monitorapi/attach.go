package monitorapi

// The client side of an attach: the answer, then frames (frame.go).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Attach connects to container id's stdio. ctx bounds only the connect and
// the answer; the attachment lives until Close or the output ends.
func (c *Client) Attach(ctx context.Context, id string, r AttachRequest) (*Attachment, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = conn.Close()
		}
	}()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	req := Request{Op: OpAttach, ID: id, Attach: &r}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		stop()
		return nil, c.ioError(ctx, OpAttach, err)
	}
	// The answer is read as one line so that the frames which may follow
	// it at once stay in br, unread.
	br := bufio.NewReaderSize(conn, 64<<10)
	line, err := br.ReadBytes('\n')
	stopped := stop()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Only ctx sets deadlines: it ends now if it has not yet.
			<-ctx.Done()
		}
		return nil, c.ioError(ctx, OpAttach, err)
	}
	if !stopped {
		// ctx ended and may be setting a past deadline even now: the
		// connection is not usable.
		return nil, c.ioError(ctx, OpAttach, context.Cause(ctx))
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, c.ioError(ctx, OpAttach, err)
	}
	if resp.Error != "" {
		return nil, resp.err()
	}
	if resp.State == nil {
		return nil, fmt.Errorf("pod monitor attach %s: answer without a state", id)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, c.ioError(ctx, OpAttach, err)
	}
	ok = true
	return &Attachment{conn: conn, frames: NewFrameReader(br), state: *resp.State}, nil
}

// Attachment is an open attach connection to a container's stdio.
type Attachment struct {
	conn   net.Conn
	frames *FrameReader
	state  State

	// wmu serializes the frames written (stdin, stdin closed, resize).
	wmu  sync.Mutex
	wbuf []byte

	closeOnce sync.Once
}

// State is the container's state when it was attached.
func (a *Attachment) State() State { return a.state }

// CopyOutput copies the container's output into stdout and stderr (either
// may be nil: discard) until the output ends (returns nil) or the
// attachment is closed or broken (returns the error). Call it once. If
// writing to stdout or stderr fails it returns that error; the caller
// then closes the attachment (the monitor drops an attacher that stops
// reading).
func (a *Attachment) CopyOutput(stdout, stderr io.Writer) error {
	for {
		kind, p, err := a.frames.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("attach output: %w", err)
		}
		w := stdout
		switch kind {
		case FrameStdout:
		case FrameStderr:
			w = stderr
		default:
			return fmt.Errorf("attach output: unexpected frame kind %d", kind)
		}
		if w == nil || len(p) == 0 {
			continue
		}
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
}

// Stdin returns a writer that sends stdin frames (splitting writes into
// frames of at most MaxFramePayload bytes); safe to use concurrently with
// CopyOutput and Resize.
func (a *Attachment) Stdin() io.Writer { return stdinWriter{a} }

type stdinWriter struct{ a *Attachment }

func (w stdinWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), MaxFramePayload)
		if err := w.a.send(FrameStdin, p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// CloseStdin sends the stdin-closed frame.
func (a *Attachment) CloseStdin() error { return a.send(FrameStdinClosed, nil) }

// Resize sends a resize frame.
func (a *Attachment) Resize(width, height uint16) error {
	p := ResizePayload(width, height)
	return a.send(FrameResize, p[:])
}

// send writes one frame (p fits one) in a single write.
func (a *Attachment) send(kind FrameKind, p []byte) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	a.wbuf = AppendFrames(a.wbuf[:0], kind, p)
	if _, err := a.conn.Write(a.wbuf); err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	return nil
}

// Close detaches (closes the connection); safe to call more than once and
// concurrently with the others, and makes a blocked CopyOutput return.
func (a *Attachment) Close() error {
	var err error
	a.closeOnce.Do(func() { err = a.conn.Close() })
	return err
}
