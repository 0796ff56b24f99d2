package conformance

// The chaos test of berth's durability: pods keep running, keep their IPs
// and keep logging while berth is SIGKILLed at random moments of a churn of
// other pods, and nothing is left once everything is removed.
//
//	make chaos            # 30 pods, 6 kills
//	make chaos N=10 KILLS=3
//
// In `make test` it runs small: BERTH_CHAOS_PODS (default 4) stable pods,
// BERTH_CHAOS_KILLS (default 6) kills; BERTH_CHAOS_SEED replays a run;
// BERTH_CHAOS_LOG=file keeps the daemon's log (it is printed on failure).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// chaosEnvInt reads a non-negative integer setting from the environment.
func chaosEnvInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

// stablePod is a pod nobody touches during the chaos: its container logs a
// counter, one number per line.
type stablePod struct {
	name, id, ip string
	ctrID, log   string
}

// chaos is the state shared by the test, its churners and its checks.
type chaos struct {
	t    *testing.T
	d    *framework.Daemon
	e    *ctrEnv
	rt   runtimeapi.RuntimeServiceClient // on a connection of the test's own, which reconnects across restarts
	logs string

	mu         sync.Mutex
	podIDs     map[string]bool            // every pod ID the test saw
	unexpected []string                   // errors the daemon answered with during the churn
	tolerated  map[string]int             // transport errors (daemon down) by RPC
	durations  map[string][]time.Duration // of the churn's successful RPCs
	cycles     int                        // churn cycles completed without interruption
	interrupts int                        // churn cycles cut off by a kill
}

func (c *chaos) sawPod(id string) {
	if id == "" {
		return
	}
	c.mu.Lock()
	c.podIDs[id] = true
	c.mu.Unlock()
}

// took records how long a successful churn RPC took.
func (c *chaos) took(rpc string, d time.Duration) {
	c.mu.Lock()
	c.durations[rpc] = append(c.durations[rpc], d)
	c.mu.Unlock()
}

// durationSummary is the median and maximum of each churn RPC, for the log.
func (c *chaos) durationSummary() string {
	var out []string
	for _, rpc := range slices.Sorted(maps.Keys(c.durations)) {
		ds := slices.Clone(c.durations[rpc])
		slices.Sort(ds)
		out = append(out, fmt.Sprintf("%s %d× median %v max %v", rpc, len(ds),
			ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond)))
	}
	return strings.Join(out, "; ")
}

// call runs one RPC with a timeout, waiting for the connection to be ready
// (the daemon may be restarting) rather than failing at once.
func call[T any](ctx context.Context, fn func(context.Context, ...grpc.CallOption) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return fn(ctx, grpc.WaitForReady(true))
}

// isDaemonDown reports whether err is what a client sees while berth is
// killed or restarting (no answer from the daemon), rather than an answer.
func isDaemonDown(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		return true
	case codes.Unavailable:
		msg := st.Message()
		for _, s := range []string{"connection error", "error reading from server", "transport is closing",
			"connection reset", "connection refused", "EOF", "broken pipe", "closing"} {
			if strings.Contains(msg, s) {
				return true
			}
		}
	}
	return false
}

// note records an RPC error of the churn: tolerated when the daemon was
// down, unexpected when the daemon answered with it.
func (c *chaos) note(who, rpc string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if isDaemonDown(err) {
		if status.Code(err) == codes.DeadlineExceeded {
			rpc += " (deadline exceeded)" // shown apart: a daemon that hangs is suspect
		}
		c.tolerated[rpc]++
		return
	}
	c.unexpected = append(c.unexpected, fmt.Sprintf("%s: %s: %v", who, rpc, err))
}

