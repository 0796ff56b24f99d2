package cri

import (
	"context"
	"slices"

	"github.com/berth-runtime/berth/sandbox"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListContainers lists containers by ID prefix, pod, state and labels.
func (s *Server) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	ctrs := s.listContainers(toContainerFilter(req.GetFilter()))
	resp := &runtimeapi.ListContainersResponse{Containers: make([]*runtimeapi.Container, 0, len(ctrs))}
	for _, c := range ctrs {
		resp.Containers = append(resp.Containers, toContainer(c))
	}
	return resp, nil
}

// StreamContainers is ListContainers delivered in pages.
func (s *Server) StreamContainers(req *runtimeapi.StreamContainersRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainersResponse]) error {
	ctrs := s.listContainers(toContainerFilter(req.GetFilter()))
	for start := 0; start < len(ctrs); start += streamPageSize {
		page := &runtimeapi.StreamContainersResponse{}
		for _, c := range ctrs[start:min(start+streamPageSize, len(ctrs))] {
			page.Containers = append(page.Containers, toContainer(c))
		}
		if err := stream.Send(page); err != nil {
			return err
		}
	}
	return nil
}

// listContainers lists in creation order, so pages are stable.
func (s *Server) listContainers(f sandbox.ContainerFilter) []sandbox.Container {
	ctrs := s.sandboxes.ListContainers(f)
	slices.SortFunc(ctrs, func(a, b sandbox.Container) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return ctrs
}

func toContainerFilter(f *runtimeapi.ContainerFilter) sandbox.ContainerFilter {
	out := sandbox.ContainerFilter{ID: f.GetId(), SandboxID: f.GetPodSandboxId(), Labels: f.GetLabelSelector()}
	if st := f.GetState(); st != nil {
		out.State = fromCRIContainerState(st.GetState())
	}
	return out
}

func fromCRIContainerState(st runtimeapi.ContainerState) sandbox.ContainerState {
	switch st {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		return sandbox.ContainerCreated
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return sandbox.ContainerRunning
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return sandbox.ContainerExited
	}
	return sandbox.ContainerUnknown
}

func toCRIContainerState(st sandbox.ContainerState) runtimeapi.ContainerState {
	switch st {
	case sandbox.ContainerCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case sandbox.ContainerRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case sandbox.ContainerExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

func toContainer(c sandbox.Container) *runtimeapi.Container {
	return &runtimeapi.Container{
		Id:           c.ID,
		PodSandboxId: c.SandboxID,
		Metadata:     &runtimeapi.ContainerMetadata{Name: c.Config.Metadata.Name, Attempt: c.Config.Metadata.Attempt},
		Image:        &runtimeapi.ImageSpec{Image: c.Config.Image.Name, UserSpecifiedImage: c.Config.Image.Requested},
		ImageRef:     c.Config.Image.Ref,
		ImageId:      c.Config.Image.ID,
		State:        toCRIContainerState(c.State),
		CreatedAt:    c.CreatedAt.UnixNano(),
		Labels:       c.Config.Spec.Labels,
		Annotations:  c.Config.Spec.Annotations,
	}
}
