package monitor

// A container's stdio as the monitor holds it: pipes (or a pseudo-terminal)
// whose far ends the container gets, and the copiers that turn the output
// into the CRI log.

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
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
	// console receives the pty master from the container's init.
	console *os.File
	tty     bool
	// stdinOnce: the first attacher that sent stdin closes it (attach.go).
	stdinOnce bool
	// att holds the attachers (attach.go), which guard stdin with it
	// once the container is created.
	att attachSet
	// running counts the log copiers still reading; copied is closed when
	// the last one ended.
	running atomic.Int32
	copied  chan struct{}
	// copiers are the running copiers' states, for a renewal to pause them
	// (renew.go).
	copiers []*copier
	// pauseMu guards pausing, gen and resume.
	pauseMu sync.Mutex
	pausing bool
	gen     uint64
	resume  chan struct{}
}

// copier is one output stream's copier.
type copier struct {
	f *os.File
	w *lineWriter
	// parked receives the pause generation once the copier stopped, at a
	// point where every byte it read is formatted (or once it ended).
	parked chan uint64
	ended  bool // guarded by containerIO.pauseMu
}

// setupIO prepares a container's stdio. It returns the container's ends,
// to be handed to the create helper as its descriptors 3, 4, 5 (stdin,
// stdout, stderr) or, for a terminal, 3 (libcontainer's console socket).
// Output is always piped, log path or not: an attacher may want it. The
// caller closes the container's ends once the helper has them.
func setupIO(stdin, tty bool) (_ *containerIO, child []*os.File, err error) {
	cio := &containerIO{tty: tty, copied: make(chan struct{})}
	defer func() {
		if err != nil {
			cio.closeAll()
			for _, f := range child {
				if f != nil {
					_ = f.Close()
				}
			}
		}
	}()
	if tty {
		// libcontainer's console socket: the init creates the pty inside
		// the container and sends its master back over this socketpair.
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("console socket: %w", err)
		}
		cio.console = os.NewFile(uintptr(fds[0]), "console-parent")
		return cio, []*os.File{os.NewFile(uintptr(fds[1]), "console-child")}, nil
	}
	// The helper hands the pipes to the container's root user, as runc's
	// setupProcessPipes does.
	child = make([]*os.File, 3)
	if stdin {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, child, fmt.Errorf("stdin pipe: %w", err)
		}
		cio.stdin, child[0] = w, r
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, child, fmt.Errorf("stdout pipe: %w", err)
	}
	cio.out, child[1] = r, w
	if r, w, err = os.Pipe(); err != nil {
		return nil, child, fmt.Errorf("stderr pipe: %w", err)
	}
	cio.errOut, child[2] = r, w
	if !stdin {
		if child[0], err = os.OpenFile(os.DevNull, os.O_RDONLY, 0); err != nil {
			return nil, child, err
		}
	}
	return cio, child, nil
}

// takeConsole finishes the setup of a terminal once the container's init
// runs: it takes the pty master.
func (cio *containerIO) takeConsole(stdin bool) error {
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
// utils.SendFile) before it reported ready, so it is already queued when
// the create helper reported the container: a non-blocking receive fails
// instead of hanging if it is not. The master
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
// the last copier to end closes copied. pending holds the unterminated
// lines the streams had when a renewed monitor took them over.
func (cio *containerIO) startCopiers(log *criLog, id string, pending ...[]byte) {
	for i, f := range []*os.File{cio.out, cio.errOut} {
		if f == nil {
			continue
		}
		stream := "stdout"
		if i == 1 {
			stream = "stderr"
		}
		w := newLineWriter(log, stream)
		w.tap, w.kind = cio, monitorapi.FrameStdout
		if i == 1 {
			w.kind = monitorapi.FrameStderr
		}
		if i < len(pending) {
			w.preload(pending[i])
		}
		cio.copiers = append(cio.copiers, &copier{f: f, w: w, parked: make(chan uint64, 1)})
	}
	if len(cio.copiers) == 0 {
		close(cio.copied)
		return
	}
	cio.running.Store(int32(len(cio.copiers)))
	for _, c := range cio.copiers {
		go cio.copy(c, id)
	}
}

// copy runs one copier until its stream ends.
func (cio *containerIO) copy(c *copier, id string) {
	for {
		err := c.w.copyFrom(c.f)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			cio.pauseMu.Lock()
			if cio.pausing {
				gen, resume := cio.gen, cio.resume
				cio.pauseMu.Unlock()
				c.parked <- gen
				<-resume
			} else {
				cio.pauseMu.Unlock()
			}
			continue
		}
		if err != nil {
			slog.Debug("container output ended", "id", id, "stream", c.w.stream, "error", err)
		}
		break
	}
	cio.pauseMu.Lock()
	c.ended = true
	gen, pausing := cio.gen, cio.pausing
	cio.pauseMu.Unlock()
	if pausing {
		c.parked <- gen
	}
	if cio.running.Add(-1) == 0 {
		close(cio.copied)
	}
}

// pause stops the running copiers where a renewal may take their streams
// over: each has formatted everything it read and holds at most an
// unterminated line. It fails (and resumes them) if one has not stopped by
// until, e.g. while its log write blocks.
func (cio *containerIO) pause(until time.Time) bool {
	cio.pauseMu.Lock()
	cio.pausing = true
	cio.gen++
	gen := cio.gen
	cio.resume = make(chan struct{})
	var live []*copier
	for _, c := range cio.copiers {
		if !c.ended {
			live = append(live, c)
		}
	}
	cio.pauseMu.Unlock()
	past := time.Unix(1, 0)
	for _, c := range live {
		_ = c.f.SetReadDeadline(past)
	}
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	for _, c := range live {
		for parked := false; !parked; {
			select {
			case g := <-c.parked:
				parked = g == gen // an older pause's word is stale
			case <-t.C:
				cio.unpause()
				return false
			}
		}
	}
	return true
}

// handover returns the streams of the paused copiers still reading, and
// the unterminated line each holds (stdout, stderr).
func (cio *containerIO) handover() (streams [2]*os.File, pending [2][]byte) {
	cio.pauseMu.Lock()
	defer cio.pauseMu.Unlock()
	for _, c := range cio.copiers {
		if c.ended {
			continue
		}
		i := 0
		if c.f == cio.errOut {
			i = 1
		}
		streams[i] = c.f
		pending[i] = append([]byte(nil), c.w.pending()...)
	}
	return streams, pending
}

// unpause lets paused copiers go on.
func (cio *containerIO) unpause() {
	for _, c := range cio.copiers {
		_ = c.f.SetReadDeadline(time.Time{})
	}
	cio.pauseMu.Lock()
	if cio.pausing {
		cio.pausing = false
		close(cio.resume)
	}
	cio.pauseMu.Unlock()
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

// closeAll releases every descriptor; the copiers and attachments, if
// any, end. Closing a file twice (the pty master is both out and stdin)
// only returns an error.
func (cio *containerIO) closeAll() {
	cio.dropAttachers()
	cio.closeOutputs()
	for _, f := range []*os.File{cio.console, cio.takeStdin()} {
		if f != nil {
			_ = f.Close()
		}
	}
	cio.console = nil
}
