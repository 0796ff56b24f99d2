package containerops

// Exec: `runc exec`, called in-process by the daemon (ExecSync, Exec). The
// daemon is the exec'd process's parent and waits for it; unlike create,
// nothing has to outlive the daemon, since the stream that wants the
// process's output ends with the daemon anyway. Running it in-process saves
// a helper start (about 8 ms of a fat binary) on every exec probe.

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// ExecConfig is a process to run in an existing container.
type ExecConfig struct {
	// Root and ID name the container's libcontainer state (the pod
	// monitor's <dir>/runc).
	Root, ID string
	// Bundle's config.json gives what Args do not: env, working directory,
	// user, groups, capabilities, no_new_privs, AppArmor profile, rlimits.
	// Seccomp comes from the container's libcontainer state.
	Bundle string
	Args   []string
	// TTY runs the process on a new pseudo-terminal of the given size; its
	// master is ExecProcess.Console. Otherwise the process gets Stdin,
	// Stdout and Stderr (nil: /dev/null).
	TTY                   bool
	Width, Height         uint16
	Stdin, Stdout, Stderr *os.File
}

// ExecProcess is a started exec.
type ExecProcess struct {
	p *libcontainer.Process
	// Console is the pseudo-terminal's master for a TTY exec (non-blocking,
	// so reads park in the runtime's poller); the caller closes it.
	Console *os.File
}

// StartExec starts c.Args in the container. An error before the process
// ran is InvalidArgument for a bad request, NotFound for a container
// libcontainer does not know, FailedPrecondition for one that is stopped.
func StartExec(c ExecConfig) (_ *ExecProcess, err error) {
	if len(c.Args) == 0 {
		return nil, fmt.Errorf("%w: exec in container %s: no command", errdefs.ErrInvalidArgument, c.ID)
	}
	spec, err := loadSpec(c.Bundle)
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", c.ID, err)
	}
	ctr, err := libcontainer.Load(c.Root, c.ID)
	if err != nil {
		if errors.Is(err, libcontainer.ErrNotExist) {
			return nil, fmt.Errorf("%w: container %s has no libcontainer state in %s", errdefs.ErrNotFound, c.ID, c.Root)
		}
		return nil, fmt.Errorf("exec in container %s: %w", c.ID, err)
	}
	st, err := ctr.Status()
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", c.ID, err)
	}
	if st == libcontainer.Stopped {
		return nil, fmt.Errorf("%w: container %s is not running", errdefs.ErrFailedPrecondition, c.ID)
	}
	ps := *spec.Process
	ps.Args = c.Args
	ps.Terminal = c.TTY
	proc, err := newProcess(&ps)
	if err != nil {
		return nil, fmt.Errorf("%w: exec in container %s: %v", errdefs.ErrInvalidArgument, c.ID, err)
	}
	proc.Init = false
	proc.LogLevel = initLogLevel()

	var console *os.File
	if c.TTY {
		// libcontainer's console socket: the init makes the terminal in the
		// container and sends its master back before it reports ready.
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("exec in container %s: console socket: %w", c.ID, err)
		}
		console = os.NewFile(uintptr(fds[0]), "console-parent")
		defer console.Close()
		child := os.NewFile(uintptr(fds[1]), "console-child")
		defer child.Close()
		proc.ConsoleSocket = child
		proc.ConsoleWidth, proc.ConsoleHeight = c.Width, c.Height
	} else {
		// A nil *os.File in the io interfaces would not be nil.
		if c.Stdin != nil {
			proc.Stdin = c.Stdin
		}
		if c.Stdout != nil {
			proc.Stdout = c.Stdout
		}
		if c.Stderr != nil {
			proc.Stderr = c.Stderr
		}
	}
	if err := ctr.Run(proc); err != nil {
		// The init's own error comes back as text only: its failed
		// execve says `exec: "<name>": ...` (not found, not executable).
		if strings.Contains(err.Error(), "unable to start container process: exec: ") {
			return nil, fmt.Errorf("%w: exec in container %s: the command cannot be run: %v", errdefs.ErrInvalidArgument, c.ID, err)
		}
		return nil, fmt.Errorf("exec in container %s: %w", c.ID, err)
	}
	e := &ExecProcess{p: proc}
	if c.TTY {
		if e.Console, err = recvConsole(console); err != nil {
			_ = e.Kill()
			_, _ = e.Wait()
			return nil, fmt.Errorf("exec in container %s: receive its terminal: %w", c.ID, err)
		}
	}
	return e, nil
}

// Pid is the process's pid in the daemon's PID namespace.
func (e *ExecProcess) Pid() int {
	pid, _ := e.p.Pid()
	return pid
}

// Kill sends SIGKILL; a process that is gone is no error.
func (e *ExecProcess) Kill() error {
	err := e.p.Signal(unix.SIGKILL)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Wait waits for the process to end and returns its exit code: its exit
// status, or 128+signal when a signal ended it.
func (e *ExecProcess) Wait() (int, error) {
	ps, err := e.p.Wait()
	if ps == nil {
		return -1, err
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return ps.ExitCode(), nil
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// recvConsole takes the terminal master the init sent, without blocking:
// it was queued before the init reported ready.
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
		if rights, err := unix.ParseUnixRights(&scm); err == nil {
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
