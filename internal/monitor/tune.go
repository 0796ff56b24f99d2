package monitor

// Runtime tuning for a process that is idle almost all its life and of
// which a node runs one per pod. What is here was measured with
// BenchmarkMonitor{Idle,Churn,Polled}Memory (20 monitors, each with one
// idle container; PSS per monitor, anonymous + file-backed; production
// build, CGO_ENABLED=0); what is not was measured too and did not pay:
//
//   - GOMAXPROCS=1 from the process start: about -225 kB. Set later (by
//     runtime.GOMAXPROCS) it saves nothing, the runtime has already sized
//     itself for every CPU; hence the re-exec below.
//   - No forced collection for a pod that did little. A collection's own
//     metadata (the central span lists' spines and blocks, for every size
//     class in use, never given back) costs 180-500 kB, more than the
//     garbage of a few calls; so a release waits for renewGrowth of
//     anonymous memory (read from /proc/self/statm). Idle: 1164 -> 978 kB.
//   - Renewing the process rather than collecting (renew.go): the only way
//     to give back what a collection leaves (its metadata, grown stacks,
//     idle threads). Idle 880 -> 816 kB; after 30 container restarts
//     1428 -> 822; after 1000 daemon calls 1285 -> 819. A forced
//     collection (debug.FreeOSMemory) remains the fallback when the
//     monitor cannot renew (e.g. it holds no container).
//   - Trimming the mapped executable (trim.go): file-backed PSS 153 -> 69
//     kB.
//   - A helper environment of a few variables and log buffers allocated
//     at a stream's first output: -15 kB.
//   - Not done: a lower GOGC (50, 25) or a soft memory limit made the
//     steady state worse (more collections, more collector metadata; the
//     runtime's own overhead is above any limit small enough to matter);
//     ending idle OS threads (LockOSThread and exit) cost more than it
//     saved; runtime.ReadMemStats or runtime/metrics, even once, add
//     30-300 kB, so the monitor never reads its own memory statistics.
//     os/signal costs three threads (about 40 kB: its locked thread, the
//     template thread LockOSThread starts, the one blocked receiving) but
//     is the only way to catch SIGTERM and SIGCHLD.

import (
	"errors"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Release tuning; the environment variables (read at start) are for
// tests and measurements.
const (
	// idleDelay is how long the monitor must be quiet before it releases
	// memory (BERTH_MONITOR_IDLE_DELAY, a duration).
	idleDelay = 2 * time.Second
	// renewGrowth is how much anonymous memory the monitor must have
	// gained since it started, renewed or last released for a release to
	// pay (BERTH_MONITOR_RENEW_GROWTH, bytes).
	renewGrowth = 64 << 10
)

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

// idler releases memory once the monitor has been quiet for a while after
// some activity, if it grew enough since the last release (a pod that did
// little keeps what it has): by renewing the process, which leaves nothing
// behind, or, if it cannot renew, by a forced collection that returns the
// heap's free pages. Either way it trims the executable's mapped pages.
type idler struct {
	delay  time.Duration
	growth uint64
	renew  func() error
	exe    []exeRange

	mu   sync.Mutex
	t    *time.Timer
	base uint64 // anonymous resident bytes after the last release (or start)
}

func newIdler(renew func() error) *idler {
	i := &idler{delay: idleDelay, growth: renewGrowth, renew: renew, exe: exeRanges()}
	if d, err := time.ParseDuration(os.Getenv("BERTH_MONITOR_IDLE_DELAY")); err == nil && d > 0 {
		i.delay = d
	}
	if g, err := strconv.ParseUint(os.Getenv("BERTH_MONITOR_RENEW_GROWTH"), 10, 64); err == nil {
		i.growth = g
	}
	return i
}

// settle notes the memory of a monitor that just started (or renewed).
func (i *idler) settle() {
	i.mu.Lock()
	defer i.mu.Unlock()
	trimExe(i.exe)
	i.base, _ = rssAnon()
}

// touch notes activity: the release happens i.delay after the last one.
func (i *idler) touch() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.t == nil {
		i.t = time.AfterFunc(i.delay, i.release)
		return
	}
	i.t.Reset(i.delay)
}

// release returns memory if it pays.
func (i *idler) release() {
	i.mu.Lock()
	anon, ok := rssAnon()
	grown := !ok || anon >= i.base+i.growth
	i.mu.Unlock()
	if grown && i.renew != nil {
		err := i.renew() // returns only if the process was not renewed
		slog.Debug("monitor not renewed", "reason", err)
		if errors.Is(err, errNotQuiet) {
			i.touch() // again once quiet
			return
		}
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if grown {
		debug.FreeOSMemory()
		i.base, _ = rssAnon()
	}
	trimExe(i.exe)
}

// rssAnon is the process's anonymous resident memory: resident minus
// shared (file-backed) pages of /proc/self/statm, read without allocating.
func rssAnon() (uint64, bool) {
	fd, err := syscall.Open("/proc/self/statm", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, false
	}
	var buf [128]byte
	n, err := syscall.Read(fd, buf[:])
	_ = syscall.Close(fd)
	if err != nil || n <= 0 {
		return 0, false
	}
	// size resident shared text lib data dt, in pages.
	var f [3]uint64
	field := 0
	for _, c := range buf[:n] {
		switch {
		case c >= '0' && c <= '9':
			f[field] = f[field]*10 + uint64(c-'0')
		case c == ' ':
			field++
		}
		if field == len(f) {
			break
		}
	}
	if field < 2 || f[1] < f[2] {
		return 0, false
	}
	return (f[1] - f[2]) * uint64(os.Getpagesize()), true
}
