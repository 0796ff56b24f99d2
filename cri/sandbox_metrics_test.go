package cri

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/berth-runtime/berth/network"
	"github.com/berth-runtime/berth/sandbox"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func testPodStats() sandbox.PodStats {
	now := time.Now()
	return sandbox.PodStats{
		Sandbox: sandbox.Sandbox{ID: "abc123", Config: sandbox.Config{
			Metadata: sandbox.Metadata{Name: "p", Namespace: "ns", UID: "u", Attempt: 2},
			Labels:   map[string]string{"app": "p"}, Annotations: map[string]string{"a": "b"},
		}},
		Cgroup: &sandbox.CgroupStats{
			Timestamp: now, CPUUsageNanos: 2_999_999_999, MemoryUsage: 300, MemoryWorkingSet: 200, MemoryRSS: 100,
			SwapUsage: 7, PageFaults: 40, MajorPageFaults: 4, Pids: 3,
		},
		CPUNanoCores:     123,
		Interfaces:       []network.IfaceStats{{Name: "net1", RxBytes: 1}, {Name: "eth0", RxBytes: 10, RxErrors: 1, TxBytes: 20, TxErrors: 2}},
		NetworkTimestamp: now.Add(time.Millisecond),
		DefaultInterface: "eth0",
	}
}

func TestToPodSandboxStats(t *testing.T) {
	ps := testPodStats()
	got := toPodSandboxStats(ps)
	a, l := got.GetAttributes(), got.GetLinux()
	if a.GetId() != "abc123" || a.GetMetadata().GetAttempt() != 2 || a.GetLabels()["app"] != "p" || a.GetAnnotations()["a"] != "b" {
		t.Errorf("attributes %v", a)
	}
	at := ps.Cgroup.Timestamp.UnixNano()
	if c := l.GetCpu(); c.GetTimestamp() != at || c.GetUsageCoreNanoSeconds().GetValue() != 2_999_999_999 || c.GetUsageNanoCores().GetValue() != 123 {
		t.Errorf("cpu %v", c)
	}
	m := l.GetMemory()
	if m.GetTimestamp() != at || m.GetWorkingSetBytes().GetValue() != 200 || m.GetUsageBytes().GetValue() != 300 ||
		m.GetRssBytes().GetValue() != 100 || m.GetPageFaults().GetValue() != 40 || m.GetMajorPageFaults().GetValue() != 4 {
		t.Errorf("memory %v", m)
	}
	if m.AvailableBytes != nil {
		t.Errorf("available bytes %v without a memory limit, want unset", m.AvailableBytes)
	}
	n := l.GetNetwork()
	if n.GetTimestamp() != ps.NetworkTimestamp.UnixNano() || n.GetDefaultInterface().GetName() != "eth0" ||
		n.GetDefaultInterface().GetTxErrors().GetValue() != 2 || len(n.GetInterfaces()) != 1 || n.GetInterfaces()[0].GetName() != "net1" {
		t.Errorf("network %v: want eth0 as the default and only the others listed", n)
	}
	if p := l.GetProcess(); p.GetTimestamp() != at || p.GetProcessCount().GetValue() != 3 {
		t.Errorf("process %v", p)
	}

	ps.Cgroup.MemoryLimit, ps.Cgroup.MemoryAvailable = 1000, 800
	ps.Interfaces = nil
	got = toPodSandboxStats(ps)
	if v := got.GetLinux().GetMemory().AvailableBytes; v.GetValue() != 800 {
		t.Errorf("available bytes %v with a limit", v)
	}
	if got.GetLinux().Network != nil {
		t.Errorf("network stats for a pod without interfaces: %v", got.GetLinux().Network)
	}
}

func TestPodMetricsMatchTheirDescriptors(t *testing.T) {
	resp, err := (&Server{}).ListMetricDescriptors(context.Background(), &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	descs := map[string]*runtimeapi.MetricDescriptor{}
	for _, d := range resp.Descriptors {
		if descs[d.Name] != nil || d.Help == "" {
			t.Errorf("descriptor %v duplicated or without help", d)
		}
		descs[d.Name] = d
		keys := slices.Clone(d.LabelKeys)
		slices.Sort(keys)
		if len(slices.Compact(keys)) != len(d.LabelKeys) {
			t.Errorf("%s: duplicate label keys %v", d.Name, d.LabelKeys)
		}
		// kubelet appends these itself.
		for _, k := range []string{"namespace", "pod", "container"} {
			if slices.Contains(d.LabelKeys, k) {
				t.Errorf("%s declares kubelet's label %q", d.Name, k)
			}
		}
	}

	ps := testPodStats()
	pm := toPodSandboxMetrics(podMetrics(), ps)
	if pm.PodSandboxId != "abc123" || len(pm.ContainerMetrics) != 0 {
		t.Fatalf("pod metrics %v", pm)
	}
	seen := map[string]bool{}
	values := map[string]uint64{}
	for _, m := range pm.Metrics {
		d := descs[m.Name]
		if d == nil {
			t.Errorf("metric %s has no descriptor", m.Name)
			continue
		}
		seen[m.Name] = true
		if len(m.LabelValues) != len(d.LabelKeys) || m.LabelValues[0] != "abc123" || m.LabelValues[1] != "POD" {
			t.Errorf("%s: labels %v for keys %v", m.Name, m.LabelValues, d.LabelKeys)
		}
		if m.Timestamp != 0 {
			t.Errorf("%s: timestamp %d for a live sample, want 0", m.Name, m.Timestamp)
		}
		values[m.Name+"/"+m.LabelValues[len(m.LabelValues)-1]] = m.Value.GetValue()
	}
	for name := range descs {
		if !seen[name] {
			t.Errorf("descriptor %s, but no such metric for a pod", name)
		}
	}
	for k, want := range map[string]uint64{
		"container_cpu_usage_seconds_total/total":      2, // whole seconds
		"container_memory_working_set_bytes/":          200,
		"container_threads/":                           3,
		"container_memory_failures_total/hierarchy":    4, // pgmajfault, the last of the two
		"container_network_receive_bytes_total/eth0":   10,
		"container_network_receive_bytes_total/net1":   1,
		"container_network_transmit_errors_total/eth0": 2,
	} {
		if got, ok := values[k]; !ok || got != want {
			t.Errorf("%s = %d (present %v), want %d", k, got, ok, want)
		}
	}
}
