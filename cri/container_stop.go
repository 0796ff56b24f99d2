package cri

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopContainer stops a container with its stop signal, then SIGKILL after
// timeout seconds (0: at once). A missing or stopped container is success.
func (s *Server) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, fmt.Errorf("%w: StopContainer needs container_id", errdefs.ErrInvalidArgument)
	}
	if req.GetTimeout() < 0 {
		return nil, fmt.Errorf("%w: StopContainer timeout %d is negative", errdefs.ErrInvalidArgument, req.GetTimeout())
	}
	timeout := time.Duration(req.GetTimeout()) * time.Second
	if err := s.sandboxes.StopContainer(ctx, req.GetContainerId(), timeout); err != nil {
		return nil, err
	}
	return &runtimeapi.StopContainerResponse{}, nil
}
