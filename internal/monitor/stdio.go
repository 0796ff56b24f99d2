package monitor

// A container's stdio as the monitor holds it: pipes (or a pseudo-terminal)
// whose far ends the container gets, and the copiers that turn the output
// into the CRI log.

import (
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// containerIO is the host side of a container's stdio.
type containerIO struct {
	// stdin is kept open for a later attach: the write end of the stdin
	// pipe, or the pty master for a terminal. Nil when stdin is /dev/null.
	stdin *os.File
	// out and errOut are what the log copiers read: the read ends of the
	// stdout/stderr pipes, or the pty master (out) for a terminal.
	out, errOut *os.File
	// child holds the ends handed to the container; the monitor closes its
	// copies once the container started, so EOF arrives when the
	// container's processes are gone.
	child []*os.File
	// console receives the pty master from the container's init.
	console *os.File
	tty     bool
	// running counts the log copiers still reading; copied is closed when
	// the last one ended.
	running atomic.Int32
	copied  chan struct{}
}

// setupIO prepares p's stdio. With no log path and no terminal the output
// goes to /dev/null directly: nothing to copy, no pipe to hold.
func setupIO(p *libcontainer.Process, stdin, tty, logged bool, uid, gid int) (_ *containerIO, err error) {
	cio := &containerIO{tty: tty, copied: make(chan struct{})}
	defer func() {
		if err != nil {
			cio.closeAll()
		}
	}()
	if tty {
		// libcontainer's console socket: the init creates the pty inside
		// the container and sends its master back over this socketpair.
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		cio.console = os.NewFile(uintptr(fds[0]), "console-parent")
		child := os.NewFile(uintptr(fds[1]), "console-child")
		cio.child = append(cio.child, child)
		p.ConsoleSocket = child
		return cio, nil
	}
	// Pipes, owned by the container's root like runc's setupProcessPipes,
	// so that reopening /dev/stdout works in a user-namespaced container.
	pipe := func() (r, w *os.File, err error) {
		if r, w, err = os.Pipe(); err != nil {
			return nil, nil, err
		}
		if uid != 0 || gid != 0 {
			for _, f := range []*os.File{r, w} {
				if err = unix.Fchown(int(f.Fd()), uid, gid); err != nil {
					_, _ = r.Close(), w.Close()
					return nil, nil, err
				}
			}
		}
		return r, w, nil
	}
	if stdin {
		r, w, err := pipe()
		if err != nil {
			return nil, fmt.Errorf("stdin pipe: %w", err)
		}
		cio.stdin, p.Stdin = w, r
		cio.child = append(cio.child, r)
	}
	if logged {
		r, w, err := pipe()
		if err != nil {
			return nil, fmt.Errorf("stdout pipe: %w", err)
		}
		cio.out, p.Stdout = r, w
		cio.child = append(cio.child, w)
		if r, w, err = pipe(); err != nil {
			return nil, fmt.Errorf("stderr pipe: %w", err)
		}
		cio.errOut, p.Stderr = r, w
		cio.child = append(cio.child, w)
	}
	return cio, nil
}

// started finishes the setup once the container's init runs: it drops the
// container's ends and, for a terminal, takes the pty master.
func (cio *containerIO) started(stdin bool) error {
	for _, f := range cio.child {
		_ = f.Close()
	}
	cio.child = nil
	if !cio.tty {
		return nil
	}
	master, err := recvConsole(cio.console)
	_ = cio.console.Close()
	cio.console = nil
	if err != nil {
		return fmt.Errorf("receive the container's terminal: %w", err)
	}
	cio.out = master
	if stdin {
		cio.stdin = master
	}
	return nil
}

// recvConsole takes the pty master that libcontainer's init sent (with
// utils.SendFile) before it reported ready, so it is already queued: a
// non-blocking receive fails instead of hanging if it is not. The master
// is made non-blocking so that reading it parks a goroutine in the
// runtime's poller instead of holding an OS thread.
func recvConsole(sock *os.File) (*os.File, error) {
	var name [4096]byte
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), name[:], oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("recvmsg", err)
	}
	scms, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, scm := range scms {
		rights, err := unix.ParseUnixRights(&scm)
		if err == nil {
			fds = append(fds, rights...)
		}
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
		return nil, fmt.Errorf("expected one descriptor, got %d", len(fds))
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		_ = unix.Close(fds[0])
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}

// startCopiers starts one goroutine per output stream writing it to log.
// Nothing else waits on them (an idle container costs no extra goroutine):
// the last copier to end closes copied.
func (cio *containerIO) startCopiers(log *criLog, id string) {
	var streams []*os.File
	for _, f := range []*os.File{cio.out, cio.errOut} {
		if f != nil {
			streams = append(streams, f)
		}
	}
	if len(streams) == 0 {
		close(cio.copied)
		return
	}
	cio.running.Store(int32(len(streams)))
	for i, f := range streams {
		stream := "stdout"
		if i == 1 {
			stream = "stderr"
		}
		go func() {
			if err := newLineWriter(log, stream).copyFrom(f); err != nil {
				slog.Debug("container output ended", "id", id, "stream", stream, "error", err)
			}
			if cio.running.Add(-1) == 0 {
				close(cio.copied)
			}
		}()
	}
}

// drain waits until the copiers reached EOF, at most timeout: a process
// outside the container that inherited an output pipe would otherwise hold
// the log open forever. Past the timeout it closes the read ends, which
// ends the copiers at once (they write what they hold first).
func (cio *containerIO) drain(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-cio.copied:
		return true
	case <-t.C:
	}
	cio.closeOutputs()
	<-cio.copied
	return false
}

// closeOutputs closes what the copiers read (for a terminal that is also
// stdin: nothing can be attached to a container that is gone).
func (cio *containerIO) closeOutputs() {
	for _, f := range []*os.File{cio.out, cio.errOut} {
		if f != nil {
			_ = f.Close()
		}
	}
}

// closeAll releases every descriptor; the copiers, if any, end. Closing a
// file twice (the pty master is both out and stdin) only returns an error.
func (cio *containerIO) closeAll() {
	cio.closeOutputs()
	for _, f := range append(cio.child, cio.console, cio.stdin) {
		if f != nil {
			_ = f.Close()
		}
	}
	cio.child, cio.console = nil, nil
}
