package cri

import (
	"context"
	"fmt"

	"github.com/berth-runtime/berth/network"
	"github.com/berth-runtime/berth/sandbox"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodSandboxStats reports one sandbox's usage; a missing one is NotFound.
func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("%w: PodSandboxStats needs pod_sandbox_id", errdefs.ErrInvalidArgument)
	}
	ps, err := s.sandboxes.Stats(ctx, req.PodSandboxId)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: toPodSandboxStats(*ps)}, nil
}

// ListPodSandboxStats reports the usage of sandboxes by ID prefix and label
// selector.
func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	list, err := s.sandboxes.ListStats(ctx, toStatsFilter(req.GetFilter()))
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListPodSandboxStatsResponse{Stats: make([]*runtimeapi.PodSandboxStats, 0, len(list))}
	for _, ps := range list {
		resp.Stats = append(resp.Stats, toPodSandboxStats(ps))
	}
	return resp, nil
}

// StreamPodSandboxStats is ListPodSandboxStats delivered in pages.
func (s *Server) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxStatsResponse]) error {
	list, err := s.sandboxes.ListStats(stream.Context(), toStatsFilter(req.GetFilter()))
	if err != nil {
		return err
	}
	for start := 0; start < len(list); start += streamPageSize {
		page := &runtimeapi.StreamPodSandboxStatsResponse{}
		for _, ps := range list[start:min(start+streamPageSize, len(list))] {
			page.PodSandboxStats = append(page.PodSandboxStats, toPodSandboxStats(ps))
		}
		if err := stream.Send(page); err != nil {
			return err
		}
	}
	return nil
}

func toStatsFilter(f *runtimeapi.PodSandboxStatsFilter) sandbox.Filter {
	return sandbox.Filter{IDPrefix: f.GetId(), Labels: f.GetLabelSelector()}
}

func u64(v uint64) *runtimeapi.UInt64Value { return &runtimeapi.UInt64Value{Value: v} }

func toPodSandboxStats(ps sandbox.PodStats) *runtimeapi.PodSandboxStats {
	sb, cg := ps.Sandbox, ps.Cgroup
	at := cg.Timestamp.UnixNano()
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{
			Id:          sb.ID,
			Metadata:    toSandboxMetadata(sb.Config.Metadata),
			Labels:      sb.Config.Labels,
			Annotations: sb.Config.Annotations,
		},
		Linux: &runtimeapi.LinuxPodSandboxStats{
			Cpu: &runtimeapi.CpuUsage{
				Timestamp:            at,
				UsageCoreNanoSeconds: u64(cg.CPUUsageNanos),
				UsageNanoCores:       u64(ps.CPUNanoCores),
			},
			Memory:  toMemoryUsage(cg),
			Network: toNetworkUsage(ps),
			Process: &runtimeapi.ProcessUsage{Timestamp: at, ProcessCount: u64(cg.Pids)},
			// Containers are left to ListContainerStats, which kubelet
			// calls alongside (as with containerd).
		},
	}
}

func toMemoryUsage(cg *sandbox.CgroupStats) *runtimeapi.MemoryUsage {
	mem := &runtimeapi.MemoryUsage{
		Timestamp:       cg.Timestamp.UnixNano(),
		WorkingSetBytes: u64(cg.MemoryWorkingSet),
		UsageBytes:      u64(cg.MemoryUsage),
		RssBytes:        u64(cg.MemoryRSS),
		PageFaults:      u64(cg.PageFaults),
		MajorPageFaults: u64(cg.MajorPageFaults),
	}
	// Without a limit there is no "available": a 0 would read as a pod out
	// of memory. cAdvisor leaves it unset the same way.
	if cg.MemoryLimit > 0 {
		mem.AvailableBytes = u64(cg.MemoryAvailable)
	}
	return mem
}

// toNetworkUsage is nil for sandboxes without a network of their own. The
// CRI lists the default interface apart from the others.
func toNetworkUsage(ps sandbox.PodStats) *runtimeapi.NetworkUsage {
	if len(ps.Interfaces) == 0 {
		return nil
	}
	out := &runtimeapi.NetworkUsage{Timestamp: ps.NetworkTimestamp.UnixNano()}
	for _, i := range ps.Interfaces {
		if i.Name == ps.DefaultInterface && out.DefaultInterface == nil {
			out.DefaultInterface = toInterfaceUsage(i)
			continue
		}
		out.Interfaces = append(out.Interfaces, toInterfaceUsage(i))
	}
	return out
}

func toInterfaceUsage(i network.IfaceStats) *runtimeapi.NetworkInterfaceUsage {
	return &runtimeapi.NetworkInterfaceUsage{
		Name: i.Name, RxBytes: u64(i.RxBytes), RxErrors: u64(i.RxErrors), TxBytes: u64(i.TxBytes), TxErrors: u64(i.TxErrors),
	}
}
