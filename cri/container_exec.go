package cri

import (
	"context"
	"fmt"
	"strings"

	"github.com/berth-runtime/berth/sandbox"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Exec returns a single-use URL of the streaming server that runs the
// command in the container with the client's streams (kubectl exec).
func (s *Server) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if len(req.GetCmd()) == 0 {
		return nil, fmt.Errorf("%w: Exec needs a command (cmd)", errdefs.ErrInvalidArgument)
	}
	if err := checkCmd("Exec", req.GetCmd()); err != nil {
		return nil, err
	}
	c, err := s.streamTarget(req.GetContainerId(), "Exec")
	if err != nil {
		return nil, err
	}
	if c.State != sandbox.ContainerRunning {
		return nil, fmt.Errorf("%w: container %s is %s, not running: exec needs a running container", errdefs.ErrFailedPrecondition, c.ID, c.State)
	}
	stream, err := s.streams()
	if err != nil {
		return nil, err
	}
	return stream.GetExec(&runtimeapi.ExecRequest{
		ContainerId: c.ID, Cmd: req.GetCmd(), Tty: req.GetTty(),
		Stdin: req.GetStdin(), Stdout: req.GetStdout(), Stderr: req.GetStderr(),
	})
}

// checkCmd refuses a command that cannot be executed whatever the
// container holds: an argument with a NUL byte.
func checkCmd(rpc string, cmd []string) error {
	for i, arg := range cmd {
		if strings.ContainsRune(arg, 0) {
			return fmt.Errorf("%w: %s: argument %d of the command (%q) contains a NUL byte", errdefs.ErrInvalidArgument, rpc, i, arg)
		}
	}
	return nil
}

// streamTarget finds the container a streaming request names.
func (s *Server) streamTarget(id, rpc string) (sandbox.Container, error) {
	if id == "" {
		return sandbox.Container{}, fmt.Errorf("%w: %s needs container_id", errdefs.ErrInvalidArgument, rpc)
	}
	return s.sandboxes.GetContainer(id)
}

// streams is the streaming server, if it runs.
func (s *Server) streams() (*streamServer, error) {
	if s.stream == nil {
		return nil, fmt.Errorf("%w: the streaming server is not running: see berth's log for why it did not start (streaming.address)", errdefs.ErrUnavailable)
	}
	return s.stream, nil
}
