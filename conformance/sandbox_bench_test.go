package conformance

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// BenchmarkPodSandbox times pod sandbox RPCs against a berth of its own on
// the test bridge network, one pod at a time, as kubelet's client sees them:
//
//   - run, run-hostport: RunPodSandbox, without and with one host port
//     (portmap and its iptables work run only for the latter);
//   - stop+remove, stop+remove-hostport: StopPodSandbox + RemovePodSandbox
//     of such a pod.
//
// Each iteration is one pod. The half of its life that is not measured runs
// with the timer stopped, so at most one pod exists at a time and every
// iteration meets the same node. Besides ns/op (the mean), p50-ms and
// p99-ms are the median and 99th percentile of the iterations. b.Loop sets
// the pod count from -benchtime: at the default 1s, as many pods as take a
// second of measured time (8 to 40 on a 2-core VM); -benchtime=50x runs exactly
// 50. B/op and allocs/op are this test client's, not the daemon's.
func BenchmarkPodSandbox(b *testing.B) {
	if os.Getenv(framework.EndpointEnv) != "" {
		b.Skipf("starts and times a berth of its own; %s points elsewhere", framework.EndpointEnv)
	}
	framework.RequireRoot(b)
	d := framework.StartDaemon(b, framework.DaemonOptions{Network: true})
	ctx := cancelOnInterrupt(b)
	// Registered after StartDaemon, so it runs before the daemon's teardown:
	// whatever stopped the benchmark, no pod outlives it.
	b.Cleanup(func() { removeAllPods(b, d) })
	hostPort := pickHostPort(b)

	for _, bc := range []struct {
		name     string
		hostPort int32
		timeRun  bool // time RunPodSandbox, else Stop+Remove
	}{
		{"run", 0, true},
		{"run-hostport", hostPort, true},
		{"stop+remove", 0, false},
		{"stop+remove-hostport", hostPort, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var lat []time.Duration
			i := 0
			runOne := func() (string, time.Duration) {
				cfg := podConfig("bench-" + strconv.Itoa(i))
				i++
				if bc.hostPort != 0 {
					cfg.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: bc.hostPort}}
				}
				start := time.Now()
				resp, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
				took := time.Since(start)
				if err != nil {
					b.Fatalf("RunPodSandbox: %v", err)
				}
				return resp.PodSandboxId, took
			}
			stopRemove := func(id string) time.Duration {
				start := time.Now()
				if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
					b.Fatalf("StopPodSandbox: %v", err)
				}
				if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
					b.Fatalf("RemovePodSandbox: %v", err)
				}
				return time.Since(start)
			}
			for b.Loop() {
				if bc.timeRun {
					id, took := runOne()
					lat = append(lat, took)
					b.StopTimer()
					stopRemove(id)
					b.StartTimer()
				} else {
					b.StopTimer()
					id, _ := runOne()
					b.StartTimer()
					lat = append(lat, stopRemove(id))
				}
			}
			// After the loop: its first call drops metrics reported before.
			b.ReportMetric(percentileMs(lat, 50), "p50-ms")
			b.ReportMetric(percentileMs(lat, 99), "p99-ms")
		})
		if ctx.Err() != nil {
			b.Fatal("interrupted")
		}
	}
}

// percentileMs is the p-th percentile (nearest rank) of d in milliseconds.
func percentileMs(d []time.Duration, p int) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := (p*len(s) + 99) / 100 // ceil(p/100 * n)
	return float64(s[max(rank, 1)-1]) / float64(time.Millisecond)
}

// cancelOnInterrupt returns a context that SIGINT or SIGTERM cancels. The
// daemon sits in its own process group, so a Ctrl-C reaches only this
// process, which would die at once and leave the daemon, its pods and the
// test bridge behind; instead the RPC in flight fails, the benchmark
// fails, and the cleanups run. A second signal kills as usual.
func cancelOnInterrupt(b *testing.B) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case sig := <-sigs:
			signal.Stop(sigs)
			fmt.Fprintf(os.Stderr, "%s: %v: stopping and cleaning up (again to kill)\n", b.Name(), sig)
			cancel()
		case <-done:
		}
	})
	b.Cleanup(func() {
		signal.Stop(sigs)
		close(done)
		wg.Wait()
		cancel()
	})
	return ctx
}

// removeAllPods removes every pod the daemon has and checks their
// addresses are back.
func removeAllPods(b *testing.B, d *framework.Daemon) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		b.Errorf("cleanup: ListPodSandbox: %v", err)
		return
	}
	for _, sb := range list.Items {
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			b.Errorf("cleanup: RemovePodSandbox(%s): %v", sb.Id, err)
		}
	}
	if ips := d.Network.AllocatedIPs(b); len(ips) != 0 {
		b.Errorf("cleanup: IPs still allocated: %v", ips)
	}
}
