package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// options are the knobs of a run (see the flags in main.go).
type options struct {
	iterations     int
	warmup         int
	concurrency    int
	concurrentPods int
	density        []int
	queries        int
	queryBudget    time.Duration
	pulls          int
	settle         time.Duration
}

// queryNames are the read RPCs timed at the largest density step: what
// kubelet's PLEG and stats collection call over and over, and Version, the
// floor of any CRI call (a gRPC round trip that does no work). The stats
// RPC comes last (see queries).
var queryNames = []string{"Version", "ListContainers", "ContainerStatus", "ListPodSandbox", "ListPodSandboxStats"}

// bench runs the phases on every target, interleaved: each phase runs on
// one runtime at a time (the other idle), and the order alternates so that
// neither always goes first while the machine's load drifts.
type bench struct {
	opts    options
	env     *podEnv
	targets []*target
	reg     *benchRegistry
	imgs    *benchImages
	log     io.Writer
	podSeq  int
}

// order is the targets rotated by i.
func (b *bench) order(i int) []*target {
	n := len(b.targets)
	out := make([]*target, 0, n)
	for k := range n {
		out = append(out, b.targets[(i+k)%n])
	}
	return out
}

func (b *bench) phase(t *target, name string) {
	l := loadAvg()
	t.res.Load = append(t.res.Load, PhaseLoad{Phase: name, LoadAvg: l})
	fmt.Fprintf(b.log, "[%s] %s: %s (load %s)\n", time.Now().Format("15:04:05"), t.name, name, l)
}

func (b *bench) nextName() string {
	b.podSeq++
	return "bench-" + strconv.Itoa(b.podSeq)
}

func (b *bench) run(ctx context.Context) error {
	steps := []func(context.Context) error{b.prepare, b.warmupPhase, b.sequential, b.concurrent, b.idleMemory, b.densityPhase, b.pullPhase}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// prepare waits until each runtime is ready and pulls the images (a
// sandbox image is pulled everywhere; runtimes without one ignore it).
func (b *bench) prepare(ctx context.Context) error {
	for _, t := range b.targets {
		v, err := t.rt.Version(ctx, &runtimeapi.VersionRequest{})
		if err != nil {
			return fmt.Errorf("%s: Version: %w", t.name, err)
		}
		t.res.RuntimeName, t.res.RuntimeVersion = v.RuntimeName, v.RuntimeVersion
		if err := waitReady(ctx, t); err != nil {
			return err
		}
		for _, ref := range []string{b.imgs.workload, b.imgs.pause} {
			if _, err := t.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
				return fmt.Errorf("%s: PullImage %s: %w", t.name, ref, err)
			}
		}
	}
	return nil
}

