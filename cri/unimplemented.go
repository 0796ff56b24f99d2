package cri

// The RPCs below are not built yet. Each answers codes.Unimplemented with a
// message naming the RPC and the work that brings it, so kubelet and crictl
// users see exactly what is missing. An RPC leaves this file when its work lands.

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func notImplemented(rpc, comesWith string) error {
	return status.Error(codes.Unimplemented, fmt.Sprintf("berth does not implement %s yet: it comes with %s", rpc, comesWith))
}

const (
	withContainers  = "the container work"
	withStreaming   = "the streaming work (exec, attach, port-forward)"
	withCheckpoints = "checkpoint/restore support, which is not planned yet"
	withImages      = "the image service work"
)

// Containers.
func (s *Server) CreateContainer(context.Context, *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	return nil, notImplemented("CreateContainer", withContainers)
}

func (s *Server) StartContainer(context.Context, *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	return nil, notImplemented("StartContainer", withContainers)
}

func (s *Server) StopContainer(context.Context, *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	return nil, notImplemented("StopContainer", withContainers)
}

func (s *Server) RemoveContainer(context.Context, *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	return nil, notImplemented("RemoveContainer", withContainers)
}

func (s *Server) ListContainers(context.Context, *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return nil, notImplemented("ListContainers", withContainers)
}

func (s *Server) StreamContainers(*runtimeapi.StreamContainersRequest, grpc.ServerStreamingServer[runtimeapi.StreamContainersResponse]) error {
	return notImplemented("StreamContainers", withContainers)
}

func (s *Server) ContainerStatus(context.Context, *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	return nil, notImplemented("ContainerStatus", withContainers)
}

func (s *Server) UpdateContainerResources(context.Context, *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	return nil, notImplemented("UpdateContainerResources", withContainers)
}

func (s *Server) ReopenContainerLog(context.Context, *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	return nil, notImplemented("ReopenContainerLog", withContainers)
}

func (s *Server) ContainerStats(context.Context, *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	return nil, notImplemented("ContainerStats", withContainers)
}

func (s *Server) ListContainerStats(context.Context, *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	return nil, notImplemented("ListContainerStats", withContainers)
}

func (s *Server) StreamContainerStats(*runtimeapi.StreamContainerStatsRequest, grpc.ServerStreamingServer[runtimeapi.StreamContainerStatsResponse]) error {
	return notImplemented("StreamContainerStats", withContainers)
}

func (s *Server) GetContainerEvents(*runtimeapi.GetEventsRequest, grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	return notImplemented("GetContainerEvents", withContainers)
}

// Streaming.
func (s *Server) ExecSync(context.Context, *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	return nil, notImplemented("ExecSync", withStreaming)
}

func (s *Server) Exec(context.Context, *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	return nil, notImplemented("Exec", withStreaming)
}

func (s *Server) Attach(context.Context, *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	return nil, notImplemented("Attach", withStreaming)
}

func (s *Server) PortForward(context.Context, *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	return nil, notImplemented("PortForward", withStreaming)
}

// Checkpoints.
func (s *Server) CheckpointContainer(context.Context, *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	return nil, notImplemented("CheckpointContainer", withCheckpoints)
}

func (s *Server) CheckpointPod(context.Context, *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	return nil, notImplemented("CheckpointPod", withCheckpoints)
}

func (s *Server) RestorePod(context.Context, *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	return nil, notImplemented("RestorePod", withCheckpoints)
}
