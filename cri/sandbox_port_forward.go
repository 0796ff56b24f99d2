package cri

import (
	"context"
	"fmt"

	"github.com/berth-runtime/berth/sandbox"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PortForward returns a single-use URL of the streaming server that joins
// streams to ports on the pod's localhost (kubectl port-forward).
func (s *Server) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("%w: PortForward needs pod_sandbox_id", errdefs.ErrInvalidArgument)
	}
	for _, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, fmt.Errorf("%w: PortForward: port %d is not a TCP port", errdefs.ErrInvalidArgument, p)
		}
	}
	sb, err := s.sandboxes.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if sb.State != sandbox.StateReady {
		return nil, fmt.Errorf("%w: pod sandbox %s is %s, not ready: port-forward needs a ready pod", errdefs.ErrFailedPrecondition, sb.ID, sb.State)
	}
	stream, err := s.streams()
	if err != nil {
		return nil, err
	}
	return stream.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: sb.ID, Port: req.GetPort()})
}
