package conformance

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// benchCtrEnv is a berth of its own with a pod network and the test image.
func benchCtrEnv(b *testing.B) (*ctrEnv, *framework.Daemon, context.Context) {
	if os.Getenv(framework.EndpointEnv) != "" {
		b.Skipf("starts and measures a berth of its own; %s points elsewhere", framework.EndpointEnv)
	}
	framework.RequireRoot(b)
	d := framework.StartDaemon(b, framework.DaemonOptions{Network: true})
	ctx := cancelOnInterrupt(b)
	b.Cleanup(func() { removeAllPods(b, d) })
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Images: d.Images, Daemon: d}
	reg := framework.StartRegistry(b, framework.RegistryOptions{})
	e := &ctrEnv{tg: tg, reg: reg, logs: b.TempDir()}
	ref, _ := reg.Push(b, "bench/busybox:1", framework.MustBuildImage(b, framework.ImageSpec{}))
	if _, err := tg.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		b.Fatal(err)
	}
	e.image = ref
	return e, d, ctx
}

// BenchmarkContainer times container RPCs against a berth of its own, the
// image cached, one container at a time:
//
//   - create+start: CreateContainer + StartContainer of a sleeping
//     container in a running pod (the pod's monitor already up);
//   - create+start-seccomp: the same with the RuntimeDefault seccomp profile;
//   - stop+remove: StopContainer (timeout 0) + RemoveContainer of it;
//   - pod-start: RunPodSandbox + CreateContainer + StartContainer, what
//     kubelet waits for before a pod runs (monitor start included);
//   - pod-teardown: StopContainer + RemoveContainer + StopPodSandbox +
//     RemovePodSandbox.
//
// p50-ms and p99-ms are the median and 99th percentile of the iterations.
func BenchmarkContainer(b *testing.B) {
	e, d, ctx := benchCtrEnv(b)
	rt := d.Runtime
	n := 0
	podCfg := func() *runtimeapi.PodSandboxConfig {
		n++
		c := podConfig("bench-" + strconv.Itoa(n))
		c.LogDirectory = e.logs
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}
		return c
	}
	seccomp := false // RuntimeDefault seccomp for the containers made next
	ctrCfg := func() *runtimeapi.ContainerConfig {
		n++
		c := e.ctrConfig("sleeper-"+strconv.Itoa(n), "sleep", "1000")
		c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}
		if seccomp {
			c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
		}
		return c
	}
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	runPod := func() (string, *runtimeapi.PodSandboxConfig) {
		cfg := podCfg()
		resp, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		must(err)
		return resp.PodSandboxId, cfg
	}
	createStart := func(podID string, cfg *runtimeapi.PodSandboxConfig) string {
		resp, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: ctrCfg(), SandboxConfig: cfg})
		must(err)
		_, err = rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId})
		must(err)
		return resp.ContainerId
	}
	stopRemove := func(id string) {
		_, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id})
		must(err)
		_, err = rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
		must(err)
	}
	removePod := func(id string) {
		_, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
		must(err)
		_, err = rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
		must(err)
	}
	timed := func(b *testing.B, lat *[]time.Duration, fn func()) {
		start := time.Now()
		fn()
		*lat = append(*lat, time.Since(start))
	}
	report := func(b *testing.B, lat []time.Duration) {
		b.ReportMetric(percentileMs(lat, 50), "p50-ms")
		b.ReportMetric(percentileMs(lat, 99), "p99-ms")
	}

	podID, cfg := runPod()
	createStartBench := func(withSeccomp bool) func(*testing.B) {
		return func(b *testing.B) {
			seccomp = withSeccomp
			defer func() { seccomp = false }()
			var lat []time.Duration
			for b.Loop() {
				var id string
				timed(b, &lat, func() { id = createStart(podID, cfg) })
				b.StopTimer()
				stopRemove(id)
				b.StartTimer()
			}
			report(b, lat)
		}
	}
	b.Run("create+start", createStartBench(false))
	// The same with RuntimeDefault seccomp: what compiling and loading the
	// filter in each container's init costs.
	b.Run("create+start-seccomp", createStartBench(true))
	b.Run("stop+remove", func(b *testing.B) {
		var lat []time.Duration
		for b.Loop() {
			b.StopTimer()
			id := createStart(podID, cfg)
			b.StartTimer()
			timed(b, &lat, func() { stopRemove(id) })
		}
		report(b, lat)
	})
	// ExecSync of `true`, as an exec probe: each starts a process through
	// libcontainer in the container's namespaces (and, with RuntimeDefault
	// seccomp, compiles and loads the filter again).
	execBench := func(withSeccomp bool) func(*testing.B) {
		return func(b *testing.B) {
			seccomp = withSeccomp
			id := createStart(podID, cfg)
			seccomp = false
			defer stopRemove(id)
			var lat []time.Duration
			for b.Loop() {
				timed(b, &lat, func() {
					resp, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}, Timeout: 10})
					must(err)
					if resp.ExitCode != 0 {
						b.Fatalf("exec exited %d", resp.ExitCode)
					}
				})
			}
			report(b, lat)
		}
	}
	b.Run("exec-sync", execBench(false))
	b.Run("exec-sync-seccomp", execBench(true))
	removePod(podID)
	b.Run("pod-start", func(b *testing.B) {
		var lat []time.Duration
		for b.Loop() {
			var pod, ctr string
			timed(b, &lat, func() {
				var cfg *runtimeapi.PodSandboxConfig
				pod, cfg = runPod()
				ctr = createStart(pod, cfg)
			})
			b.StopTimer()
			stopRemove(ctr)
			removePod(pod)
			b.StartTimer()
		}
		report(b, lat)
	})
	b.Run("pod-teardown", func(b *testing.B) {
		var lat []time.Duration
		for b.Loop() {
			b.StopTimer()
			pod, cfg := runPod()
			ctr := createStart(pod, cfg)
			b.StartTimer()
			timed(b, &lat, func() { stopRemove(ctr); removePod(pod) })
		}
		report(b, lat)
	})
}

