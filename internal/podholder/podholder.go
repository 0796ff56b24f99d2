// Package podholder is PID 1 of a pod's PID namespace (pid: POD) before
// and between its containers: it reaps the orphans the kernel hands it and
// ends on SIGTERM or SIGINT, taking the namespace's processes with it.
//
// It runs from the lean berth-monitor binary (`berth-monitor pod-holder`),
// so a pod that shares its PID namespace costs a small Go process rather
// than a copy of the daemon. Standard library and x/sys/unix only.
package podholder

import (
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// Command is argv[1] of a holder process.
const Command = "pod-holder"

// Run reaps orphans until SIGTERM or SIGINT and returns the exit code.
// PID 1 ignores signals it has no handler for, so the handler is what
// makes it stoppable; when it exits, the kernel kills every process left
// in the namespace.
func Run() int {
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT)
	for sig := range signals {
		if sig != unix.SIGCHLD {
			return 0
		}
		for {
			var status unix.WaitStatus
			pid, err := unix.Wait4(-1, &status, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
	return 0
}
