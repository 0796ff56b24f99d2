package main

import (
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// podHolderCommand is argv[1] of the process that holds a pod's PID
// namespace (pid: POD) when the pod has no container of its own yet.
const podHolderCommand = "pod-holder"

// runPodHolder is PID 1 of a pod's PID namespace: it reaps the orphans the
// kernel hands it and exits on SIGTERM or SIGINT (init ignores signals it
// has no handler for, so the handler is what makes it stoppable). When it
// exits, the kernel kills every process left in the namespace.
func runPodHolder() int {
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
