// Package reaper reaps the children that outlive the request which started
// them — pod monitors and namespace holders — without an OS thread per
// child. A goroutine blocked in wait(2) pins a thread for as long as the
// child lives (a hundred pods were a hundred threads); a pidfd waits in Go's
// netpoller instead, like a socket.
package reaper

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Reap takes over p, a child of this process started by os.StartProcess or
// exec.Cmd.Start, and reaps it whenever it exits. The caller must not wait
// on p afterwards, and reads the PID first: os.Process.Release, which Reap
// calls, sets p.Pid to -1.
func Reap(p *os.Process) {
	fd, err := unix.PidfdOpen(p.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		// No pidfd_open or PIDFD_NONBLOCK (Linux < 5.10): a blocked wait.
		go func() { _, _ = p.Wait() }()
		return
	}
	// The child cannot have been reaped in between: only we wait for it.
	_ = p.Release()
	go reapPidfd(os.NewFile(uintptr(fd), "pidfd"))
}

// reapPidfd waits until the pidfd's process exits, then reaps it.
func reapPidfd(f *os.File) {
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	var werr error
	err = rc.Read(func(fd uintptr) bool {
		werr = waitPidfd(int(fd))
		return !errors.Is(werr, unix.EAGAIN)
	})
	if err == nil {
		return
	}
	// The pidfd is not in the netpoller (os.NewFile found it not
	// pollable): poll it in this goroutine, which then holds a thread.
	_ = rc.Control(func(fd uintptr) {
		for errors.Is(werr, unix.EAGAIN) || errors.Is(werr, unix.EINTR) {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
				return
			}
			werr = waitPidfd(int(fd))
		}
	})
}

// waitPidfd reaps the pidfd's process; EAGAIN while it still runs (the
// pidfd is non-blocking).
func waitPidfd(fd int) error {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PIDFD, fd, &info, unix.WEXITED, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
