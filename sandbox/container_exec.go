package sandbox

// Running a process in a running container (ExecSync, Exec). The daemon
// starts it with libcontainer, in-process: it joins the container's
// namespaces and cgroup with the container's user, groups, capabilities,
// seccomp filter, AppArmor profile and environment, like `runc exec`.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/berth-runtime/berth/internal/containerops"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// execDrainTimeout bounds how long an exec's output is still copied after
// the process ended: a background process it started may hold the pipes
// open forever.
const execDrainTimeout = 2 * time.Second

// TerminalSize is a terminal's width and height in characters.
type TerminalSize struct {
	Width, Height uint16
}

// ExecOptions is a process to run in a container.
type ExecOptions struct {
	Cmd []string
	// Stdin feeds the process's stdin; nil gives it /dev/null. Its EOF
	// closes the process's stdin.
	Stdin io.Reader
	// Stdout and Stderr receive the output; nil discards it. With TTY all
	// output goes to Stdout.
	Stdout, Stderr io.Writer
	TTY            bool
	// Resize carries terminal size changes (TTY only); may be nil.
	Resize <-chan TerminalSize
}

// ExecContainer runs opts.Cmd in container id and returns its exit code
// once it ended and its output was copied. The process is killed when ctx
// ends (the error then wraps ctx's), when the container exits, and when
// writing its output fails (the client is gone).
func (m *Manager) ExecContainer(ctx context.Context, id string, opts ExecOptions) (int, error) {
	if len(opts.Cmd) == 0 {
		return -1, fmt.Errorf("%w: exec: the command is empty", errdefs.ErrInvalidArgument)
	}
	e, err := m.lookupContainer(id)
	if err != nil {
		return -1, err
	}
	m.mu.RLock()
	c, sb := e.rec, m.sandboxes[e.rec.SandboxID]
	state, cid, bundle, pid := c.State, c.ID, c.Dir, c.Pid
	m.mu.RUnlock()
	if state != ContainerRunning {
		return -1, fmt.Errorf("%w: container %s is %s, not running: exec needs a running container", errdefs.ErrFailedPrecondition, cid, state)
	}
	if sb == nil {
		return -1, fmt.Errorf("%w: container %s has no pod sandbox", errdefs.ErrFailedPrecondition, cid)
	}
	cfg := containerops.ExecConfig{
		Root: filepath.Join(sb.Dir, "runc"), ID: cid, Bundle: bundle,
		Args: opts.Cmd, TTY: opts.TTY, Width: 80, Height: 24,
	}
	x, err := startExec(cfg, opts)
	if err != nil && nsJoinFailed(err) {
		x, err = m.retryExecStart(ctx, e, pid, cfg, opts, err)
	}
	if err != nil {
		if containerEnded(e, pid) {
			// libcontainer failed to join namespaces that went away with
			// the container: the caller's precondition, not our fault.
			return -1, fmt.Errorf("%w: container %s exited while the exec was starting (%v): exec needs a running container", errdefs.ErrFailedPrecondition, cid, err)
		}
		return -1, err
	}
	log := m.log.With("container", cid, "pod", sb.ID, "pid", x.proc.Pid())
	log.Debug("exec started", "cmd", opts.Cmd[0])
	code, err := x.run(ctx, e.exited, log)
	log.Debug("exec ended", "exit_code", code, "error", err)
	return code, err
}

// runningExec is a started exec and the daemon's ends of its stdio.
type runningExec struct {
	proc *containerops.ExecProcess
	// stdin is written from opts.Stdin (a pipe, or the terminal's master).
	stdin *os.File
	// outputs are read into the writers (pipes, or the terminal's master).
	outputs []*os.File
	writers []io.Writer
	console *os.File
	resize  <-chan TerminalSize
	in      io.Reader
	// clientGone is closed when writing output failed.
	clientGone chan struct{}
	goneOnce   sync.Once
}

