package conformance

// Mixed load: many clients creating, inspecting, exec'ing into, stopping
// and removing pods and containers at once, under the race detector in
// `make test`. Every error must be one the caller caused (none here), and
// the node is clean afterwards.

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// loadPodsEnv overrides how many pods TestMixedLoad runs (the durability
// issue's figure is 100; CI runs fewer).
const loadPodsEnv = "BERTH_LOAD_PODS"

func loadPodCount(t *testing.T) int {
	t.Helper()
	s := os.Getenv(loadPodsEnv)
	if s == "" {
		return 20
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 250 {
		t.Fatalf("%s=%q: want a pod count from 1 to 250", loadPodsEnv, s)
	}
	return n
}

func TestMixedLoad(t *testing.T) {
	r := newRecoveryEnv(t)
	n := loadPodCount(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const clients = 10
	conns := make([]runtimeapi.RuntimeServiceClient, clients)
	for i := range conns {
		conn, err := framework.Dial(r.d.Endpoint())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conns[i] = runtimeapi.NewRuntimeServiceClient(conn)
		if _, err := conns[i].Version(ctx, &runtimeapi.VersionRequest{}, grpc.WaitForReady(true)); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}

	// lifecycle runs one pod through every RPC a kubelet uses.
	lifecycle := func(c runtimeapi.RuntimeServiceClient, i int) error {
		podCfg := podConfig("load-" + strconv.Itoa(i))
		podCfg.LogDirectory = r.logs
		pod, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
		if err != nil {
			return fmt.Errorf("RunPodSandbox: %w", err)
		}
		cfg := r.ctrConfig("load-"+strconv.Itoa(i), "sh", "-c", "while true; do echo tick; sleep 0.05; done")
		ctr, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cfg, SandboxConfig: podCfg})
		if err != nil {
			return fmt.Errorf("CreateContainer: %w", err)
		}
		id := ctr.ContainerId
		if _, err := c.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			return fmt.Errorf("StartContainer: %w", err)
		}
		for range 3 {
			if _, err := c.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id}); err != nil {
				return fmt.Errorf("ContainerStatus: %w", err)
			}
			if _, err := c.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil {
				return fmt.Errorf("ListContainers: %w", err)
			}
			if _, err := c.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil {
				return fmt.Errorf("ListPodSandbox: %w", err)
			}
			if _, err := c.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id}); err != nil {
				return fmt.Errorf("ContainerStats: %w", err)
			}
			if _, err := c.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{}); err != nil {
				return fmt.Errorf("ListPodSandboxStats: %w", err)
			}
			resp, err := c.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"echo", "probe"}, Timeout: 30})
			if err != nil || string(resp.Stdout) != "probe\n" {
				return fmt.Errorf("ExecSync: %v, %v", resp, err)
			}
		}
		if _, err := c.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 5}); err != nil {
			return fmt.Errorf("StopContainer: %w", err)
		}
		if _, err := c.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			return fmt.Errorf("RemoveContainer: %w", err)
		}
		if _, err := c.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
			return fmt.Errorf("StopPodSandbox: %w", err)
		}
		if _, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
			return fmt.Errorf("RemovePodSandbox: %w", err)
		}
		return nil
	}

	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	// Lists keep being answered while the load runs: none may fail.
	listing, stopListing := context.WithCancel(ctx)
	var lists int
	var listErr error
	var lw sync.WaitGroup
	lw.Go(func() {
		for listing.Err() == nil {
			if _, err := conns[0].ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil {
				listErr = err
				return
			}
			lists++
		}
	})
	for _, c := range conns {
		wg.Go(func() {
			for i := range next {
				if err := lifecycle(c, i); err != nil {
					errs <- fmt.Errorf("pod %d: %w", i, err)
				}
			}
		})
	}
	wg.Wait()
	stopListing()
	lw.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if listErr != nil || lists == 0 {
		t.Errorf("ListContainers during the load: %d answered, error %v", lists, listErr)
	}
	if t.Failed() {
		t.Logf("daemon log:\n%s", r.d.Logs())
		return
	}
	nothingLeft(t, r.d, r.d.Network)
}
