package conformance

// The chaos test's checks: what must hold of the stable pods, the IP
// allocations and the host after berth was killed and restarted.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// checkStableListed checks what a relist shows of the stable pods: each
// sandbox ready, each container running, under the same IDs.
func (c *chaos) checkStableListed(stable []*stablePod, when string) {
	t := c.t
	ctx := context.Background()
	pods, err := call(ctx, func(ctx context.Context, o ...grpc.CallOption) (*runtimeapi.ListPodSandboxResponse, error) {
		return c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}, o...)
	})
	if err != nil {
		t.Fatalf("%s: ListPodSandbox: %v", when, err)
	}
	ctrs, err := call(ctx, func(ctx context.Context, o ...grpc.CallOption) (*runtimeapi.ListContainersResponse, error) {
		return c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{}, o...)
	})
	if err != nil {
		t.Fatalf("%s: ListContainers: %v", when, err)
	}
	podState := map[string]runtimeapi.PodSandboxState{}
	for _, p := range pods.Items {
		podState[p.Id] = p.State
	}
	ctrState := map[string]runtimeapi.ContainerState{}
	for _, ct := range ctrs.Containers {
		ctrState[ct.Id] = ct.State
	}
	for _, p := range stable {
		if st, ok := podState[p.id]; !ok || st != runtimeapi.PodSandboxState_SANDBOX_READY {
			t.Errorf("%s: stable pod %s (%s) listed %v (present %v), want READY\n--- berth log about it ---\n%s",
				when, p.name, p.id, st, ok, c.logAbout(40, p.id))
		}
		if st, ok := ctrState[p.ctrID]; !ok || st != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("%s: container %s of stable pod %s listed %v (present %v), want RUNNING\n--- berth log about it ---\n%s",
				when, p.ctrID, p.name, st, ok, c.logAbout(40, p.id, p.ctrID))
		}
	}
}

// checkStable: every stable pod is ready with its IP, its container runs
// under the same ID, and its log counts on without a gap or a duplicate.
func (c *chaos) checkStable(stable []*stablePod) {
	t := c.t
	ctx := context.Background()
	for _, p := range stable {
		ps, err := call(ctx, func(ctx context.Context, o ...grpc.CallOption) (*runtimeapi.PodSandboxStatusResponse, error) {
			return c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id}, o...)
		})
		if err != nil {
			t.Errorf("stable pod %s (%s): PodSandboxStatus: %v\n--- berth log about it ---\n%s", p.name, p.id, err, c.logAbout(40, p.id))
			continue
		}
		if st := ps.Status; st.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.GetNetwork().GetIp() != p.ip {
			t.Errorf("stable pod %s (%s): %v with IP %q, want READY with %q\n--- berth log about it ---\n%s",
				p.name, p.id, st.State, st.GetNetwork().GetIp(), p.ip, c.logAbout(40, p.id))
		}
		cs, err := call(ctx, func(ctx context.Context, o ...grpc.CallOption) (*runtimeapi.ContainerStatusResponse, error) {
			return c.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: p.ctrID}, o...)
		})
		if err != nil {
			t.Errorf("stable pod %s: ContainerStatus(%s): %v\n--- berth log about it ---\n%s", p.name, p.ctrID, err, c.logAbout(40, p.id, p.ctrID))
			continue
		}
		if st := cs.Status; st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("stable pod %s: container %s is %v (exit %d, reason %q, message %q), want RUNNING\n--- berth log about it ---\n%s",
				p.name, p.ctrID, st.State, st.ExitCode, st.Reason, st.Message, c.logAbout(40, p.id, p.ctrID))
		}
		nums, err := counterLog(p.log)
		if err != nil {
			t.Errorf("stable pod %s: log %s: %v\n--- berth log about it ---\n%s", p.name, p.log, err, c.logAbout(40, p.id, p.ctrID))
			continue
		}
		// Still logging now, after the last restart.
		waitForCond(t, 30*time.Second, "log of "+p.name+" grows after the kills", func() bool {
			more, err := counterLog(p.log)
			return err == nil && len(more) > len(nums)
		})
		if _, err := counterLog(p.log); err != nil {
			t.Errorf("stable pod %s: log %s: %v", p.name, p.log, err)
		}
	}
}

