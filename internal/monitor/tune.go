package monitor

// Runtime tuning for a process that is idle almost all its life and of
// which a node runs one per pod.

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// idleDelay is how long the monitor must be quiet before it hands its free
// memory back to the kernel.
const idleDelay = 2 * time.Second

// tuning knobs (temporary: BERTH_MONITOR_TUNE="procs=1,gc=50,free=1").
var tuneFree = true

func tuneRuntime() {
	procs, gc := 1, 50
	if v, ok := os.LookupEnv("BERTH_MONITOR_TUNE"); ok {
		procs, gc, tuneFree = 0, 100, false
		for _, kv := range strings.Split(v, ",") {
			k, val, _ := strings.Cut(kv, "=")
			n, _ := strconv.Atoi(val)
			switch k {
			case "procs":
				procs = n
			case "gc":
				gc = n
			case "free":
				tuneFree = n != 0
			case "limit":
				debug.SetMemoryLimit(int64(n) << 10)
			}
		}
	}
	if procs > 0 {
		runtime.GOMAXPROCS(procs)
	}
	if gc > 0 {
		debug.SetGCPercent(gc)
	}
}

// idler returns the heap's free pages to the kernel once the monitor has
// been quiet for idleDelay. The Go scavenger would too, but slowly and
// only down to its own target; a forced release once per busy period
// costs a GC cycle (well under a millisecond for this heap).
type idler struct {
	mu sync.Mutex
	t  *time.Timer
}

func newIdler() *idler { return &idler{} }

// touch notes activity: the release happens idleDelay after the last one.
func (i *idler) touch() {
	if !tuneFree {
		return
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.t == nil {
		i.t = time.AfterFunc(idleDelay, func() {
			debug.FreeOSMemory()
			if os.Getenv("ZZMEM") != "" {
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				println("ZZMEM heapInuse", ms.HeapInuse, "heapIdle", ms.HeapIdle, "released", ms.HeapReleased, "heapAlloc", ms.HeapAlloc, "objects", ms.HeapObjects, "stackInuse", ms.StackInuse, "stackSys", ms.StackSys, "mspan", ms.MSpanInuse, "mcache", ms.MCacheInuse, "buckhash", ms.BuckHashSys, "gcsys", ms.GCSys, "other", ms.OtherSys, "sys", ms.Sys, "goroutines", runtime.NumGoroutine(), "memprofrate", runtime.MemProfileRate)
				buf := make([]byte, 1<<16)
				println(string(buf[:runtime.Stack(buf, true)]))
			}
		})
		return
	}
	i.t.Reset(idleDelay)
}
