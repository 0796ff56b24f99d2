package cri

import (
	"context"

	"github.com/berth-runtime/berth/sandbox"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListPodSandbox lists sandboxes by ID prefix, state and label selector.
func (s *Server) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	sbs := s.sandboxes.List(toSandboxFilter(req.GetFilter()))
	resp := &runtimeapi.ListPodSandboxResponse{Items: make([]*runtimeapi.PodSandbox, 0, len(sbs))}
	for _, sb := range sbs {
		resp.Items = append(resp.Items, toPodSandbox(sb))
	}
	return resp, nil
}

// StreamPodSandboxes is ListPodSandbox delivered in pages.
func (s *Server) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxesResponse]) error {
	sbs := s.sandboxes.List(toSandboxFilter(req.GetFilter()))
	for start := 0; start < len(sbs); start += streamPageSize {
		page := &runtimeapi.StreamPodSandboxesResponse{}
		for _, sb := range sbs[start:min(start+streamPageSize, len(sbs))] {
			page.PodSandboxes = append(page.PodSandboxes, toPodSandbox(sb))
		}
		if err := stream.Send(page); err != nil {
			return err
		}
	}
	return nil
}

func toSandboxFilter(f *runtimeapi.PodSandboxFilter) sandbox.Filter {
	out := sandbox.Filter{IDPrefix: f.GetId(), Labels: f.GetLabelSelector()}
	if st := f.GetState(); st != nil {
		out.State = sandbox.StateNotReady
		if st.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			out.State = sandbox.StateReady
		}
	}
	return out
}

func toPodSandbox(sb sandbox.Sandbox) *runtimeapi.PodSandbox {
	return &runtimeapi.PodSandbox{
		Id:             sb.ID,
		Metadata:       toSandboxMetadata(sb.Config.Metadata),
		State:          toSandboxState(sb.State),
		CreatedAt:      sb.CreatedAt.UnixNano(),
		Labels:         sb.Config.Labels,
		Annotations:    sb.Config.Annotations,
		RuntimeHandler: sb.Config.RuntimeHandler,
	}
}
