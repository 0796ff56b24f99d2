package monitor

// Runtime tuning for a process that is idle almost all its life and of
// which a node runs one per pod. What is here was measured with
// BenchmarkMonitor{Idle,Churn,Polled}Memory (20 monitors, PSS per monitor);
// what is not was measured too and did not pay:
//
//   - GOMAXPROCS=1 from the process start: about -225 kB. Set later (by
//     runtime.GOMAXPROCS) it saves nothing, the runtime has already sized
//     itself for every CPU; hence the re-exec below.
//   - Returning free memory once idle (debug.FreeOSMemory): +190 kB for a
//     pod that only ever created one container (the forced collection's
//     own metadata), but -3.0 MB after 30 container restarts and -1.9 MB
//     after 1000 daemon calls, where the heap would otherwise sit at the
//     collector's 4 MB minimum goal.
//   - Not done: a lower GOGC (50, 25) or a soft memory limit made the
//     steady state worse (more collections, more collector metadata; the
//     runtime's own overhead is above any limit small enough to matter);
//     ending idle OS threads (LockOSThread and exit) cost more than it
//     saved; runtime.ReadMemStats or runtime/metrics, even once, add about
//     300 kB, so the monitor never reads its own memory statistics.

import (
	"os"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
)

// idleDelay is how long the monitor must be quiet before it hands its free
// memory back to the kernel.
const idleDelay = 2 * time.Second

// tuneRuntime restarts the monitor with one P unless GOMAXPROCS was set
// (the daemon may set it and save the exec). The exec keeps the pid, its
// start time and the inherited descriptors (the readiness pipe).
func tuneRuntime() {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	env := append(os.Environ(), "GOMAXPROCS=1")
	// Only returns on failure: then run as is.
	_ = syscall.Exec("/proc/self/exe", os.Args, env)
}

// idler returns the heap's free pages (and, by the collection it forces,
// its garbage) to the kernel once the monitor has been quiet for
// idleDelay after some activity.
type idler struct {
	mu sync.Mutex
	t  *time.Timer
}

func newIdler() *idler { return &idler{} }

// touch notes activity: the release happens idleDelay after the last one.
func (i *idler) touch() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.t == nil {
		i.t = time.AfterFunc(idleDelay, debug.FreeOSMemory)
		return
	}
	i.t.Reset(idleDelay)
}
