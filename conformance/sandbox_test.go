package conformance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// podConfig is a minimal pod sandbox config with a unique identity.
func podConfig(name string) *runtimeapi.PodSandboxConfig {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	uid := hex.EncodeToString(b)
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "conformance", Uid: uid},
		Hostname: name,
		Labels:   map[string]string{"app": name, "suite": "conformance"},
		Linux:    &runtimeapi.LinuxPodSandboxConfig{},
	}
}

func hostNetwork(c *runtimeapi.PodSandboxConfig) *runtimeapi.PodSandboxConfig {
	c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
	}
	return c
}

// podTarget is a runtime with a pod network: an own berth with the test
// bridge network, or the external endpoint as configured.
func podTarget(t *testing.T) *framework.Target {
	t.Helper()
	if tg := framework.NewTargetIfExternal(t); tg != nil {
		return tg
	}
	d := framework.StartDaemon(t, framework.DaemonOptions{Network: true})
	return &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Images: d.Images, Daemon: d}
}

func runPod(t testing.TB, tg *framework.Target, c *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := tg.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: c})
	if err != nil {
		t.Fatalf("RunPodSandbox(%s): %v", c.Metadata.Name, err)
	}
	t.Cleanup(func() {
		_, _ = tg.Runtime.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: resp.PodSandboxId})
	})
	return resp.PodSandboxId
}

func podStatus(t *testing.T, tg *framework.Target, id string) *runtimeapi.PodSandboxStatus {
	t.Helper()
	resp, err := tg.Runtime.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatalf("PodSandboxStatus(%s): %v", id, err)
	}
	return resp.Status
}

func TestRunPodSandboxGetsAnIP(t *testing.T) {
	tg := podTarget(t)
	id := runPod(t, tg, podConfig("ip"))
	st := podStatus(t, tg, id)
	if st.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("state %v", st.State)
	}
	ip, err := netip.ParseAddr(st.GetNetwork().GetIp())
	if err != nil {
		t.Fatalf("pod IP %q: %v", st.GetNetwork().GetIp(), err)
	}
	if tg.Daemon != nil {
		if subnet := netip.MustParsePrefix(tg.Daemon.Network.Subnet); !subnet.Contains(ip) {
			t.Fatalf("pod IP %s outside the network's %s", ip, subnet)
		}
	}
	if st.GetLinux().GetNamespaces().GetOptions().GetNetwork() != runtimeapi.NamespaceMode_POD {
		t.Fatalf("namespaces %v", st.GetLinux().GetNamespaces())
	}
	if st.Metadata.Name != "ip" || st.Labels["app"] != "ip" || st.CreatedAt == 0 {
		t.Fatalf("status %v", st)
	}
}

func TestPodSandboxLifecycleIsIdempotent(t *testing.T) {
	tg := podTarget(t)
	ctx := context.Background()
	id := runPod(t, tg, podConfig("lifecycle"))
	for range 2 {
		if _, err := tg.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("StopPodSandbox: %v", err)
		}
	}
	if st := podStatus(t, tg, id); st.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("stopped sandbox is %v", st.State)
	}
	if tg.Daemon != nil {
		if ips := tg.Daemon.Network.AllocatedIPs(t); len(ips) != 0 {
			t.Fatalf("IPs still allocated after Stop: %v", ips)
		}
	}
	for range 2 {
		if _, err := tg.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("RemovePodSandbox: %v", err)
		}
	}
	_, err := tg.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("status of a removed sandbox: %v, want NotFound", err)
	}
	if _, err := tg.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("StopPodSandbox of a removed sandbox: %v", err)
	}
}

func TestRemoveRunningPodSandboxStopsIt(t *testing.T) {
	tg := podTarget(t)
	id := runPod(t, tg, podConfig("remove-running"))
	if _, err := tg.Runtime.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if tg.Daemon != nil {
		if ips := tg.Daemon.Network.AllocatedIPs(t); len(ips) != 0 {
			t.Fatalf("IPs still allocated after removing a running sandbox: %v", ips)
		}
	}
}

func TestHostNetworkPodSandbox(t *testing.T) {
	tg := podTarget(t)
	id := runPod(t, tg, hostNetwork(podConfig("hostnet")))
	st := podStatus(t, tg, id)
	if st.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.GetNetwork().GetIp() != "" {
		t.Fatalf("host-network sandbox: state %v ip %q", st.State, st.GetNetwork().GetIp())
	}
	if st.GetLinux().GetNamespaces().GetOptions().GetNetwork() != runtimeapi.NamespaceMode_NODE {
		t.Fatalf("namespaces %v", st.GetLinux().GetNamespaces())
	}
}