// startExec prepares the stdio and starts the process.
func startExec(cfg containerops.ExecConfig, opts ExecOptions) (_ *runningExec, err error) {
	x := &runningExec{in: opts.Stdin, resize: opts.Resize, clientGone: make(chan struct{})}
	var child []*os.File
	defer func() {
		for _, f := range child {
			_ = f.Close()
		}
		if err != nil {
			x.closeAll()
		}
	}()
	if !opts.TTY {
		if opts.Stdin != nil {
			r, w, err := os.Pipe()
			if err != nil {
				return nil, err
			}
			child, x.stdin, cfg.Stdin = append(child, r), w, r
		}
		for i, out := range []io.Writer{opts.Stdout, opts.Stderr} {
			if out == nil {
				continue
			}
			r, w, err := os.Pipe()
			if err != nil {
				return nil, err
			}
			child, x.outputs, x.writers = append(child, w), append(x.outputs, r), append(x.writers, out)
			if i == 0 {
				cfg.Stdout = w
			} else {
				cfg.Stderr = w
			}
		}
	}
	if x.proc, err = containerops.StartExec(cfg); err != nil {
		return nil, err
	}
	if opts.TTY {
		x.console = x.proc.Console
		if opts.Stdin != nil {
			x.stdin = x.console
		}
		if opts.Stdout != nil {
			x.outputs, x.writers = []*os.File{x.console}, []io.Writer{opts.Stdout}
		}
	}
	return x, nil
}

// run copies the stdio until the process ended and its output is copied.
func (x *runningExec) run(ctx context.Context, ctrExited <-chan struct{}, log *slog.Logger) (int, error) {
	var copiers sync.WaitGroup
	for i, f := range x.outputs {
		copiers.Go(func() { x.copyOutput(x.writers[i], f, log) })
	}
	if x.stdin != nil && x.in != nil {
		// Not waited for: it blocks in the client's stream until the
		// caller closes it, which ends it.
		go x.copyStdin(log)
	}
	done := make(chan struct{})
	defer close(done)
	if x.console != nil && x.resize != nil {
		go x.applyResizes(done, log)
	}
	type result struct {
		code int
		err  error
	}
	waited := make(chan result, 1)
	go func() {
		code, err := x.proc.Wait()
		waited <- result{code, err}
	}()
	var why error
	var r result
	select {
	case r = <-waited:
	case <-ctx.Done():
		why = context.Cause(ctx)
	case <-ctrExited:
		why = errors.New("the container exited")
	case <-x.clientGone:
		why = errors.New("the client went away")
	}
	if why != nil {
		if err := x.proc.Kill(); err != nil {
			log.Warn("cannot kill an exec", "error", err)
		}
		r = <-waited
	}
	x.drain(&copiers, log)
	x.closeAll()
	if r.err != nil {
		return -1, fmt.Errorf("exec: wait for the process: %w", r.err)
	}
	if why != nil && ctx.Err() != nil {
		return r.code, fmt.Errorf("exec killed: %w", why)
	}
	return r.code, nil
}

// copyOutput copies one output until it ends; a write error means the
// client is gone, which ends the exec.
func (x *runningExec) copyOutput(w io.Writer, f *os.File, log *slog.Logger) {
	_, err := io.Copy(clientWriter{w}, f)
	var werr *writeError
	if errors.As(err, &werr) {
		log.Debug("exec output could not be delivered", "error", werr.err)
		x.goneOnce.Do(func() { close(x.clientGone) })
	}
}

// copyStdin feeds the process's stdin and closes it at the input's end (a
// terminal's master stays open: it also carries the output).
func (x *runningExec) copyStdin(log *slog.Logger) {
	_, err := io.Copy(x.stdin, x.in)
	if err != nil && !errors.Is(err, os.ErrClosed) && !errors.Is(err, unix.EPIPE) {
		log.Debug("exec input ended", "error", err)
	}
	if x.console == nil {
		_ = x.stdin.Close()
	}
}

// applyResizes sets the terminal's size until the exec is done.
func (x *runningExec) applyResizes(done <-chan struct{}, log *slog.Logger) {
	for {
		select {
		case <-done:
			return
		case sz, ok := <-x.resize:
			if !ok {
				return
			}
			if err := setTerminalSize(x.console, sz); err != nil {
				log.Debug("cannot resize an exec's terminal", "error", err)
			}
		}
	}
}

