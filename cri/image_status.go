package cri

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageStatus returns the image a tag, digest reference, ID or ID prefix
// names; an image that is not present gives an empty response, not an error,
// as kubelet expects. Verbose adds the image config and chain ID as JSON.
func (s *Server) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, fmt.Errorf("%w: ImageStatus needs image.image, a reference or image ID", errdefs.ErrInvalidArgument)
	}
	img, err := s.images.Get(ctx, ref)
	if errdefs.IsNotFound(err) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ImageStatusResponse{Image: toCRIImage(img)}
	if req.GetVerbose() {
		info, err := json.Marshal(map[string]any{
			"chainID":   img.ChainID,
			"imageSpec": img.Config,
			"target":    img.Target,
		})
		if err != nil {
			return nil, fmt.Errorf("render image info: %w", err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}
