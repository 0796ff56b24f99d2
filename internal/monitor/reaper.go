package monitor

// All reaping: the monitor is a child subreaper, and one reaper collects
// every child it has — the helpers it runs, the containers' inits (its
// children once their helper exited) and any orphan of the pod — with
// wait4(-1) on SIGCHLD. Nothing else in the monitor waits for a process.

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// reaper routes exit statuses to whoever waits for them.
type reaper struct {
	// mu is held while reaping, while starting a process (until its pid is
	// registered) and while a container init is claimed: no status can be
	// collected between a process's birth and its registration.
	mu      sync.Mutex
	waiters map[int]func(unix.WaitStatus)
	// unclaimed keeps the statuses of unknown children while a create is
	// in flight: the init a create helper reports may end, and be reaped,
	// before the monitor read the report. claims counts those creates;
	// once none is left, what nobody claimed were orphans.
	unclaimed map[int]unix.WaitStatus
	claims    int
}

func newReaper() *reaper {
	return &reaper{waiters: make(map[int]func(unix.WaitStatus))}
}

// reap collects every child that ended. The waiters it calls must not
// block.
func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return // ECHILD: no child at all; 0: none ended
		}
		if fn, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			fn(ws)
			continue
		}
		if r.claims > 0 {
			if r.unclaimed == nil {
				r.unclaimed = make(map[int]unix.WaitStatus)
			}
			r.unclaimed[pid] = ws
			continue
		}
		slog.Debug("orphan reaped", "pid", pid, "status", describeStatus(ws))
	}
}

// start runs argv[0] with the environment env and the given descriptors as
// 0, 1, 2, ... and calls done with its exit status once it is reaped.
func (r *reaper) start(argv, env []string, files []*os.File, done func(unix.WaitStatus)) (int, error) {
	fds := make([]uintptr, len(files))
	for i, f := range files {
		// Fd puts the descriptor in blocking mode: the child gets it so.
		fds[i] = f.Fd()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{Env: env, Files: fds})
	runtime.KeepAlive(files) // their descriptors stay open until the fork
	if err != nil {
		return 0, err
	}
	r.waiters[pid] = done
	return pid, nil
}

// expectClaim announces a create in flight: statuses of unknown children
// are kept until claimEnded.
func (r *reaper) expectClaim() {
	r.mu.Lock()
	r.claims++
	r.mu.Unlock()
}

// claimEnded ends what expectClaim began.
func (r *reaper) claimEnded() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.claims--
	if r.claims == 0 {
		for pid, ws := range r.unclaimed {
			slog.Debug("orphan reaped", "pid", pid, "status", describeStatus(ws))
		}
		r.unclaimed = nil
	}
}

// claim makes done receive the exit status of pid, a container init that
// a create helper just reported (the caller is between expectClaim and
// claimEnded). It returns a pidfd for the init, or -1 when it has already
// been reaped; then done was already called.
func (r *reaper) claim(pid int, done func(unix.WaitStatus)) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ws, ok := r.unclaimed[pid]; ok {
		delete(r.unclaimed, pid)
		done(ws)
		return -1
	}
	// Not reaped, and nothing but this reaper reaps it (the helper never
	// does): pid is the init, alive or a zombie, until the reaper, which
	// waits for mu, collects it.
	fd, err := unix.PidfdOpen(pid, 0) // always close-on-exec
	if err != nil {
		slog.Warn("no pidfd for a container init", "pid", pid, "error", err)
		fd = -1
	}
	r.waiters[pid] = done
	return fd
}

// describeStatus renders a wait status for messages.
func describeStatus(ws unix.WaitStatus) string {
	switch {
	case ws.Signaled():
		return fmt.Sprintf("killed by signal %d", ws.Signal())
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	}
	return fmt.Sprintf("wait status %#x", uint32(ws))
}
