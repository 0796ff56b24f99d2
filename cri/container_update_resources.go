package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateContainerResources applies new limits to a container live.
func (s *Server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	switch {
	case req.GetContainerId() == "":
		return nil, fmt.Errorf("%w: UpdateContainerResources needs container_id", errdefs.ErrInvalidArgument)
	case req.GetLinux() == nil:
		return nil, fmt.Errorf("%w: UpdateContainerResources needs linux resources", errdefs.ErrInvalidArgument)
	}
	if err := s.sandboxes.UpdateContainerResources(ctx, req.GetContainerId(), toContainerResources(req.GetLinux())); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}
