package monitor

// A container's end: reap its init, make the exit durable, clean up, finish
// the log, then report. The order is the contract (monitorapi.EventExited):
// once the daemon hears of an exit, exit.json is on disk and every line of
// output is in the log.

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/berth-runtime/berth/internal/atomicfile"
	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// drainTimeout bounds how long an exit waits for the output pipes to reach
// EOF once the container is destroyed.
const drainTimeout = 2 * time.Second

// waitExit handles c's end; it runs for the container's whole life.
func (m *monitor) waitExit(c *container) {
	ps, err := waitProcess(c.proc)
	x := exitOf(ps, err)
	if c.cgroup != nil && x.Message == "" {
		// Read before Destroy removes the cgroup.
		if n, err := c.cgroup.OOMKillCount(); err == nil && n > c.oomBase {
			x.OOMKilled = true
		}
	}
	x.FinishedAt = time.Now()
	if err := writeExit(c.bundle, x); err != nil {
		slog.Error("cannot persist the container's exit", "id", c.id, "error", err)
	}
	if err := c.destroy(); err != nil {
		slog.Error("cannot destroy the exited container", "id", c.id, "error", err)
	}
	if !c.io.drain(drainTimeout) {
		slog.Warn("container output still open after its end; the log was cut", "id", c.id)
	}
	c.log.close()

	// A start that is still reporting goes first: "started" must not
	// follow "exited".
	c.mu.Lock()
	m.mu.Lock()
	c.st.Status = monitorapi.StatusStopped
	c.st.Exit = &x
	if !c.creating {
		m.emitLocked(monitorapi.EventExited, c)
	}
	m.mu.Unlock()
	c.mu.Unlock()
	close(c.done)
	slog.Info("container exited", "id", c.id, "code", x.Code, "signal", x.Signal, "oom_killed", x.OOMKilled)
	m.idle.touch()
}

// waitProcess reaps the container's init. It first waits for the process
// to end on a pidfd in the runtime's poller, so a running container holds
// no OS thread blocked in wait4, then lets libcontainer reap it.
func waitProcess(p *libcontainer.Process) (*os.ProcessState, error) {
	if pid, err := p.Pid(); err == nil {
		if fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK); err == nil {
			awaitPidfd(os.NewFile(uintptr(fd), "pidfd"))
		}
	}
	return p.Wait()
}

// awaitPidfd returns once the process behind the pidfd f has ended (the
// pidfd turns readable), and closes f.
func awaitPidfd(f *os.File) {
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		// WNOWAIT: only look; libcontainer's Wait reaps.
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err != nil {
			return true // cannot tell: let Wait block instead
		}
		// With WNOHANG and nothing to report the kernel leaves si_signo 0;
		// an ended child reports SIGCHLD.
		return info.Signo != 0
	})
}

// exitOf turns a wait result into an Exit.
func exitOf(ps *os.ProcessState, err error) monitorapi.Exit {
	if ps == nil {
		if err == nil {
			err = errors.New("no process state")
		}
		return monitorapi.Exit{Code: 255, Message: fmt.Sprintf("the monitor could not wait for the container's process: %v", err)}
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	switch {
	case !ok:
		return monitorapi.Exit{Code: ps.ExitCode()}
	case ws.Signaled():
		return monitorapi.Exit{Code: 128 + int(ws.Signal()), Signal: int(ws.Signal())}
	default:
		return monitorapi.Exit{Code: ws.ExitStatus()}
	}
}

// writeExit persists x as the bundle's exit file.
func writeExit(bundle string, x monitorapi.Exit) error {
	b, err := json.Marshal(x)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(bundle, monitorapi.ExitFile), b, 0o644)
}

// destroy removes the container's cgroup and libcontainer state, killing
// any process left (once; a failed destroy may be retried).
func (c *container) destroy() error {
	c.destroyMu.Lock()
	defer c.destroyMu.Unlock()
	if c.destroyed {
		return nil
	}
	if err := c.lc.Destroy(); err != nil {
		return err
	}
	c.destroyed = true
	return nil
}