// logAbout returns the daemon's log lines that mention any of ids (the last
// max of them), for failure messages.
func (c *chaos) logAbout(max int, ids ...string) string {
	var out []string
	for _, line := range strings.Split(c.d.Logs(), "\n") {
		for _, id := range ids {
			if id != "" && strings.Contains(line, id) {
				out = append(out, line)
				break
			}
		}
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return strings.Join(out, "\n")
}

func TestChaosDaemonKills(t *testing.T) {
	if os.Getenv("BERTH_INTEGRATION") != "1" {
		t.Skip("the chaos test runs with BERTH_INTEGRATION=1 (make test, make chaos)")
	}
	framework.SkipIfExternal(t)
	framework.RequireRoot(t)
	n := chaosEnvInt(t, "BERTH_CHAOS_PODS", 4)
	kills := chaosEnvInt(t, "BERTH_CHAOS_KILLS", 6)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BERTH_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BERTH_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("chaos: %d stable pods, %d kills, BERTH_CHAOS_SEED=%d", n, kills, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	started := time.Now()

	// A race-built berth (BERTH_RACE=1, as in make test) runs a race-built
	// helper for each container operation, and the race runtime sleeps a
	// second at every exit by default: that would make each stop take a
	// second, and the churn between kills next to nothing. Races are
	// still reported.
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	d := framework.StartDaemon(t, framework.DaemonOptions{Network: true})
	if path := os.Getenv("BERTH_CHAOS_LOG"); path != "" {
		// Registered after the daemon: runs before its teardown removes the log.
		t.Cleanup(func() { _ = os.WriteFile(path, []byte(d.Logs()), 0o644) })
	}
	conn, err := framework.Dial(d.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Images: d.Images, Daemon: d}
	e := &ctrEnv{tg: tg, reg: framework.StartRegistry(t, framework.RegistryOptions{}), logs: t.TempDir()}
	e.image = e.pushAndPull(t, "conformance/busybox:chaos", framework.ImageSpec{})
	c := &chaos{
		t: t, d: d, e: e, rt: runtimeapi.NewRuntimeServiceClient(conn), logs: e.logs,
		podIDs: map[string]bool{}, tolerated: map[string]int{}, durations: map[string][]time.Duration{},
	}

	stable := c.startStablePods(n)
	t.Logf("chaos: %d stable pods running after %v", n, time.Since(started).Round(time.Millisecond))

	// The churn: pods made and removed all along, cut off by the kills.
	soft, stopChurn := context.WithCancel(context.Background())
	hard, abort := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stopChurn(); abort(); wg.Wait() }) // on a t.Fatal: before the daemon's teardown
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.churn(soft, hard, w, rand.New(rand.NewPCG(seed, uint64(w)+1)))
		}()
	}

	for k := 1; k <= kills; k++ {
		time.Sleep(time.Duration(300+rng.IntN(1700)) * time.Millisecond) // a random moment of the churn
		pid := d.Pid()
		if err := d.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = d.Wait(time.Minute)
		if !d.Exited() {
			t.Fatalf("berth (pid %d) did not die of SIGKILL", pid)
		}
		restartAt := time.Now()
		d.Restart(t)
		t.Logf("chaos: at %v kill %d/%d of pid %d; pid %d answers after %v", restartAt.Sub(started).Round(time.Millisecond),
			k, kills, pid, d.Pid(), time.Since(restartAt).Round(time.Millisecond))
		// What kubelet's relist would see now: every stable pod ready and
		// its container running. Seeing one exited, kubelet would restart it.
		c.checkStableListed(stable, fmt.Sprintf("after restart %d", k))
	}

	stopChurn()
	wg.Wait()
	c.mu.Lock()
	t.Logf("chaos: at %v the churn has stopped: %d full cycles, %d cut off by kills; RPCs failed while berth was down: %v",
		time.Since(started).Round(time.Millisecond), c.cycles, c.interrupts, c.tolerated)
	t.Logf("chaos: churn RPCs that succeeded: %s", c.durationSummary())
	for _, u := range c.unexpected {
		t.Errorf("churn: the daemon answered an RPC with an error: %s", u)
	}
	c.mu.Unlock()

	c.checkStable(stable)
	c.checkAllocations(stable)
	c.checkListed(stable)
	t.Logf("chaos: at %v the stable pods are checked; removing them", time.Since(started).Round(time.Millisecond))
	c.removeStable(stable)
	t.Logf("chaos: at %v every pod is removed", time.Since(started).Round(time.Millisecond))
	c.checkNothingLeft()
	t.Logf("chaos: done in %v", time.Since(started).Round(time.Millisecond))
}

// counterCmd logs 1, 2, 3, ... one line every 10 ms. It waits with the
// shell's own read timeout on a FIFO nobody writes to, not with sleep:
// a fork and exec per line in each of 30 pods would take a small node's
// CPUs from the daemon under test.
var counterCmd = []string{"sh", "-c", "mkfifo /counter.fifo && exec 3<>/counter.fifo && " +
	"i=0; while true; do i=$((i+1)); echo $i; read -t 0.01 x <&3; done"}

// startStablePods runs n pods with a counter container each, a few at a
// time, and waits until every counter has logged.
func (c *chaos) startStablePods(n int) []*stablePod {
	t := c.t
	pods := make([]*stablePod, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			pods[i], errs[i] = c.startStablePod(fmt.Sprintf("stable-%d", i), i%2 == 0)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		waitForCond(t, 30*time.Second, "log of "+p.name+" shows 3 lines", func() bool {
			nums, _ := counterLog(p.log)
			return len(nums) >= 3
		})
	}
	return pods
}

