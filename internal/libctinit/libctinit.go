// Package libctinit wires a binary up as a libcontainer "init" entry point.
//
// libcontainer starts every container process by re-executing the current
// binary (a sealed clone of /proc/self/exe) with argv[1] == "init". That child
// must then do two things before anything else happens:
//
//  1. Run the C constructor in github.com/opencontainers/runc/libcontainer/nsenter
//     (nsexec), which joins/creates namespaces and does the clone dance before
//     the Go runtime starts. It only runs if the package is linked in, hence
//     the blank import.
//  2. Call libcontainer.Init(), which finishes container setup (mounts,
//     pivot_root, capabilities, seccomp, ...) and finally execve()s the user
//     process. It never returns.
//
// If either is missing, the parent fails with the rather opaque
// "can't get final child's PID from pipe: EOF".
//
// The cgroup managers additionally need the device-rule implementation that
// github.com/opencontainers/cgroups/devices registers from its init()
// (cgroups.DevicesSetV1 for v1, the eBPF filter DevicesSetV2 for v2, and the
// systemd device properties). libcontainer does not import it itself; without
// it, any container with device rules (i.e. every normal one) fails with
// cgroups.ErrDevicesUnsupported. It is blank-imported here too.
//
// Every binary that starts containers through libcontainer (the daemon, the
// per-pod monitor, and test binaries exercising libcontainer) must import this
// package and call RunIfInit as the very first thing in main (or TestMain).
// The package is deliberately thin, since it is linked into the
// memory-sensitive monitor: do not add dependencies beyond libcontainer itself.
package libctinit

import (
	"os"
	"runtime"

	"github.com/opencontainers/runc/libcontainer"

	// Device rule management for the cgroup managers (registers itself in init).
	_ "github.com/opencontainers/cgroups/devices"
	// C constructor (nsexec) that runs before the Go runtime in "init" mode.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// init keeps a container init on the main thread. libcontainer.Init locks
// the goroutine to whatever thread it runs on and ends in execve of the
// container's process; called from main, that may be a thread other than
// the thread group leader, and an execve from such a thread makes the kernel
// retire the leader and hand its PID to the exec'ing thread. Until that
// finishes, /proc/<pid>/ns/* of the container's init does not resolve, and
// an exec joining the container then (an exec probe right after
// StartContainer) fails with "failed to open /proc/<pid>/ns/ipc: No such
// file or directory". A lock taken during package initialisation makes main
// run on the main thread (runtime.LockOSThread), as runc's own init() does.
func init() {
	if isInit() {
		runtime.LockOSThread()
	}
}

func isInit() bool { return len(os.Args) > 1 && os.Args[1] == "init" }

// RunIfInit turns the process into a libcontainer container init if it was
// started as "<self> init" by libcontainer; in that case it never returns
// (libcontainer.Init either execs the container process or exits with status
// 255 after reporting the error). Otherwise it returns immediately.
//
// Call it first thing in main / TestMain, before starting goroutines, parsing
// flags or doing any other work: this mirrors runc's own init.go, which calls
// libcontainer.Init from an init() function.
func RunIfInit() {
	if isInit() {
		// libcontainer.Init() has no arguments and no return value: it locks
		// the OS thread, sets GOMAXPROCS(1) and calls os.Exit(255) itself if
		// initialization fails.
		libcontainer.Init()
		// Unreachable in practice; be defensive in case a future libcontainer
		// returns instead of exiting.
		os.Exit(255)
	}
}
