package conformance

// The stats and metrics RPCs for pod sandboxes. Pods have no containers yet,
// so CPU use and process counts may well be 0: those are checked for
// presence; network bytes, which the test sends itself, for value.

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

func podStats(t *testing.T, tg *framework.Target, id string) *runtimeapi.PodSandboxStats {
	t.Helper()
	resp, err := tg.Runtime.PodSandboxStats(context.Background(), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: id})
	if err != nil {
		t.Fatalf("PodSandboxStats(%s): %v", id, err)
	}
	return resp.Stats
}

// checkPodStats checks what every pod's stats must have.
func checkPodStats(t *testing.T, st *runtimeapi.PodSandboxStats, id, name string) {
	t.Helper()
	a, l := st.GetAttributes(), st.GetLinux()
	if a.GetId() != id || a.GetMetadata().GetName() != name || a.GetLabels()["app"] != name {
		t.Errorf("attributes %v, want pod %s (%s)", a, id, name)
	}
	if c := l.GetCpu(); c.GetTimestamp() <= 0 || c.UsageCoreNanoSeconds == nil || c.UsageNanoCores == nil {
		t.Errorf("cpu %v", c)
	}
	if m := l.GetMemory(); m.GetTimestamp() <= 0 || m.WorkingSetBytes == nil || m.UsageBytes == nil || m.RssBytes == nil {
		t.Errorf("memory %v", m)
	}
}

// defaultRx is the pod's default interface's received bytes.
func defaultRx(t *testing.T, st *runtimeapi.PodSandboxStats) uint64 {
	t.Helper()
	n := st.GetLinux().GetNetwork()
	if n.GetTimestamp() <= 0 || n.GetDefaultInterface().GetName() != "eth0" || n.GetDefaultInterface().RxBytes == nil || n.GetDefaultInterface().TxBytes == nil {
		t.Fatalf("network stats %v, want eth0 as the default interface with rx/tx counters", n)
	}
	return n.GetDefaultInterface().GetRxBytes().GetValue()
}

