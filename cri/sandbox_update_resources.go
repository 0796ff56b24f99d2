package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdatePodSandboxResources resizes the pod cgroup in place.
func (s *Server) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("%w: UpdatePodSandboxResources needs pod_sandbox_id", errdefs.ErrInvalidArgument)
	}
	err := s.sandboxes.UpdateResources(ctx, req.PodSandboxId, toResources(req.GetResources()), toResources(req.GetOverhead()))
	if err != nil {
		return nil, err
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}
