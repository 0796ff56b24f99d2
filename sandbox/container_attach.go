package sandbox

// Attaching to a container's main process: its stdio is held by the pod's
// monitor, which fans the output out to every attacher and takes their
// input (monitorapi OpAttach). Detaching never touches the container.

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/containerd/errdefs"
)

// AttachOptions are the streams of one attach.
type AttachOptions struct {
	// Stdin feeds the container's stdin (if it was created with one); its
	// EOF is passed on, which closes a StdinOnce container's stdin.
	Stdin io.Reader
	// Stdout and Stderr receive the output from now on; nil: not wanted.
	Stdout, Stderr io.Writer
	// Resize carries terminal size changes (TTY containers); may be nil.
	Resize <-chan TerminalSize
}

// AttachContainer joins the streams to container id's main process until
// its output ends (it exited), the client goes away, or ctx ends.
func (m *Manager) AttachContainer(ctx context.Context, id string, opts AttachOptions) error {
	e, err := m.lookupContainer(id)
	if err != nil {
		return err
	}
	m.mu.RLock()
	c, sb := e.rec, m.sandboxes[e.rec.SandboxID]
	state, cid := c.State, c.ID
	m.mu.RUnlock()
	if state != ContainerRunning && state != ContainerCreated {
		return fmt.Errorf("%w: container %s is %s: attach needs a created or running container", errdefs.ErrFailedPrecondition, cid, state)
	}
	if sb == nil {
		return fmt.Errorf("%w: container %s has no pod sandbox", errdefs.ErrFailedPrecondition, cid)
	}
	client := m.monitorClient(sb)
	if client == nil {
		return fmt.Errorf("%w: pod %s has no monitor to attach through", errdefs.ErrFailedPrecondition, sb.ID)
	}
	att, err := client.Attach(ctx, cid, monitorapi.AttachRequest{
		Stdin: opts.Stdin != nil, Stdout: opts.Stdout != nil, Stderr: opts.Stderr != nil,
	})
	if err != nil {
		return fmt.Errorf("attach to container %s: %w", cid, err)
	}
	log := m.log.With("container", cid, "pod", sb.ID)
	log.Debug("attached")
	defer att.Close()
	stop := context.AfterFunc(ctx, func() { _ = att.Close() })
	defer stop()
	if opts.Stdin != nil {
		// Not waited for: it blocks in the client's stream until the
		// caller closes it.
		go forwardStdin(att, opts.Stdin, log)
	}
	if opts.Resize != nil {
		go forwardResizes(ctx, att, opts.Resize)
	}
	err = att.CopyOutput(opts.Stdout, opts.Stderr)
	log.Debug("detached", "error", err)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("attach to container %s: %w", cid, err)
	}
	return nil
}

// forwardStdin passes the client's input on, then its end.
func forwardStdin(att *monitorapi.Attachment, in io.Reader, log *slog.Logger) {
	if _, err := io.Copy(att.Stdin(), in); err != nil {
		log.Debug("attach input ended", "error", err)
		return
	}
	_ = att.CloseStdin()
}

// forwardResizes passes terminal sizes on until the channel or ctx ends.
func forwardResizes(ctx context.Context, att *monitorapi.Attachment, resize <-chan TerminalSize) {
	for {
		select {
		case <-ctx.Done():
			return
		case sz, ok := <-resize:
			if !ok {
				return
			}
			if err := att.Resize(sz.Width, sz.Height); err != nil {
				return
			}
		}
	}
}