// waitReady waits up to a minute for RuntimeReady and NetworkReady
// (containerd loads its CNI config in the background).
func waitReady(ctx context.Context, t *target) error {
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := t.rt.Status(ctx, &runtimeapi.StatusRequest{})
		var notReady []string
		if err == nil {
			for _, c := range st.Status.GetConditions() {
				if !c.Status {
					notReady = append(notReady, c.Type+": "+c.Reason+" "+c.Message)
				}
			}
			if len(notReady) == 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not ready: %v %v", t.name, err, notReady)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// warmupPhase starts and removes a few pods untimed: the first pods pay
// for loading the CNI config, first heap growth and page cache.
func (b *bench) warmupPhase(ctx context.Context) error {
	for _, t := range b.targets {
		b.phase(t, "warm-up")
		for range b.opts.warmup {
			p, _, err := t.startPod(ctx, b.env, b.nextName())
			if err != nil {
				return err
			}
			if _, err := t.teardownPod(ctx, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// sequential starts and tears down one pod at a time, alternating runtimes
// pod by pod.
func (b *bench) sequential(ctx context.Context) error {
	type acc struct {
		start, teardown []time.Duration
		parts           [3][]time.Duration
	}
	accs := map[*target]*acc{}
	for _, t := range b.targets {
		accs[t] = &acc{}
		b.phase(t, "sequential")
	}
	for i := range b.opts.iterations {
		for _, t := range b.order(i) {
			p, parts, err := t.startPod(ctx, b.env, b.nextName())
			if err != nil {
				return err
			}
			a := accs[t]
			a.start = append(a.start, parts[0]+parts[1]+parts[2])
			for k := range parts {
				a.parts[k] = append(a.parts[k], parts[k])
			}
			d, err := t.teardownPod(ctx, p)
			if err != nil {
				return err
			}
			a.teardown = append(a.teardown, d)
		}
	}
	for t, a := range accs {
		t.res.PodStart = summarize(a.start)
		t.res.Teardown = summarize(a.teardown)
		for k, n := range []string{"RunPodSandbox", "CreateContainer", "StartContainer"} {
			t.res.PodStartParts[n] = summarize(a.parts[k])
		}
	}
	return nil
}

// startBatch starts n pods with the configured number of clients and
// returns them and each pod's start latency.
func (b *bench) startBatch(ctx context.Context, t *target, n int) ([]*pod, []time.Duration, error) {
	pods := make([]*pod, n)
	names := make([]string, n)
	for i := range names {
		names[i] = b.nextName()
	}
	took, err := parallel(n, b.opts.concurrency, func(i int) (time.Duration, error) {
		p, parts, err := t.startPod(ctx, b.env, names[i])
		pods[i] = p
		return parts[0] + parts[1] + parts[2], err
	})
	return slices.DeleteFunc(pods, func(p *pod) bool { return p == nil }), took, err
}

func (b *bench) teardownBatch(ctx context.Context, t *target, pods []*pod) ([]time.Duration, error) {
	return parallel(len(pods), b.opts.concurrency, func(i int) (time.Duration, error) {
		return t.teardownPod(ctx, pods[i])
	})
}

// concurrent starts pods with several clients at once, in two rounds per
// runtime (A B, then B A), and tears them down the same way.
func (b *bench) concurrent(ctx context.Context) error {
	const rounds = 2
	starts, teardowns := map[*target][]time.Duration{}, map[*target][]time.Duration{}
	for r := range rounds {
		n := b.opts.concurrentPods / rounds
		if r == rounds-1 {
			n = b.opts.concurrentPods - n*(rounds-1)
		}
		for _, t := range b.order(r) {
			b.phase(t, fmt.Sprintf("concurrent %d/%d", r+1, rounds))
			pods, took, err := b.startBatch(ctx, t, n)
			starts[t] = append(starts[t], took...)
			if err != nil {
				return err
			}
			took, err = b.teardownBatch(ctx, t, pods)
			teardowns[t] = append(teardowns[t], took...)
			if err != nil {
				return err
			}
		}
	}
	for _, t := range b.targets {
		t.res.PodStartConcurrent = summarize(starts[t])
		t.res.TeardownConcurrent = summarize(teardowns[t])
	}
	return nil
}

// idleMemory measures every runtime with none of the bench's pods, after
// the churn above (what a node's runtime looks like between pods).
func (b *bench) idleMemory(ctx context.Context) error {
	if err := sleepCtx(ctx, b.opts.settle); err != nil {
		return err
	}
	for _, t := range b.targets {
		b.phase(t, "memory, 0 pods")
		m, err := t.sel.sample()
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		t.res.MemoryIdle = &m
	}
	return nil
}

// densityPhase starts each batch size on one runtime at a time, measures
// memory once the pods are idle, times the read RPCs at the largest batch,
// and removes the pods.
func (b *bench) densityPhase(ctx context.Context) error {
	largest := slices.Max(b.opts.density)
	for si, n := range b.opts.density {
		for _, t := range b.order(si) {
			b.phase(t, fmt.Sprintf("start %d pods", n))
			start := time.Now()
			pods, _, err := b.startBatch(ctx, t, n)
			step := DensityStep{Pods: n}
			if err == nil {
				err = b.checkRunning(ctx, t, n)
				step.StartSeconds = time.Since(start).Seconds()
			}
			if err == nil {
				err = sleepCtx(ctx, b.opts.settle)
			}
			if err == nil {
				b.phase(t, fmt.Sprintf("memory, %d pods", n))
				step.Memory, err = t.sel.sample()
			}
			if err == nil && n == largest {
				b.phase(t, fmt.Sprintf("queries, %d pods", n))
				err = b.queries(ctx, t, pods)
			}
			if err != nil {
				return err
			}
			b.phase(t, fmt.Sprintf("remove %d pods", n))
			start = time.Now()
			if _, err := b.teardownBatch(ctx, t, pods); err != nil {
				return err
			}
			step.RemoveSeconds = time.Since(start).Seconds()
			t.res.Density = append(t.res.Density, step)
		}
	}
	return nil
}

// checkRunning confirms that the run's n containers all run.
func (b *bench) checkRunning(ctx context.Context, t *target, n int) error {
	list, err := t.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State:         &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
		LabelSelector: map[string]string{runLabel: b.env.runID},
	}})
	if err != nil {
		return fmt.Errorf("%s: ListContainers: %w", t.name, err)
	}
	if len(list.Containers) != n {
		return fmt.Errorf("%s: %d of %d containers running", t.name, len(list.Containers), n)
	}
	return nil
}

// queries times the read RPCs, unfiltered as kubelet's relist calls them,
// round-robin so that each sees the same conditions.
func (b *bench) queries(ctx context.Context, t *target, pods []*pod) error {
	took := map[string][]time.Duration{}
	calls := map[string]func() error{
		"Version": func() error {
			_, err := t.rt.Version(ctx, &runtimeapi.VersionRequest{})
			return err
		},
		"ListContainers": func() error {
			_, err := t.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			return err
		},
		"ContainerStatus": func() error {
			_, err := t.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: pods[rand.IntN(len(pods))].ctr})
			return err
		},
		"ListPodSandbox": func() error {
			_, err := t.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
			return err
		},
		"ListPodSandboxStats": func() error {
			_, err := t.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
			return err
		},
	}
	unsupported := map[string]bool{}
	spent := map[string]time.Duration{}
	// The cheap RPCs round-robin, then the stats alone: the garbage of a
	// stats call would otherwise be collected during the next cheap call,
	// which would then measure the GC of the runtime whose stats are
	// fast enough to be called often.
	for _, group := range [][]string{queryNames[:len(queryNames)-1], queryNames[len(queryNames)-1:]} {
		for range b.opts.queries {
			for _, q := range group {
				// A slow RPC (containerd 1.6's ListPodSandboxStats takes
				// seconds at 100 pods) stops at its budget, with enough
				// samples for a median.
				if unsupported[q] || spent[q] > b.opts.queryBudget && len(took[q]) >= 5 {
					continue
				}
				start := time.Now()
				err := calls[q]()
				d := time.Since(start)
				if status.Code(err) == codes.Unimplemented {
					unsupported[q] = true
					fmt.Fprintf(b.log, "%s: %s is not implemented; no figure\n", t.name, q)
					continue
				}
				if err != nil {
					return fmt.Errorf("%s: %s: %w", t.name, q, err)
				}
				took[q] = append(took[q], d)
				spent[q] += d
			}
		}
	}
	for q, d := range took {
		t.res.Queries[q] = summarize(d)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
