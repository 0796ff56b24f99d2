package cri

import (
	"context"
	"fmt"

	"github.com/berth-runtime/berth/sandbox"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerStats reports one container's usage; a missing one is NotFound.
func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	if req.GetContainerId() == "" {
		return nil, fmt.Errorf("%w: ContainerStats needs container_id", errdefs.ErrInvalidArgument)
	}
	cs, err := s.sandboxes.ContainerStats(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: toContainerStats(*cs)}, nil
}

// ListContainerStats reports the usage of containers by ID, pod and labels.
func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	list, err := s.sandboxes.ListContainerStats(ctx, toContainerStatsFilter(req.GetFilter()))
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListContainerStatsResponse{Stats: make([]*runtimeapi.ContainerStats, 0, len(list))}
	for _, cs := range list {
		resp.Stats = append(resp.Stats, toContainerStats(cs))
	}
	return resp, nil
}

// StreamContainerStats is ListContainerStats delivered in pages.
func (s *Server) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainerStatsResponse]) error {
	list, err := s.sandboxes.ListContainerStats(stream.Context(), toContainerStatsFilter(req.GetFilter()))
	if err != nil {
		return err
	}
	for start := 0; start < len(list); start += streamPageSize {
		page := &runtimeapi.StreamContainerStatsResponse{}
		for _, cs := range list[start:min(start+streamPageSize, len(list))] {
			page.ContainerStats = append(page.ContainerStats, toContainerStats(cs))
		}
		if err := stream.Send(page); err != nil {
			return err
		}
	}
	return nil
}

func toContainerStatsFilter(f *runtimeapi.ContainerStatsFilter) sandbox.ContainerFilter {
	return sandbox.ContainerFilter{ID: f.GetId(), SandboxID: f.GetPodSandboxId(), Labels: f.GetLabelSelector()}
}

func toContainerStats(cs sandbox.ContainerStats) *runtimeapi.ContainerStats {
	c := cs.Container
	out := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id:          c.ID,
			Metadata:    &runtimeapi.ContainerMetadata{Name: c.Config.Metadata.Name, Attempt: c.Config.Metadata.Attempt},
			Labels:      c.Config.Spec.Labels,
			Annotations: c.Config.Spec.Annotations,
		},
		WritableLayer: &runtimeapi.FilesystemUsage{
			Timestamp:  cs.WritableTimestamp.UnixNano(),
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: cs.WritableMountpoint},
			UsedBytes:  u64(cs.WritableBytes),
			InodesUsed: u64(cs.WritableInodes),
		},
	}
	if cg := cs.Cgroup; cg != nil {
		at := cg.Timestamp.UnixNano()
		out.Cpu = &runtimeapi.CpuUsage{
			Timestamp: at, UsageCoreNanoSeconds: u64(cg.CPUUsageNanos), UsageNanoCores: u64(cs.CPUNanoCores),
		}
		out.Memory = toMemoryUsage(cg)
		out.Swap = &runtimeapi.SwapUsage{Timestamp: at, SwapUsageBytes: u64(cg.SwapUsage)}
	}
	return out
}
