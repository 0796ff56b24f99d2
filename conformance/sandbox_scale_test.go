package conformance

// Many pods at once, from many clients, on a berth started by the suite:
// after they are all removed the node is as before.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// scalePodsEnv overrides how many pods TestManyPodsLeaveNothingBehind runs.
const scalePodsEnv = "BERTH_SCALE_PODS"

const (
	scaleClients = 10
	// Every scaleHostPortEvery-th pod maps a host port, so portmap's
	// iptables work runs concurrently too and the rule check has rules to
	// miss.
	scaleHostPortEvery = 5
)

func scalePodCount(t *testing.T) int {
	t.Helper()
	s := os.Getenv(scalePodsEnv)
	if s == "" {
		return 50
	}
	n, err := strconv.Atoi(s)
	// The test network is a /24: 253 pod addresses.
	if err != nil || n < 1 || n > 250 {
		t.Fatalf("%s=%q: want a pod count from 1 to 250", scalePodsEnv, s)
	}
	return n
}

func TestManyPodsLeaveNothingBehind(t *testing.T) {
	d := ownPodDaemon(t)
	n := scalePodCount(t)
	netName := podNetworkName(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	clients := make([]runtimeapi.RuntimeServiceClient, scaleClients)
	for i := range clients {
		conn, err := framework.Dial(d.Endpoint())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		clients[i] = runtimeapi.NewRuntimeServiceClient(conn)
		// framework.Dial gives a connection attempt only its backoff
		// delay (10 ms at first) to complete the HTTP/2 handshake, which
		// a loaded machine can miss, failing the RPC with Unavailable.
		// Let each client connect before the pods are counted on it.
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = clients[i].Version(wctx, &runtimeapi.VersionRequest{}, grpc.WaitForReady(true))
		wcancel()
		if err != nil {
			t.Fatalf("client %d: Version: %v", i, err)
		}
	}
	// each runs fn(i) for i in [0, n) over all clients, scaleClients at a time.
	each := func(fn func(c runtimeapi.RuntimeServiceClient, i int) error) []error {
		var next atomic.Int64
		errs := make([]error, n)
		var wg sync.WaitGroup
		for _, c := range clients {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
					errs[i] = fn(c, i)
				}
			})
		}
		wg.Wait()
		return errs
	}

	// A distinct free host port for every scaleHostPortEvery-th pod.
	ports := map[int]int32{}
	taken := map[int32]bool{}
	for i := 0; i < n; i += scaleHostPortEvery {
		p := pickHostPort(t)
		for taken[p] {
			p = pickHostPort(t)
		}
		ports[i], taken[p] = p, true
	}

	ids := make([]string, n)
	t.Cleanup(func() { // only for a test that stopped half-way
		for _, id := range ids {
			if id != "" {
				_, _ = d.Runtime.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
			}
		}
	})
	start := time.Now()
	errs := each(func(c runtimeapi.RuntimeServiceClient, i int) error {
		cfg := podConfig("scale-" + strconv.Itoa(i))
		if p, ok := ports[i]; ok {
			cfg.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: p}}
		}
		resp, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			return fmt.Errorf("RunPodSandbox(%s): %w", cfg.Metadata.Name, err)
		}
		ids[i] = resp.PodSandboxId
		return nil
	})
	failOnErrors(t, errs)
	t.Logf("%d pods running after %v (%d clients, %d with a host port)", n, time.Since(start).Round(time.Millisecond), scaleClients, len(ports))

	// What is about to be checked for absence is there now, so the checks
	// below cannot pass for looking in the wrong place.
	list, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(list.Items) != n {
		t.Fatalf("ListPodSandbox: %d pods (%v), want %d", len(list.GetItems()), err, n)
	}
	if ips := d.Network.AllocatedIPs(t); len(ips) != n {
		t.Fatalf("%d IPs allocated for %d pods: %v", len(ips), n, ips)
	}
	if veths := bridgePorts(t, d.Network.Bridge); len(veths) != n {
		t.Fatalf("%d links on bridge %s for %d pods", len(veths), d.Network.Bridge, n)
	}
	for _, id := range ids {
		if len(podCgroupDirs(id)) == 0 {
			t.Fatalf("no cgroup dir berth-pod-%s found for a running pod", id)
		}
	}
	if pins := nsfsMountsUnder(t, d.State); len(pins) < n {
		t.Fatalf("%d nsfs mounts under %s for %d pods", len(pins), d.State, n)
	}
	var portmapped []string
	for i := range ports {
		portmapped = append(portmapped, ids[i])
	}
	if rules := iptablesLines(t, "nat", portmapped...); len(dnatChainsIn(rules)) != len(ports) {
		t.Fatalf("%d pods with host ports, DNAT chains %v", len(ports), dnatChainsIn(rules))
	}

	start = time.Now()
	errs = each(func(c runtimeapi.RuntimeServiceClient, i int) error {
		if _, err := c.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: ids[i]}); err != nil {
			return fmt.Errorf("StopPodSandbox(%s): %w", ids[i], err)
		}
		if _, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: ids[i]}); err != nil {
			return fmt.Errorf("RemovePodSandbox(%s): %w", ids[i], err)
		}
		return nil
	})
	failOnErrors(t, errs)
	t.Logf("%d pods stopped and removed after %v", n, time.Since(start).Round(time.Millisecond))

	if list, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil || len(list.Items) != 0 {
		t.Errorf("ListPodSandbox after removing all: %d pods (%v)", len(list.GetItems()), err)
	}
	if mounts, err := framework.MountsUnder(d.State); err != nil || len(mounts) != 0 {
		t.Errorf("mounts left under %s: %v (%v)", d.State, mounts, err)
	}
	if left, err := os.ReadDir(filepath.Join(d.State, "sandboxes")); err != nil || len(left) != 0 {
		t.Errorf("left in %s/sandboxes: %v (%v)", d.State, dirNames(left), err)
	}
	if left, err := os.ReadDir(filepath.Join(d.Root, "sandboxes")); err == nil && len(left) != 0 {
		t.Errorf("sandbox records left in %s/sandboxes: %v", d.Root, dirNames(left))
	}
	if left, err := os.ReadDir(filepath.Join(d.Root, "network", "cni-cache", "results")); err == nil && len(left) != 0 {
		t.Errorf("CNI cache entries left: %v", dirNames(left))
	}
	for _, id := range ids {
		if dirs := podCgroupDirs(id); len(dirs) != 0 {
			t.Errorf("pod cgroups left: %v", dirs)
		}
	}
	if ips := d.Network.AllocatedIPs(t); len(ips) != 0 {
		t.Errorf("IPs still allocated: %v", ips)
	}
	// A pod's veth goes with CNI DEL; polled in case it only went with
	// its namespace, which the kernel cleans up asynchronously.
	polls := 0
	waitFor(t, func() bool { polls++; return len(bridgePorts(t, d.Network.Bridge)) == 0 })
	if polls > 1 {
		t.Logf("veths left the bridge only after %d polls", polls)
	}
	var chains []string
	for i := range ports {
		chains = append(chains, portmapDNATChain(netName, ids[i]))
	}
	if rules := iptablesLines(t, "", append(chains, ids...)...); len(rules) != 0 {
		t.Errorf("iptables rules mention the removed pods:\n%s", strings.Join(rules, "\n"))
	}
	for _, dir := range []string{d.State, d.Root} {
		if pins := nsfsMountsUnder(t, dir); len(pins) != 0 {
			t.Errorf("namespace pins left under %s: %v", dir, pins)
		}
	}
}