// ownPIDNamespaces gives a pod and its container a PID namespace each, as
// kubelet asks for pods without shareProcessNamespace (the CRI's zero value
// is one namespace per pod, with a holder process as its PID 1).
func ownPIDNamespaces(pod *runtimeapi.PodSandboxConfig, ctr *runtimeapi.ContainerConfig) {
	pod.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
	}
	ctr.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
	}
}

// startStablePod runs a stable pod; every other one shares a PID
// namespace among its containers (and so has a holder process).
func (c *chaos) startStablePod(name string, sharedPID bool) (*stablePod, error) {
	ctx := context.Background()
	cfg := podConfig(name)
	cfg.Labels["chaos"] = "stable"
	cfg.LogDirectory = filepath.Join(c.logs, name)
	ctr := c.e.ctrConfig("counter", counterCmd...)
	if !sharedPID {
		ownPIDNamespaces(cfg, ctr)
	}
	run, err := c.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return nil, fmt.Errorf("RunPodSandbox(%s): %w", name, err)
	}
	p := &stablePod{name: name, id: run.PodSandboxId}
	c.sawPod(p.id)
	st, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id})
	if err != nil {
		return nil, fmt.Errorf("PodSandboxStatus(%s): %w", name, err)
	}
	if p.ip = st.GetStatus().GetNetwork().GetIp(); p.ip == "" {
		return nil, fmt.Errorf("pod %s (%s) has no IP", name, p.id)
	}
	cr, err := c.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: p.id, Config: ctr, SandboxConfig: cfg,
	})
	if err != nil {
		return nil, fmt.Errorf("CreateContainer(%s): %w", name, err)
	}
	p.ctrID = cr.ContainerId
	if _, err := c.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: p.ctrID}); err != nil {
		return nil, fmt.Errorf("StartContainer(%s): %w", name, err)
	}
	p.log = filepath.Join(cfg.LogDirectory, "counter", "0.log")
	return p, nil
}

// churn makes and removes pods, with a container (sometimes exec'd into),
// until soft is done. A cycle cut off by a kill is cleaned up as kubelet
// would: re-list what the pod attempt left and stop and remove it until
// that succeeds. hard ends everything (the test failed elsewhere).
func (c *chaos) churn(soft, hard context.Context, w int, rng *rand.Rand) {
	for i := 0; soft.Err() == nil && hard.Err() == nil; i++ {
		who := fmt.Sprintf("churner %d cycle %d", w, i)
		cfg := podConfig(fmt.Sprintf("churn-%d-%d", w, i))
		cfg.Labels["chaos"] = "churn"
		cfg.Labels["chaos-uid"] = cfg.Metadata.Uid
		cfg.LogDirectory = filepath.Join(c.logs, cfg.Metadata.Name)
		ctr := c.e.ctrConfig("churn", "sh", "-c", `trap "exit 0" TERM; echo ready; while true; do sleep 0.05; done`)
		if rng.IntN(2) == 0 {
			ownPIDNamespaces(cfg, ctr)
		}
		if c.churnCycle(hard, who, cfg, ctr, rng) {
			c.mu.Lock()
			c.cycles++
			c.mu.Unlock()
			continue
		}
		c.mu.Lock()
		c.interrupts++
		c.mu.Unlock()
		c.cleanupAttempt(hard, who, cfg.Metadata.Uid)
	}
}

