package monitor_test

// Benchmarks: a container's create+start+exit+delete through the monitor,
// and what an idle monitor costs in memory.
//
//	BERTH_INTEGRATION=1 go test -tags seccomp -run - -bench . -benchtime 1x ./internal/monitor
//
// BERTH_MONITOR_BIN=/path/to/berth-monitor measures a built binary instead
// of the test binary acting as the monitor, BERTH_HELPER_BIN=/path/to/berth
// the daemon's binary as its helper instead of the test binary. A
// production measurement:
//
//	CGO_ENABLED=0 go build -trimpath -o /tmp/berth-monitor ./cmd/berth-monitor
//	go build -tags seccomp -o /tmp/berth ./cmd/berth
//	BERTH_MONITOR_BIN=/tmp/berth-monitor BERTH_HELPER_BIN=/tmp/berth BERTH_INTEGRATION=1 \
//	    go test -tags seccomp -run - -bench Memory -benchtime 1x ./internal/monitor
//
// BERTH_MONITOR_LOG_LEVEL sets the monitors' --log-level (default debug).

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
)

func BenchmarkMonitorCreateStart(b *testing.B) {
	integration(b)
	p := newPod(b, makeRootfs(b))
	ctx := testCtx(b)
	exited := make(chan string, 16)
	evCtx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = p.client.Events(evCtx, func(ev monitorapi.Event) {
			if ev.Type == monitorapi.EventExited {
				exited <- ev.State.ID
			}
		})
	}()
	b.Cleanup(func() { cancel(); <-stopped })
	// Bundles are written ahead: only the monitor's work is timed.
	reqs := make([]monitorapi.CreateRequest, b.N)
	for i := range reqs {
		reqs[i] = p.bundle("c"+strconv.Itoa(i), []string{"true"}, ctrOpts{})
	}
	b.ResetTimer()
	for i := range b.N {
		id := "c" + strconv.Itoa(i)
		if _, err := p.client.Create(ctx, id, reqs[i]); err != nil {
			b.Fatal(err)
		}
		if _, err := p.client.Start(ctx, id); err != nil {
			b.Fatal(err)
		}
		if got := <-exited; got != id {
			b.Fatalf("exit of %s, want %s", got, id)
		}
		if err := p.client.Delete(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMonitorIdleMemory runs 20 monitors with one idle container each
// and reports their average proportional set size (shared pages split
// between the monitors that map them).
func BenchmarkMonitorIdleMemory(b *testing.B) { benchMemory(b, 0, 0) }

// BenchmarkMonitorChurnMemory is BenchmarkMonitorIdleMemory after each
// monitor ran (and deleted) 30 short-lived containers: the steady state of
// a pod whose containers restart.
func BenchmarkMonitorChurnMemory(b *testing.B) { benchMemory(b, 30, 0) }

// BenchmarkMonitorPolledMemory is BenchmarkMonitorIdleMemory after the
// daemon asked each monitor for its containers' states 1000 times, as it
// does while kubelet relists: the garbage of many small calls.
func BenchmarkMonitorPolledMemory(b *testing.B) { benchMemory(b, 0, 1000) }

func benchMemory(b *testing.B, churn, polls int) {
	integration(b)
	const monitors = 20
	rootfs := makeRootfs(b)
	pods := make([]*pod, monitors)
	for i := range pods {
		p := newPod(b, rootfs)
		pods[i] = p
		for j := range churn {
			id := "short" + strconv.Itoa(j)
			p.run(id, []string{"true"}, ctrOpts{})
			p.waitStatus(id, monitorapi.StatusStopped)
			if err := p.client.Delete(testCtx(b), id); err != nil {
				b.Fatal(err)
			}
		}
		p.run("idle", []string{"sleep", "1000"}, ctrOpts{})
		for range polls {
			if _, err := p.client.List(testCtx(b)); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Intentionally a fixed wait: the monitors return their free memory
	// after 2 s without activity, and an idle process gives no signal of
	// that to wait for.
	time.Sleep(4 * time.Second)
	sum := map[string]float64{}
	threads := 0.0
	for _, p := range pods {
		m, err := smapsRollup(p.cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		for k, v := range m {
			sum[k] += v
		}
		threads += float64(threadCount(p.cmd.Process.Pid))
	}
	for _, k := range []string{"Pss", "Pss_Anon", "Pss_File", "Rss"} {
		b.ReportMetric(sum[k]/monitors, k+"-kB/monitor")
	}
	b.ReportMetric(threads/monitors, "threads/monitor")
}

// smapsRollup reads the kB fields of /proc/<pid>/smaps_rollup.
func smapsRollup(pid int) (map[string]float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 2 && fields[1] == "kB" {
			n, _ := strconv.ParseFloat(fields[0], 64)
			out[k] = n
		}
	}
	return out, sc.Err()
}

func threadCount(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}
