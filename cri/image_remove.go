package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemoveImage removes the named image with all its tags; removing an image
// that is not present succeeds.
func (s *Server) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, fmt.Errorf("%w: RemoveImage needs image.image, a reference or image ID", errdefs.ErrInvalidArgument)
	}
	if err := s.images.Remove(ctx, ref); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}
