package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// runLabel marks the bench's pods, so that only they are ever removed.
const runLabel = "berth-bench-run"

// rpcTimeout bounds every CRI call: far above any normal latency, below
// kubelet's own 2 minute default.
const rpcTimeout = 2 * time.Minute

// target is one runtime under test.
type target struct {
	name     string
	endpoint string
	sel      procSelector
	conn     *grpc.ClientConn
	rt       runtimeapi.RuntimeServiceClient
	img      runtimeapi.ImageServiceClient
	res      *Result
}

func dialTarget(name, endpoint string, sel procSelector) (*target, error) {
	conn, err := framework.Dial(endpoint)
	if err != nil {
		return nil, err
	}
	return &target{
		name: name, endpoint: endpoint, sel: sel, conn: conn,
		rt:  runtimeapi.NewRuntimeServiceClient(conn),
		img: runtimeapi.NewImageServiceClient(conn),
		res: &Result{Name: name, Endpoint: endpoint, DaemonPID: sel.DaemonPID, PerPodProcess: sel.Name,
			PodStartParts: map[string]Summary{}, Queries: map[string]Summary{}},
	}, nil
}

// podEnv is what every pod of a run shares.
type podEnv struct {
	runID string
	image string
	// logRoot holds each pod's log directory (kubelet's /var/log/pods).
	logRoot string
	// cgroupPrefix, if set, puts each pod in <prefix>/<target>/pod<uid>
	// (cgroupfs naming), as kubelet gives every pod its own cgroup.
	cgroupPrefix string
}

// pod is a pod the bench started: a sandbox with one sleeping container.
type pod struct {
	id, ctr string
	logDir  string
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// podConfigs are the sandbox and container configs of a pod as kubelet
// sends them for a plain pod: its own PID namespaces (kubelet's default),
// no host ports, no seccomp (kubelet's default without SeccompDefault).
func (t *target) podConfigs(env *podEnv, name string) (*runtimeapi.PodSandboxConfig, *runtimeapi.ContainerConfig, string) {
	uid := randomHex(8)
	logDir := filepath.Join(env.logRoot, t.name, name+"_"+uid)
	ns := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
	pc := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "berth-bench", Uid: uid},
		Hostname:     name,
		LogDirectory: logDir,
		Labels:       map[string]string{runLabel: env.runID, "app": name},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns},
		},
	}
	if env.cgroupPrefix != "" {
		pc.Linux.CgroupParent = env.cgroupPrefix + "/" + t.name + "/pod" + uid
	}
	cc := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "sleeper"},
		Image:    &runtimeapi.ImageSpec{Image: env.image},
		Command:  []string{"sleep", "1000000"},
		LogPath:  "sleeper/0.log",
		Labels:   map[string]string{runLabel: env.runID},
		Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: ns},
		},
	}
	return pc, cc, logDir
}

// startPod runs RunPodSandbox, CreateContainer and StartContainer, and
// returns the time of each. The pod's log directory is made first, untimed,
// as kubelet makes it.
func (t *target) startPod(ctx context.Context, env *podEnv, name string) (*pod, [3]time.Duration, error) {
	var took [3]time.Duration
	pc, cc, logDir := t.podConfigs(env, name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, took, err
	}
	p := &pod{logDir: logDir}
	call := func(i int, f func(ctx context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		defer cancel()
		start := time.Now()
		err := f(cctx)
		took[i] = time.Since(start)
		return err
	}
	if err := call(0, func(ctx context.Context) error {
		r, err := t.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
		if err == nil {
			p.id = r.PodSandboxId
		}
		return err
	}); err != nil {
		return nil, took, fmt.Errorf("%s: RunPodSandbox: %w", t.name, err)
	}
	if err := call(1, func(ctx context.Context) error {
		r, err := t.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cc, SandboxConfig: pc})
		if err == nil {
			p.ctr = r.ContainerId
		}
		return err
	}); err != nil {
		return p, took, fmt.Errorf("%s: CreateContainer: %w", t.name, err)
	}
	if err := call(2, func(ctx context.Context) error {
		_, err := t.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: p.ctr})
		return err
	}); err != nil {
		return p, took, fmt.Errorf("%s: StartContainer: %w", t.name, err)
	}
	return p, took, nil
}

// teardownPod stops and removes the container (timeout 0: busybox sleep
// as PID 1 ignores SIGTERM, so a grace period would only measure itself),
// then stops and removes the sandbox. Removing the log directory after it
// is not timed.
func (t *target) teardownPod(ctx context.Context, p *pod) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	start := time.Now()
	if p.ctr != "" {
		if _, err := t.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: p.ctr, Timeout: 0}); err != nil {
			return 0, fmt.Errorf("%s: StopContainer: %w", t.name, err)
		}
		if _, err := t.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: p.ctr}); err != nil {
			return 0, fmt.Errorf("%s: RemoveContainer: %w", t.name, err)
		}
	}
	if _, err := t.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil {
		return 0, fmt.Errorf("%s: StopPodSandbox: %w", t.name, err)
	}
	if _, err := t.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
		return 0, fmt.Errorf("%s: RemovePodSandbox: %w", t.name, err)
	}
	took := time.Since(start)
	os.RemoveAll(p.logDir)
	return took, nil
}

// removeRunPods removes every pod of this run that the runtime still has
// (after a failure or an interrupt); other pods are never touched.
func (t *target) removeRunPods(runID string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	list, err := t.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{runLabel: runID}},
	})
	if err != nil {
		return fmt.Errorf("%s: ListPodSandbox: %w", t.name, err)
	}
	var firstErr error
	for _, sb := range list.Items {
		if _, err := t.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s: StopPodSandbox %s: %w", t.name, sb.Id, err)
		}
		if _, err := t.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s: RemovePodSandbox %s: %w", t.name, sb.Id, err)
		}
	}
	return firstErr
}

// parallel runs n jobs on workers goroutines and returns each job's
// duration and the first error (after which no new job starts).
func parallel(n, workers int, job func(i int) (time.Duration, error)) ([]time.Duration, error) {
	var (
		mu       sync.Mutex
		next     int
		took     []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next >= n || firstErr != nil {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				d, err := job(i)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					took = append(took, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return took, firstErr
}