func TestListPodSandboxFilters(t *testing.T) {
	tg := podTarget(t)
	ctx := context.Background()
	a := runPod(t, tg, podConfig("list-a"))
	b := runPod(t, tg, podConfig("list-b"))
	if _, err := tg.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: b}); err != nil {
		t.Fatal(err)
	}
	list := func(f *runtimeapi.PodSandboxFilter) []string {
		resp, err := tg.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, it := range resp.Items {
			if it.Labels["suite"] == "conformance" {
				ids = append(ids, it.Id)
			}
		}
		return ids
	}
	if got := list(nil); !slices.Contains(got, a) || !slices.Contains(got, b) {
		t.Errorf("unfiltered list %v lacks %s or %s", got, a, b)
	}
	if got := list(&runtimeapi.PodSandboxFilter{Id: a[:12]}); !slices.Equal(got, []string{a}) {
		t.Errorf("by ID prefix: %v", got)
	}
	ready := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}
	if got := list(&runtimeapi.PodSandboxFilter{State: ready}); !slices.Contains(got, a) || slices.Contains(got, b) {
		t.Errorf("ready filter: %v", got)
	}
	if got := list(&runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "list-b"}}); !slices.Equal(got, []string{b}) {
		t.Errorf("label filter: %v", got)
	}
}

// kubelet retries a RunPodSandbox that timed out on its side with the same
// request: it must get the first call's sandbox, not "name is reserved".
func TestRunPodSandboxRetryGetsTheSameSandbox(t *testing.T) {
	tg := podTarget(t)
	cfg := podConfig("retry")
	ids := make([]string, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			resp, err := tg.Runtime.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			ids[i], errs[i] = resp.GetPodSandboxId(), err
		})
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("concurrent identical RunPodSandbox %d: %s %v (first %s)", i, ids[i], errs[i], ids[0])
		}
	}
	t.Cleanup(func() {
		_, _ = tg.Runtime.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: ids[0]})
	})
	// After it finished, a retry still gets it.
	again := runPod(t, tg, cfg)
	if again != ids[0] {
		t.Fatalf("retry after completion made %s, want %s", again, ids[0])
	}
	// The same pod attempt with a different config is a real conflict.
	conflicting := podConfig("retry")
	conflicting.Metadata = cfg.Metadata
	conflicting.Hostname = "other"
	_, err := tg.Runtime.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: conflicting})
	if tg.Daemon != nil && status.Code(err) != codes.AlreadyExists {
		t.Fatalf("conflicting RunPodSandbox: %v, want AlreadyExists", err)
	}
}

func TestRunPodSandboxBadInput(t *testing.T) {
	tg := podTarget(t)
	ctx := context.Background()
	noMeta := podConfig("bad")
	noMeta.Metadata = nil
	hostSysctl := hostNetwork(podConfig("bad-sysctl"))
	hostSysctl.Linux.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
	notNamespaced := podConfig("bad-sysctl2")
	notNamespaced.Linux.Sysctls = map[string]string{"vm.swappiness": "10"}
	badHost := podConfig("bad-hostname")
	badHost.Hostname = "not_a valid-hostname!"
	badDNS := podConfig("bad-dns")
	badDNS.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"not-an-ip"}}
	badRes := podConfig("bad-resources")
	badRes.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 1 << 30}
	cases := map[string]*runtimeapi.RunPodSandboxRequest{
		"bad hostname":           {Config: badHost},
		"bad DNS server":         {Config: badDNS},
		"bad resources":          {Config: badRes},
		"no metadata":            {Config: noMeta},
		"no config":              {},
		"unknown handler":        {Config: podConfig("bad-handler"), RuntimeHandler: "no-such-handler"},
		"net sysctl on the host": {Config: hostSysctl},
		"not namespaced sysctl":  {Config: notNamespaced},
	}
	for name, req := range cases {
		resp, err := tg.Runtime.RunPodSandbox(ctx, req)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
			if err == nil {
				_, _ = tg.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: resp.PodSandboxId})
			}
		}
	}
	if list, err := tg.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
		for _, it := range list.Items {
			if strings.HasPrefix(it.GetMetadata().GetName(), "bad") {
				t.Errorf("a refused RunPodSandbox left sandbox %s (%s)", it.Id, it.Metadata.Name)
			}
		}
	}
	_, err := tg.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: "does-not-exist"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("status of a missing sandbox: %v, want NotFound", err)
	}
}

func TestRunPodSandboxWithoutCNIConfig(t *testing.T) {
	tg := framework.NewTarget(t)
	d := tg.RequireOwnBerth(t) // its CNI conf dir is empty
	_, err := d.Runtime.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podConfig("nocni")})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("RunPodSandbox without a CNI config: %v, want FailedPrecondition", err)
	}
	if resp, err := d.Runtime.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{}); err != nil || len(resp.Items) != 0 {
		t.Fatalf("a failed RunPodSandbox left %v (%v)", resp.GetItems(), err)
	}
	// A host-network pod needs no CNI.
	id := runPod(t, tg, hostNetwork(podConfig("nocni-host")))
	if st := podStatus(t, tg, id); st.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("host-network pod without CNI: %v", st.State)
	}
}