// counterLog reads a counter's CRI log and returns its numbers, checking
// that they are 1, 2, 3, ... A line still being written at the end (no
// newline yet, or a partial line without its end) is left out.
func counterLog(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, '\n')
	if i < 0 {
		return nil, nil
	}
	var nums []int
	var pending strings.Builder
	for i, line := range strings.Split(string(b[:i]), "\n") {
		parts := strings.SplitN(line, " ", 4)
		if len(parts) < 3 || (parts[2] != "F" && parts[2] != "P") {
			return nums, fmt.Errorf("line %d: malformed CRI log line %q", i+1, line)
		}
		if _, err := time.Parse(time.RFC3339Nano, parts[0]); err != nil || parts[1] != "stdout" {
			return nums, fmt.Errorf("line %d: malformed CRI log line %q", i+1, line)
		}
		if len(parts) == 4 {
			pending.WriteString(parts[3])
		}
		if parts[2] == "P" {
			continue
		}
		text := pending.String()
		pending.Reset()
		v, err := strconv.Atoi(text)
		if err != nil {
			return nums, fmt.Errorf("line %d: %q is not a number", i+1, text)
		}
		if want := len(nums) + 1; v != want {
			kind := "a gap"
			if v < want {
				kind = "a duplicate"
			}
			return nums, fmt.Errorf("line %d: %d after %d: %s in the log", i+1, v, want-1, kind)
		}
		nums = append(nums, v)
	}
	return nums, nil
}

// ipamAllocations maps each IP host-local holds in the test network to the
// container (pod) ID it is recorded for.
func (c *chaos) ipamAllocations() map[string]string {
	out := map[string]string{}
	_ = filepath.WalkDir(c.d.Network.IPStore, func(path string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return nil
		}
		name := de.Name()
		if name == "lock" || strings.HasPrefix(name, "last_reserved_ip") {
			return nil
		}
		b, _ := os.ReadFile(path)
		owner, _, _ := strings.Cut(string(b), "\r\n")
		out[name] = strings.TrimSpace(owner)
		return nil
	})
	return out
}

// checkAllocations: host-local holds exactly the stable pods' IPs, each
// for its own pod: nothing leaked from the churn.
func (c *chaos) checkAllocations(stable []*stablePod) {
	t := c.t
	got := c.ipamAllocations()
	want := map[string]string{}
	for _, p := range stable {
		want[p.ip] = p.id
	}
	for ip, owner := range got {
		if id, ok := want[ip]; !ok {
			t.Errorf("IP %s is still allocated (to %s) though no live pod has it: leaked\n--- berth log about its pod ---\n%s",
				ip, owner, c.logAbout(60, owner))
		} else if owner != id {
			t.Errorf("IP %s of stable pod %s is allocated to %s\n--- berth log ---\n%s", ip, id, owner, c.logAbout(60, id, owner))
		}
	}
	for ip, id := range want {
		if _, ok := got[ip]; !ok {
			t.Errorf("IP %s of the live pod %s is no longer allocated by host-local (released while in use)\n--- berth log about it ---\n%s",
				ip, id, c.logAbout(60, id))
		}
	}
}

// checkListed: the daemon lists the stable pods and their containers and
// nothing else (the churn cleaned up after itself).
func (c *chaos) checkListed(stable []*stablePod) {
	t := c.t
	ctx := context.Background()
	pods, err := call(ctx, func(ctx context.Context, o ...grpc.CallOption) (*runtimeapi.ListPodSandboxResponse, error) {
		return c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}, o...)
	})
	if err != nil {
		t.Fatalf("ListPodSandbox: %v", err)
	}
	ctrs, err := call(ctx, func(ctx context.Context, o ...grpc.CallOption) (*runtimeapi.ListContainersResponse, error) {
		return c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{}, o...)
	})
	if err != nil {
		t.Fatalf("ListContainers: %v", err)
	}
	var wantPods, wantCtrs, gotPods, gotCtrs []string
	for _, p := range stable {
		wantPods, wantCtrs = append(wantPods, p.id), append(wantCtrs, p.ctrID)
	}
	for _, p := range pods.Items {
		c.sawPod(p.Id)
		gotPods = append(gotPods, p.Id)
		if !slices.Contains(wantPods, p.Id) {
			t.Errorf("pod %s (%s, %v) is listed: left over by the churn\n--- berth log about it ---\n%s",
				p.Id, p.GetMetadata().GetName(), p.State, c.logAbout(40, p.Id))
		}
	}
	for _, ct := range ctrs.Containers {
		gotCtrs = append(gotCtrs, ct.Id)
		if !slices.Contains(wantCtrs, ct.Id) {
			t.Errorf("container %s (%s, %v, pod %s) is listed: left over by the churn\n--- berth log about it ---\n%s",
				ct.Id, ct.GetMetadata().GetName(), ct.State, ct.PodSandboxId, c.logAbout(40, ct.Id, ct.PodSandboxId))
		}
	}
	sort.Strings(wantPods)
	sort.Strings(gotPods)
	sort.Strings(wantCtrs)
	sort.Strings(gotCtrs)
	if !slices.Equal(wantPods, gotPods) || !slices.Equal(wantCtrs, gotCtrs) {
		t.Errorf("listed pods %v and containers %v, want pods %v and containers %v", gotPods, gotCtrs, wantPods, wantCtrs)
	}
}

