package containerops

// create: `runc create` for the monitor. The init is started and left
// waiting on the exec fifo; the monitor, whose child it becomes once this
// helper exits, lets it run.

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// The inherited descriptors that are the container's stdio (or, with a
// terminal, the console socket).
const (
	stdinFD         = 3
	stdoutFD        = 4
	stderrFD        = 5
	consoleSocketFD = 3
)

// create makes the container and reports it on out; whatever fails, what
// was made is undone.
func create(o options, out io.Writer) (err error) {
	invalid := func(err error) error {
		return fmt.Errorf("%w: container %s: %v", errdefs.ErrInvalidArgument, o.id, err)
	}
	spec, err := loadSpec(o.bundle)
	if err != nil {
		return invalid(err)
	}
	if spec.Process.Terminal != o.tty {
		return invalid(fmt.Errorf("the spec's process.terminal (%v) and the request's tty (%v) differ", spec.Process.Terminal, o.tty))
	}
	cfg, err := libcontainerConfig(o.id, o.bundle, spec, o.systemdCgroup)
	if err != nil {
		return invalid(err)
	}
	proc, err := newProcess(spec.Process)
	if err != nil {
		return invalid(err)
	}
	proc.LogLevel = initLogLevel()
	uid, err := cfg.HostRootUID()
	if err != nil {
		return invalid(err)
	}
	gid, err := cfg.HostRootGID()
	if err != nil {
		return invalid(err)
	}
	if err := inheritStdio(proc, o.tty, uid, gid); err != nil {
		return fmt.Errorf("container %s: %w", o.id, err)
	}

	c, err := libcontainer.Create(o.root, o.id, cfg)
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			return fmt.Errorf("%w: container %s has libcontainer state in %s", errdefs.ErrAlreadyExists, o.id, o.root)
		}
		return fmt.Errorf("container %s: %w", o.id, err)
	}
	defer func() {
		if err != nil {
			if err := c.Destroy(); err != nil {
				logrus.WithError(err).WithField("id", o.id).Error("cannot destroy a container that failed to create")
			}
		}
	}()
	if err = c.Start(proc); err != nil {
		return fmt.Errorf("container %s: start its init: %w", o.id, err)
	}
	// From here the init runs: should anything fail, it is killed and,
	// as it will never be the monitor's, reaped here (only then: a created
	// container's init is the monitor's to reap).
	defer func() {
		if err != nil {
			_ = proc.Signal(unix.SIGKILL)
			_, _ = proc.Wait()
		}
	}()
	st, err := c.State()
	if err != nil {
		return fmt.Errorf("container %s: %w", o.id, err)
	}
	res := Result{
		Pid:         st.InitProcessPid,
		CgroupPaths: st.CgroupPaths,
		OwnPidNS:    cfg.Namespaces.IsPrivate(configs.NEWPID),
	}
	// The monitor holds the read end; should it be gone, the container is
	// of no use.
	if err = writeLine(out, res); err != nil {
		return fmt.Errorf("container %s: report it: %w", o.id, err)
	}
	return nil
}

// inheritStdio gives p the inherited descriptors as its stdio or console
// socket. Pipes are handed to the container's root user, as runc's
// setupProcessPipes does, so that reopening /dev/stdout works in a
// user-namespaced container; anything else (/dev/null) is used as is.
func inheritStdio(p *libcontainer.Process, tty bool, uid, gid int) error {
	if tty {
		f, mode, err := inherited(consoleSocketFD, "console-socket")
		if err != nil {
			return err
		}
		if mode&unix.S_IFMT != unix.S_IFSOCK {
			return fmt.Errorf("descriptor %d is not the console socket", consoleSocketFD)
		}
		p.ConsoleSocket = f
		return nil
	}
	var files [3]*os.File
	for i, name := range []string{"stdin", "stdout", "stderr"} {
		fd := stdinFD + i
		f, mode, err := inherited(fd, name)
		if err != nil {
			return err
		}
		if mode&unix.S_IFMT == unix.S_IFIFO && (uid != 0 || gid != 0) {
			if err := unix.Fchown(fd, uid, gid); err != nil {
				return fmt.Errorf("chown the %s pipe: %w", name, err)
			}
		}
		files[i] = f
	}
	p.Stdin, p.Stdout, p.Stderr = files[0], files[1], files[2]
	return nil
}

// inherited takes over an inherited descriptor.
func inherited(fd int, name string) (*os.File, uint32, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, 0, fmt.Errorf("inherited descriptor %d (%s): %w", fd, name, err)
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), name), st.Mode, nil
}