// sendToPod sends n bytes from the host to a listener in the pod's network
// namespace (pinned at pin) on ip, and waits until the pod has read them.
func sendToPod(t *testing.T, pin, ip string, n int) {
	t.Helper()
	var lis net.Listener
	err := ns.WithNetNSPath(pin, func(ns.NetNS) error {
		var err error
		lis, err = net.Listen("tcp", net.JoinHostPort(ip, "0"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close() // the socket holds the namespace
	var got int64
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		got, _ = io.Copy(io.Discard, c)
	})
	c, err := net.DialTimeout("tcp", lis.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Write(make([]byte, n))
	c.Close()
	wg.Wait()
	if err != nil || got != int64(n) {
		t.Fatalf("sent %d bytes to the pod: the pod read %d (%v)", n, got, err)
	}
}

func TestPodSandboxStatsCountPodTraffic(t *testing.T) {
	d := ownPodDaemon(t)
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Daemon: d}
	id := runPod(t, tg, podConfig("stats"))
	ip := podStatus(t, tg, id).GetNetwork().GetIp()

	start := time.Now()
	before := podStats(t, tg, id)
	t.Logf("PodSandboxStats of one pod: %v", time.Since(start))
	checkPodStats(t, before, id, "stats")
	if p := before.GetLinux().GetProcess(); p.GetTimestamp() <= 0 || p.ProcessCount == nil {
		t.Errorf("process %v", p)
	}
	rx0 := defaultRx(t, before)

	const mib = 1 << 20
	sendToPod(t, filepath.Join(sandboxDir(d, id), "netns"), ip, mib)
	after := podStats(t, tg, id)
	rx1 := defaultRx(t, after)
	if rx1-rx0 < mib {
		t.Fatalf("eth0 received %d bytes after 1 MiB was sent to the pod (before %d, after %d)", rx1-rx0, rx0, rx1)
	}
	if c0, c1 := before.GetLinux().GetCpu(), after.GetLinux().GetCpu(); c1.GetTimestamp() <= c0.GetTimestamp() ||
		c1.GetUsageCoreNanoSeconds().GetValue() < c0.GetUsageCoreNanoSeconds().GetValue() {
		t.Errorf("cpu went from %v to %v", c0, c1)
	}

	// The metrics say the same as the stats.
	descs, err := tg.Runtime.ListMetricDescriptors(context.Background(), &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	metrics, err := tg.Runtime.ListPodSandboxMetrics(context.Background(), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ListPodSandboxMetrics of one pod: %v", time.Since(start))
	pm := podMetricsOf(t, metrics.PodMetrics, id)
	keys := map[string][]string{}
	for _, d := range descs.Descriptors {
		keys[d.Name] = d.LabelKeys
	}
	var rx uint64
	for _, m := range pm.GetMetrics() {
		k, ok := keys[m.Name]
		if !ok || len(k) != len(m.LabelValues) {
			t.Errorf("metric %s %v: descriptor keys %v (described: %v)", m.Name, m.LabelValues, k, ok)
			continue
		}
		if i := slices.Index(k, "interface"); m.Name == "container_network_receive_bytes_total" && m.LabelValues[i] == "eth0" {
			rx = m.GetValue().GetValue()
		}
	}
	// Read after the stats: at least what they said, and not far beyond.
	if rx < rx1 || rx > rx1+mib {
		t.Errorf("container_network_receive_bytes_total{interface=eth0} = %d, stats said %d", rx, rx1)
	}

	// Stopped: out of the metrics; the stats keep the cgroup's, no network.
	if _, err := tg.Runtime.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	metrics, err = tg.Runtime.ListPodSandboxMetrics(context.Background(), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil || slices.ContainsFunc(metrics.GetPodMetrics(), func(p *runtimeapi.PodSandboxMetrics) bool { return p.PodSandboxId == id }) {
		t.Errorf("metrics of a stopped pod: %v %v", metrics, err)
	}
	if st := podStats(t, tg, id); st.GetLinux().GetNetwork() != nil {
		t.Errorf("network stats of a stopped pod: %v", st.GetLinux().GetNetwork())
	}
}

func podMetricsOf(t *testing.T, all []*runtimeapi.PodSandboxMetrics, id string) *runtimeapi.PodSandboxMetrics {
	t.Helper()
	for _, pm := range all {
		if pm.PodSandboxId == id {
			if len(pm.Metrics) == 0 {
				t.Fatalf("pod %s has no metrics", id)
			}
			return pm
		}
	}
	t.Fatalf("no metrics for pod %s among %d pods", id, len(all))
	return nil
}

func TestListPodSandboxStatsFilters(t *testing.T) {
	tg := podTarget(t)
	ctx := context.Background()
	a := runPod(t, tg, podConfig("stats-a"))
	b := runPod(t, tg, podConfig("stats-b"))
	list := func(f *runtimeapi.PodSandboxStatsFilter) []string {
		t.Helper()
		resp, err := tg.Runtime.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, st := range resp.Stats {
			if st.GetAttributes().GetLabels()["suite"] == "conformance" {
				ids = append(ids, st.GetAttributes().GetId())
			}
			if st.GetAttributes().GetId() == a {
				checkPodStats(t, st, a, "stats-a")
			}
		}
		return ids
	}
	start := time.Now()
	if got := list(nil); !slices.Contains(got, a) || !slices.Contains(got, b) {
		t.Errorf("unfiltered: %v lacks %s or %s", got, a, b)
	}
	t.Logf("ListPodSandboxStats of 2 pods: %v", time.Since(start))
	if got := list(&runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "stats-b"}}); !slices.Equal(got, []string{b}) {
		t.Errorf("by label: %v, want [%s]", got, b)
	}
	if got := list(&runtimeapi.PodSandboxStatsFilter{Id: a}); !slices.Equal(got, []string{a}) {
		t.Errorf("by ID: %v, want [%s]", got, a)
	}
	if got := list(&runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "stats-none"}}); len(got) != 0 {
		t.Errorf("by an unused label: %v", got)
	}

	stream, err := tg.Runtime.StreamPodSandboxStats(ctx, &runtimeapi.StreamPodSandboxStatsRequest{
		Filter: &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"suite": "conformance"}}})
	if err != nil {
		t.Fatal(err)
	}
	var streamed []string
	for {
		page, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range page.PodSandboxStats {
			streamed = append(streamed, st.GetAttributes().GetId())
		}
	}
	if !slices.Contains(streamed, a) || !slices.Contains(streamed, b) {
		t.Errorf("StreamPodSandboxStats: %v lacks %s or %s", streamed, a, b)
	}

	_, err = tg.Runtime.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "does-not-exist"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("stats of a missing pod: %v, want NotFound", err)
	}
	_, err = tg.Runtime.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("stats without an ID: %v, want InvalidArgument", err)
	}
}

func TestPodSandboxMetricsAreDescribed(t *testing.T) {
	tg := podTarget(t)
	ctx := context.Background()
	descs, err := tg.Runtime.ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
	if tg.Daemon == nil && status.Code(err) == codes.Unimplemented {
		t.Skipf("the runtime under test has no CRI metrics: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(descs.Descriptors) == 0 {
		t.Fatal("no metric descriptors")
	}
	described := map[string]int{}
	for _, d := range descs.Descriptors {
		described[d.Name] = len(d.LabelKeys)
	}
	id := runPod(t, tg, podConfig("metrics"))
	check := func(from string, all []*runtimeapi.PodSandboxMetrics) {
		t.Helper()
		// Other runtimes may collect in the background: only berth must
		// have the new pod already.
		if tg.Daemon != nil {
			podMetricsOf(t, all, id)
		}
		for _, pm := range all {
			for _, m := range pm.Metrics {
				if n, ok := described[m.Name]; !ok || n != len(m.LabelValues) {
					t.Errorf("%s: metric %s with %d label values; described: %v with %d keys", from, m.Name, len(m.LabelValues), ok, n)
				}
				if m.Value == nil {
					t.Errorf("%s: metric %s without a value", from, m.Name)
				}
			}
		}
	}
	list, err := tg.Runtime.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	check("ListPodSandboxMetrics", list.PodMetrics)
	stream, err := tg.Runtime.StreamPodSandboxMetrics(ctx, &runtimeapi.StreamPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var streamed []*runtimeapi.PodSandboxMetrics
	for {
		page, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		streamed = append(streamed, page.PodSandboxMetrics...)
	}
	check("StreamPodSandboxMetrics", streamed)
}