// churnCycle runs one pod through its life; false if an RPC failed.
func (c *chaos) churnCycle(ctx context.Context, who string, cfg *runtimeapi.PodSandboxConfig, ctr *runtimeapi.ContainerConfig, rng *rand.Rand) bool {
	rt := c.rt
	step := func(rpc string, fn func(context.Context, ...grpc.CallOption) error) bool {
		start := time.Now()
		_, err := call(ctx, func(ctx context.Context, o ...grpc.CallOption) (struct{}, error) { return struct{}{}, fn(ctx, o...) })
		if err != nil {
			c.note(who, rpc, err)
			return false
		}
		c.took(rpc, time.Since(start))
		return true
	}
	var podID, id string
	if !step("RunPodSandbox", func(ctx context.Context, o ...grpc.CallOption) error {
		r, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg}, o...)
		podID = r.GetPodSandboxId()
		return err
	}) {
		return false
	}
	c.sawPod(podID)
	if !step("CreateContainer", func(ctx context.Context, o ...grpc.CallOption) error {
		r, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: ctr, SandboxConfig: cfg}, o...)
		id = r.GetContainerId()
		return err
	}) {
		return false
	}
	if !step("StartContainer", func(ctx context.Context, o ...grpc.CallOption) error {
		_, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}, o...)
		return err
	}) {
		return false
	}
	if rng.IntN(2) == 0 && !step("ExecSync", func(ctx context.Context, o ...grpc.CallOption) error {
		r, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"echo", "chaos"}, Timeout: 10}, o...)
		if err == nil && (r.ExitCode != 0 || string(r.Stdout) != "chaos\n") {
			c.note(who, "ExecSync", fmt.Errorf("exit %d, stdout %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr))
		}
		return err
	}) {
		return false
	}
	// Stopped once it handles SIGTERM (else the stop waits out its timeout).
	logPath := filepath.Join(cfg.LogDirectory, ctr.LogPath)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if b, _ := os.ReadFile(logPath); bytes.Contains(b, []byte(" ready\n")) {
			break
		}
		if time.Now().After(deadline) {
			c.note(who, "StartContainer", fmt.Errorf("container %s never logged that it started, in %s", id, logPath))
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return step("StopContainer", func(ctx context.Context, o ...grpc.CallOption) error {
		_, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 2}, o...)
		return err
	}) && step("RemoveContainer", func(ctx context.Context, o ...grpc.CallOption) error {
		_, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}, o...)
		return err
	}) && step("StopPodSandbox", func(ctx context.Context, o ...grpc.CallOption) error {
		_, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}, o...)
		return err
	}) && step("RemovePodSandbox", func(ctx context.Context, o ...grpc.CallOption) error {
		_, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}, o...)
		return err
	})
}

// cleanupAttempt removes whatever a cut-off cycle left of the pod with
// kubelet's uid, retrying until it is all gone (or ctx ends).
func (c *chaos) cleanupAttempt(ctx context.Context, who, uid string) {
	rt := c.rt
	deadline := time.Now().Add(3 * time.Minute)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if time.Now().After(deadline) {
			c.mu.Lock()
			c.unexpected = append(c.unexpected, fmt.Sprintf("%s: pod uid %s still not cleaned up after 3 minutes", who, uid))
			c.mu.Unlock()
			return
		}
		if attempt > 0 {
			time.Sleep(50 * time.Millisecond) // the churn paces its retries
		}
		list, err := call(ctx, func(ctx context.Context, o ...grpc.CallOption) (*runtimeapi.ListPodSandboxResponse, error) {
			return rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
				LabelSelector: map[string]string{"chaos-uid": uid},
			}}, o...)
		})
		if err != nil {
			c.note(who+" cleanup", "ListPodSandbox", err)
			continue
		}
		if len(list.Items) == 0 {
			return
		}
		failed := false
		for _, sb := range list.Items {
			c.sawPod(sb.Id)
			if err := c.removePod(ctx, sb.Id, 2); err != nil {
				c.note(who+" cleanup of pod "+sb.Id, "cleanup", err)
				failed = true
			}
		}
		if !failed {
			// Listed again: only an empty list says it is all gone.
			continue
		}
	}
}

// removePod stops and removes a pod's containers, then the pod, as kubelet does.
func (c *chaos) removePod(ctx context.Context, podID string, stopTimeout int64) error {
	rt := c.rt
	ctrs, err := call(ctx, func(ctx context.Context, o ...grpc.CallOption) (*runtimeapi.ListContainersResponse, error) {
		return rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}}, o...)
	})
	if err != nil {
		return fmt.Errorf("ListContainers: %w", err)
	}
	for _, ctr := range ctrs.Containers {
		if _, err := call(ctx, func(ctx context.Context, o ...grpc.CallOption) (*runtimeapi.StopContainerResponse, error) {
			return rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctr.Id, Timeout: stopTimeout}, o...)
		}); err != nil {
			return fmt.Errorf("StopContainer(%s): %w", ctr.Id, err)
		}
		if _, err := call(ctx, func(ctx context.Context, o ...grpc.CallOption) (*runtimeapi.RemoveContainerResponse, error) {
			return rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctr.Id}, o...)
		}); err != nil {
			return fmt.Errorf("RemoveContainer(%s): %w", ctr.Id, err)
		}
	}
	if _, err := call(ctx, func(ctx context.Context, o ...grpc.CallOption) (*runtimeapi.StopPodSandboxResponse, error) {
		return rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}, o...)
	}); err != nil {
		return fmt.Errorf("StopPodSandbox: %w", err)
	}
	if _, err := call(ctx, func(ctx context.Context, o ...grpc.CallOption) (*runtimeapi.RemovePodSandboxResponse, error) {
		return rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}, o...)
	}); err != nil {
		return fmt.Errorf("RemovePodSandbox: %w", err)
	}
	return nil
}