// BenchmarkRuntimeMemoryPerPod measures what berth costs per idle pod with
// one sleeping container, at 20 pods: the monitors' PSS (proportional set
// size: shared pages divided among the processes sharing them) per pod, the
// daemon's PSS growth per pod, and their sum (the budget: 1 MB).
// Each iteration is a full run of 20 pods; use -benchtime=1x.
func BenchmarkRuntimeMemoryPerPod(b *testing.B) {
	const pods = 20
	e, d, ctx := benchCtrEnv(b)
	rt := d.Runtime
	// kubelet's default: each container its own PID namespace, so no pod
	// has a PID holder (whose memory would be the pod's too).
	ns := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
	startPods := func(round int) []string {
		var ids []string
		for i := 0; i < pods; i++ {
			id, cfg := e.pod(b, "mem-"+strconv.Itoa(round)+"-"+strconv.Itoa(i), func(c *runtimeapi.PodSandboxConfig) {
				c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns}
			})
			ctr := e.ctrConfig("sleeper", "sleep", "1000")
			ctr.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: ns}
			e.run(b, id, cfg, ctr)
			ids = append(ids, id)
		}
		return ids
	}
	removePods := func(ids []string) {
		for _, id := range ids {
			if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
				b.Fatal(err)
			}
		}
	}
	// A first round of the same size brings the daemon's heap to its
	// working size, so that the growth measured next is what the pods
	// keep, not the Go heap reaching its first GC target.
	removePods(startPods(0))
	round := 0
	for b.Loop() {
		b.StopTimer()
		round++
		daemonBefore := pssKB(b, d.Pid())
		podIDs := startPods(round)
		// Let the monitors settle into idle (their post-start trimming).
		time.Sleep(2 * time.Second)
		var monitors float64
		for _, id := range podIDs {
			monitors += pssKB(b, monitorPid(b, e, id))
		}
		daemonGrowth := pssKB(b, d.Pid()) - daemonBefore
		b.ReportMetric(monitors/pods, "monitor-PSS-KB/pod")
		b.ReportMetric(daemonGrowth/pods, "daemon-growth-KB/pod")
		b.ReportMetric((monitors+daemonGrowth)/pods, "runtime-KB/pod")
		removePods(podIDs)
		b.StartTimer()
	}
}

// pssKB reads a process's proportional set size in KiB.
func pssKB(b *testing.B, pid int) float64 {
	b.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb
		}
	}
	b.Fatalf("no Pss in /proc/%d/smaps_rollup", pid)
	return 0
}

// monitorPid finds a pod's monitor from its verbose status.
func monitorPid(b *testing.B, e *ctrEnv, podID string) int {
	b.Helper()
	resp, err := e.tg.Runtime.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil {
		b.Fatal(err)
	}
	pid, err := strconv.Atoi(jsonNumber(b, resp.Info["info"], "monitor", "pid"))
	if err != nil {
		b.Fatal(err)
	}
	return pid
}
