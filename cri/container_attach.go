package cri

import (
	"context"
	"fmt"

	"github.com/berth-runtime/berth/sandbox"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Attach returns a single-use URL of the streaming server that joins the
// client's streams to the container's main process (kubectl attach).
func (s *Server) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	c, err := s.streamTarget(req.GetContainerId(), "Attach")
	if err != nil {
		return nil, err
	}
	if c.State != sandbox.ContainerRunning && c.State != sandbox.ContainerCreated {
		return nil, fmt.Errorf("%w: container %s is %s: attach needs a created or running container", errdefs.ErrFailedPrecondition, c.ID, c.State)
	}
	stream, err := s.streams()
	if err != nil {
		return nil, err
	}
	return stream.GetAttach(&runtimeapi.AttachRequest{
		ContainerId: c.ID, Tty: req.GetTty(),
		Stdin: req.GetStdin(), Stdout: req.GetStdout(), Stderr: req.GetStderr(),
	})
}