// removeStable stops and removes the stable pods as kubelet would: each
// pod on its own, several at a time.
func (c *chaos) removeStable(stable []*stablePod) {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, p := range stable {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := c.removePod(context.Background(), p.id, 0); err != nil {
				c.t.Errorf("remove stable pod %s (%s): %v\n--- berth log about it ---\n%s", p.name, p.id, err, c.logAbout(40, p.id))
			}
		}()
	}
	wg.Wait()
}

var (
	// podIDInLog matches the pod IDs berth logged (also of pods whose
	// RunPodSandbox a kill cut off: their rollback names them).
	podIDInLog = regexp.MustCompile(`pod_id=([0-9a-f]{64})`)
	// anID finds a pod or container ID in a file name.
	anID = regexp.MustCompile(`[0-9a-f]{64}`)
)

// checkNothingLeft: with every pod removed, berth holds nothing on the
// node: no mount, no pin, no pod directory or record, no pod cgroup, no
// monitor or holder, no IP, no CNI cache entry.
func (c *chaos) checkNothingLeft() {
	t := c.t
	d := c.d
	for _, dir := range []string{d.Root, d.State} {
		if mounts, err := framework.MountsUnder(dir); err != nil || len(mounts) != 0 {
			t.Errorf("mounts left under %s: %v %v", dir, mounts, err)
		}
	}
	for _, dir := range []string{
		filepath.Join(d.State, "sandboxes"), filepath.Join(d.State, "containers"),
		filepath.Join(d.Root, "sandboxes"), filepath.Join(d.Root, "containers"), filepath.Join(d.Root, "volumes"),
		filepath.Join(d.State, "cni-cache", "results"), filepath.Join(d.Root, "network", "cni-cache", "results"),
	} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			id := anID.FindString(e.Name())
			t.Errorf("%s left in %s (netns pins, pod files, records or CNI cache)\n--- berth log about it ---\n%s",
				e.Name(), dir, c.logAbout(40, id))
		}
	}
	if ips := c.ipamAllocations(); len(ips) != 0 {
		t.Errorf("host-local allocations left: %v", ips)
	}

	// Pod cgroups: berth-pod-<id> below berth's default parent, in every
	// hierarchy; only this daemon's pods count (other tests run berths too).
	ids := map[string]bool{}
	c.mu.Lock()
	for id := range c.podIDs {
		ids[id] = true
	}
	c.mu.Unlock()
	for _, m := range podIDInLog.FindAllStringSubmatch(d.Logs(), -1) {
		ids[m[1]] = true
	}
	var cgroups []string
	for _, pattern := range []string{"/sys/fs/cgroup/berth/berth-pod-*", "/sys/fs/cgroup/*/berth/berth-pod-*"} {
		matches, _ := filepath.Glob(pattern)
		for _, m := range matches {
			if ids[strings.TrimPrefix(filepath.Base(m), "berth-pod-")] {
				cgroups = append(cgroups, m)
			}
		}
	}
	for _, cg := range cgroups {
		id := strings.TrimPrefix(filepath.Base(cg), "berth-pod-")
		procs, _ := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
		t.Errorf("pod cgroup %s left (processes: %q)\n--- berth log about it ---\n%s", cg, strings.Fields(string(procs)), c.logAbout(40, id))
	}
	t.Logf("chaos: %d pod IDs checked for cgroups", len(ids))

	// Monitors and holders: processes with the state dir on their command
	// line, other than berth itself. Monitors end on Shutdown, which
	// RemovePodSandbox waits for; a moment is allowed for the last exits.
	var left []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		left = processesReferring(d.State, d.Pid())
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range left {
		t.Errorf("process left: %s", p)
	}
}

// processesReferring lists live processes (not zombies) whose command line
// names dir, except pid and this test process.
func processesReferring(dir string, except int) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || pid == except {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		out = append(out, fmt.Sprintf("%d: %s", pid, bytes.ReplaceAll(bytes.TrimRight(cmdline, "\x00"), []byte{0}, []byte{' '})))
	}
	return out
}

// waitForCond polls cond until it holds, failing the test after within
// (a bound against hanging, not a timing assertion).
func waitForCond(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for delay := time.Millisecond; !cond(); delay = min(2*delay, 100*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(delay)
	}
}
