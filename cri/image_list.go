package cri

import (
	"context"

	"github.com/berth-runtime/berth/image"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListImages lists every image, or with a filter only the one it names.
func (s *Server) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	imgs, err := s.filterImages(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListImagesResponse{Images: make([]*runtimeapi.Image, 0, len(imgs))}
	for _, img := range imgs {
		resp.Images = append(resp.Images, toCRIImage(img))
	}
	return resp, nil
}

// filterImages applies a CRI image filter: a reference or ID selects the
// image it names (none if it names nothing).
func (s *Server) filterImages(ctx context.Context, f *runtimeapi.ImageFilter) ([]image.Image, error) {
	ref := f.GetImage().GetImage()
	if ref == "" {
		return s.images.List(ctx), nil
	}
	img, err := s.images.Get(ctx, ref)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return []image.Image{img}, nil
}

func toCRIImage(img image.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        img.Size,
		Username:    img.Username,
		Pinned:      img.Pinned,
		Spec:        &runtimeapi.ImageSpec{Image: img.ID, Annotations: img.Annotations},
	}
	if img.UID != nil {
		out.Uid = &runtimeapi.Int64Value{Value: *img.UID}
	}
	return out
}
