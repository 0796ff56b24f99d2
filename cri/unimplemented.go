package cri

// The RPCs below are not built yet. Each answers codes.Unimplemented with a
// message naming the RPC and the work that brings it, so kubelet and crictl
// users see exactly what is missing. An RPC leaves this file when its work lands.

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func notImplemented(rpc, comesWith string) error {
	return status.Error(codes.Unimplemented, fmt.Sprintf("berth does not implement %s yet: it comes with %s", rpc, comesWith))
}

const (
	withCheckpoints = "checkpoint/restore support, which is not planned yet"
	withImages      = "the image service work"
)

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
