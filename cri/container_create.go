package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CreateContainer creates a container in a pod sandbox from a pulled image.
func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	cfg := req.GetConfig()
	switch {
	case req.GetPodSandboxId() == "":
		return nil, fmt.Errorf("%w: CreateContainer needs pod_sandbox_id", errdefs.ErrInvalidArgument)
	case cfg == nil || cfg.GetMetadata().GetName() == "":
		return nil, fmt.Errorf("%w: CreateContainer needs config.metadata.name", errdefs.ErrInvalidArgument)
	case cfg.GetImage().GetImage() == "":
		return nil, fmt.Errorf("%w: CreateContainer needs config.image.image", errdefs.ErrInvalidArgument)
	}
	img, err := s.images.Get(ctx, cfg.GetImage().GetImage())
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("%w: image %q is not present on this node: pull it first", errdefs.ErrNotFound, cfg.GetImage().GetImage())
	}
	if err != nil {
		return nil, err
	}
	cc, err := toContainerConfig(cfg, img)
	if err != nil {
		return nil, err
	}
	c, err := s.sandboxes.CreateContainer(ctx, req.GetPodSandboxId(), cc)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: c.ID}, nil
}
