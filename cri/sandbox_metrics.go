package cri

// Pod metrics in cAdvisor's terms. With its PodAndContainerStatsFromCRI
// feature gate on, kubelet takes the pod and container series of
// /metrics/cadvisor from ListMetricDescriptors (read once, at its start) and
// ListPodSandboxMetrics (at every scrape), dropping any metric without a
// descriptor. Dashboards, alerts and recording rules are written against
// cAdvisor's names, help and labels, so berth uses exactly those.

import (
	"context"
	"time"

	"github.com/berth-runtime/berth/network"
	"github.com/berth-runtime/berth/sandbox"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// baseLabelKeys start every metric's labels: cAdvisor's, except namespace,
// pod and container, which recent kubelets append themselves (a duplicate
// label name would make them drop the metric). CRI-O uses the same keys.
func baseLabelKeys() []string { return []string{"id", "name", "image"} }

// podMetric is one metric berth reports for a pod: its descriptor and how
// to read its values (one per combination of its own labels) from stats.
type podMetric struct {
	name, help string
	typ        runtimeapi.MetricType
	labelKeys  []string // after baseLabelKeys
	values     func(ps sandbox.PodStats) []metricValue
}

type metricValue struct {
	labels []string // values of podMetric.labelKeys
	value  uint64
}

func one(v uint64) []metricValue { return []metricValue{{value: v}} }

// perInterface gives a network counter per interface, labelled by name.
func perInterface(counter func(network.IfaceStats) uint64) func(sandbox.PodStats) []metricValue {
	return func(ps sandbox.PodStats) []metricValue {
		out := make([]metricValue, 0, len(ps.Interfaces))
		for _, i := range ps.Interfaces {
			out = append(out, metricValue{labels: []string{i.Name}, value: counter(i)})
		}
		return out
	}
}

// podMetrics lists what berth reports: every cAdvisor pod metric that the
// pod cgroup and network namespace give a value for. Not included:
// container_processes (berth reads pids.current, which counts threads, so
// it reports container_threads as cAdvisor does for that file), and the
// metrics of container filesystems, which come with containers.
func podMetrics() []podMetric {
	const counter, gauge = runtimeapi.MetricType_COUNTER, runtimeapi.MetricType_GAUGE
	return []podMetric{{
		name: "container_cpu_usage_seconds_total", help: "Cumulative cpu time consumed in seconds.",
		typ: counter, labelKeys: []string{"cpu"},
		// The CRI carries integers, so whole seconds; the summary API
		// (ListPodSandboxStats) has nanoseconds. cAdvisor labels the sum
		// over all CPUs cpu="total".
		values: func(ps sandbox.PodStats) []metricValue {
			return []metricValue{{labels: []string{"total"}, value: ps.Cgroup.CPUUsageNanos / uint64(time.Second)}}
		},
	}, {
		name: "container_memory_usage_bytes", help: "Current memory usage in bytes, including all memory regardless of when it was accessed",
		typ: gauge, values: func(ps sandbox.PodStats) []metricValue { return one(ps.Cgroup.MemoryUsage) },
	}, {
		name: "container_memory_working_set_bytes", help: "Current working set in bytes.",
		typ: gauge, values: func(ps sandbox.PodStats) []metricValue { return one(ps.Cgroup.MemoryWorkingSet) },
	}, {
		name: "container_memory_rss", help: "Size of RSS in bytes.",
		typ: gauge, values: func(ps sandbox.PodStats) []metricValue { return one(ps.Cgroup.MemoryRSS) },
	}, {
		name: "container_memory_swap", help: "Container swap usage in bytes.",
		typ: gauge, values: func(ps sandbox.PodStats) []metricValue { return one(ps.Cgroup.SwapUsage) },
	}, {
		name: "container_memory_failures_total", help: "Cumulative count of memory allocation failures.",
		typ: counter, labelKeys: []string{"failure_type", "scope"},
		// The pod cgroup's counters include its children: cAdvisor's
		// "hierarchy" scope. Its "container" scope (the cgroup alone) has
		// no v2 counterpart, so it is left out.
		values: func(ps sandbox.PodStats) []metricValue {
			return []metricValue{
				{labels: []string{"pgfault", "hierarchy"}, value: ps.Cgroup.PageFaults},
				{labels: []string{"pgmajfault", "hierarchy"}, value: ps.Cgroup.MajorPageFaults},
			}
		},
	}, {
		name: "container_threads", help: "Number of threads running inside the container",
		typ: gauge, values: func(ps sandbox.PodStats) []metricValue { return one(ps.Cgroup.Pids) },
	}, {
		name: "container_network_receive_bytes_total", help: "Cumulative count of bytes received",
		typ: counter, labelKeys: []string{"interface"}, values: perInterface(func(i network.IfaceStats) uint64 { return i.RxBytes }),
	}, {
		name: "container_network_receive_errors_total", help: "Cumulative count of errors encountered while receiving",
		typ: counter, labelKeys: []string{"interface"}, values: perInterface(func(i network.IfaceStats) uint64 { return i.RxErrors }),
	}, {
		name: "container_network_transmit_bytes_total", help: "Cumulative count of bytes transmitted",
		typ: counter, labelKeys: []string{"interface"}, values: perInterface(func(i network.IfaceStats) uint64 { return i.TxBytes }),
	}, {
		name: "container_network_transmit_errors_total", help: "Cumulative count of errors encountered while transmitting",
		typ: counter, labelKeys: []string{"interface"}, values: perInterface(func(i network.IfaceStats) uint64 { return i.TxErrors }),
	}}
}

// ListMetricDescriptors describes every metric ListPodSandboxMetrics reports.
func (s *Server) ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	defs := podMetrics()
	resp := &runtimeapi.ListMetricDescriptorsResponse{Descriptors: make([]*runtimeapi.MetricDescriptor, 0, len(defs))}
	for _, d := range defs {
		resp.Descriptors = append(resp.Descriptors, &runtimeapi.MetricDescriptor{
			Name: d.name, Help: d.help, LabelKeys: append(baseLabelKeys(), d.labelKeys...),
		})
	}
	return resp, nil
}