func failOnErrors(t *testing.T, errs []error) {
	t.Helper()
	failed := 0
	for _, err := range errs {
		if err != nil {
			if failed < 5 {
				t.Error(err)
			}
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d calls failed", failed, len(errs))
	}
}

func dirNames(es []os.DirEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// bridgePorts lists the links enslaved to bridge (the pods' host-side veths).
func bridgePorts(t testing.TB, bridge string) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show", "master", bridge).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show master %s: %v: %s", bridge, err, out)
	}
	var links []string
	for l := range strings.Lines(string(out)) {
		if f := strings.Fields(l); len(f) > 1 {
			links = append(links, strings.TrimSuffix(f[1], ":"))
		}
	}
	return links
}

// podCgroupDirs finds the pod's berth-owned cgroup (pods without a cgroup
// parent go below /berth) in every v1 hierarchy, the hybrid unified one and
// a pure v2 mount.
func podCgroupDirs(id string) []string {
	var out []string
	for _, pattern := range []string{"/sys/fs/cgroup/*/berth/berth-pod-" + id, "/sys/fs/cgroup/berth/berth-pod-" + id} {
		m, _ := filepath.Glob(pattern)
		out = append(out, m...)
	}
	return out
}

// nsfsMountsUnder lists the namespace pins (nsfs mounts) this process sees
// at or below dir.
func nsfsMountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "id parent maj:min root mountpoint opts [optional...] - fstype source super"
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if !ok || len(pf) < 5 || len(sf) < 1 || sf[0] != "nsfs" {
			continue
		}
		mp := strings.ReplaceAll(pf[4], `\040`, " ")
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