// setTerminalSize applies sz to a terminal's master.
func setTerminalSize(f *os.File, sz TerminalSize) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: sz.Height, Col: sz.Width})
	})
	if err != nil {
		return err
	}
	return ioErr
}

// drain waits for the output copiers, at most execDrainTimeout; past it the
// outputs are closed, which ends copiers waiting for output. A copier
// blocked writing to a client that does not read is given as long again,
// then left behind: it ends when the streaming server closes the stream,
// which it does once the exec returned.
func (x *runningExec) drain(copiers *sync.WaitGroup, log *slog.Logger) {
	copied := make(chan struct{})
	go func() {
		copiers.Wait()
		close(copied)
	}()
	t := time.NewTimer(execDrainTimeout)
	defer t.Stop()
	select {
	case <-copied:
		return
	case <-t.C:
	}
	for _, f := range x.outputs {
		_ = f.Close()
	}
	t.Reset(execDrainTimeout)
	select {
	case <-copied:
	case <-t.C:
		log.Debug("exec output is still being written to a slow client; ending the exec without it")
	}
}

// closeAll releases the daemon's ends (closing one twice is harmless).
func (x *runningExec) closeAll() {
	for _, f := range append([]*os.File{x.stdin, x.console}, x.outputs...) {
		if f != nil {
			_ = f.Close()
		}
	}
}

// clientWriter marks the errors of writing to the client, to tell them
// from the end of the process's output.
type clientWriter struct{ w io.Writer }

func (c clientWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		return n, &writeError{err}
	}
	return n, nil
}

type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// execRetryWindow bounds how long an exec that could not join the
// container's namespaces waits for them to come back.
const execRetryWindow = time.Second

// nsJoinFailedRE matches libcontainer's report that the exec's init could
// not open one of the container init's namespaces.
var nsJoinFailedRE = regexp.MustCompile(`failed to open /proc/\d+/ns/\w+: No such file or directory`)

// nsJoinFailed says whether an exec failed to start because the
// container's init had no namespaces to join: it has exited, or it is for
// a moment between two thread group leaders — while a thread other than
// its main one calls execve, the kernel retires the main thread, and
// /proc/<pid>/ns/* do not resolve until the exec'ing thread holds the PID.
func nsJoinFailed(err error) bool { return nsJoinFailedRE.MatchString(err.Error()) }

// retryExecStart starts the exec again once the init's namespaces resolve,
// within execRetryWindow; it gives up, with the last error, when the
// container is gone or the window passes (the caller then tells an exited
// container from other failures).
func (m *Manager) retryExecStart(ctx context.Context, e *containerEntry, pid int, cfg containerops.ExecConfig, opts ExecOptions, err error) (*runningExec, error) {
	deadline := time.Now().Add(execRetryWindow)
	for nsJoinFailed(err) && time.Now().Before(deadline) {
		select {
		case <-e.exited:
			return nil, err
		case <-ctx.Done():
			return nil, err
		case <-time.After(10 * time.Millisecond):
		}
		if _, serr := os.Stat(fmt.Sprintf("/proc/%d/ns/ipc", pid)); serr != nil {
			continue
		}
		m.log.DebugContext(ctx, "exec could not join the container's namespaces; retrying", "container_id", e.rec.ID, "pid", pid, "error", err)
		var x *runningExec
		if x, err = startExec(cfg, opts); err == nil {
			return x, nil
		}
	}
	return nil, err
}

// containerEnded says whether the container whose init had pid has exited
// (or is exiting: a zombie), whether or not its monitor reported it yet.
func containerEnded(e *containerEntry, pid int) bool {
	select {
	case <-e.exited:
		return true
	default:
	}
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		// Gone only if /proc says so: any other failure (no descriptor
		// left, say) tells nothing about the container.
		return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH)
	}
	fields := statFields(string(b))
	return len(fields) > 0 && fields[0] == "Z"
}