// ListPodSandboxMetrics reports the metrics of every ready sandbox.
func (s *Server) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	list, err := s.sandboxes.ListStats(ctx, sandbox.Filter{State: sandbox.StateReady})
	if err != nil {
		return nil, err
	}
	defs := podMetrics()
	resp := &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: make([]*runtimeapi.PodSandboxMetrics, 0, len(list))}
	for _, ps := range list {
		resp.PodMetrics = append(resp.PodMetrics, toPodSandboxMetrics(defs, ps))
	}
	return resp, nil
}

// StreamPodSandboxMetrics is ListPodSandboxMetrics delivered in pages.
func (s *Server) StreamPodSandboxMetrics(_ *runtimeapi.StreamPodSandboxMetricsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxMetricsResponse]) error {
	list, err := s.sandboxes.ListStats(stream.Context(), sandbox.Filter{State: sandbox.StateReady})
	if err != nil {
		return err
	}
	defs := podMetrics()
	for start := 0; start < len(list); start += streamPageSize {
		page := &runtimeapi.StreamPodSandboxMetricsResponse{}
		for _, ps := range list[start:min(start+streamPageSize, len(list))] {
			page.PodSandboxMetrics = append(page.PodSandboxMetrics, toPodSandboxMetrics(defs, ps))
		}
		if err := stream.Send(page); err != nil {
			return err
		}
	}
	return nil
}

// toPodSandboxMetrics gives a sandbox's metrics. Timestamp stays 0, which
// the CRI defines as "gathered live": kubelet then exposes the samples
// without a timestamp of their own, so Prometheus marks a removed pod's
// series stale at once instead of keeping them for five minutes.
func toPodSandboxMetrics(defs []podMetric, ps sandbox.PodStats) *runtimeapi.PodSandboxMetrics {
	// A sandbox's values as kubelet's tests and CRI-O have them: its ID,
	// the name "POD" that kubelet gives sandboxes, and no image.
	base := []string{ps.Sandbox.ID, "POD", ""}
	out := &runtimeapi.PodSandboxMetrics{PodSandboxId: ps.Sandbox.ID}
	for _, d := range defs {
		for _, v := range d.values(ps) {
			out.Metrics = append(out.Metrics, &runtimeapi.Metric{
				Name:        d.name,
				MetricType:  d.typ,
				LabelValues: append(base[:len(base):len(base)], v.labels...),
				Value:       u64(v.value),
			})
		}
	}
	return out
}
