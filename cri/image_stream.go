package cri

import (
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// streamPageSize bounds one StreamImages message, well below the gRPC
// message limit even for images with many tags.
const streamPageSize = 100

// StreamImages is ListImages delivered in pages, for nodes with many images.
func (s *Server) StreamImages(req *runtimeapi.StreamImagesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamImagesResponse]) error {
	imgs, err := s.filterImages(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	for start := 0; start < len(imgs); start += streamPageSize {
		page := &runtimeapi.StreamImagesResponse{}
		for _, img := range imgs[start:min(start+streamPageSize, len(imgs))] {
			page.Images = append(page.Images, toCRIImage(img))
		}
		if err := stream.Send(page); err != nil {
			return err
		}
	}
	return nil
}
