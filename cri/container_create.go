package cri

import (
	"context"
	"fmt"

	"github.com/berth-runtime/berth/sandbox/ocispec"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	crierrors "k8s.io/cri-api/pkg/errors"
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
	if err := s.resolveImageVolumes(ctx, cc.Spec.Mounts); err != nil {
		return nil, err
	}
	c, err := s.sandboxes.CreateContainer(ctx, req.GetPodSandboxId(), cc)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: c.ID}, nil
}

// resolveImageVolumes finds the image of each image volume among the
// pulled ones (kubelet pulls them before it creates the container) and
// records its ID, so the volume shows that image even if the tag moves.
func (s *Server) resolveImageVolumes(ctx context.Context, mounts []ocispec.Mount) error {
	for i, m := range mounts {
		if m.Image == "" {
			continue
		}
		img, err := s.images.Get(ctx, m.Image)
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("%w: %w: image %q of the image volume at %s is not present on this node: pull it first",
				errdefs.ErrNotFound, crierrors.ErrImageVolumeMountFailed, m.Image, m.ContainerPath)
		}
		if err != nil {
			return fmt.Errorf("%w: image %q of the image volume at %s: %w", crierrors.ErrImageVolumeMountFailed, m.Image, m.ContainerPath, err)
		}
		mounts[i].ImageID = img.ID
	}
	return nil
}
