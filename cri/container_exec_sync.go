package cri

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/berth-runtime/berth/sandbox"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxExecSyncOutput caps stdout and stderr each: kubelet takes responses
// of at most 16 MiB, so both together must stay below.
const maxExecSyncOutput = 7 << 20

// errExecTimedOut is the cause of an ExecSync's own timeout.
var errExecTimedOut = errors.New("exec timed out")

// ExecSync runs a command in a running container and returns its output
// and exit code (kubelet's exec probes and `crictl exec -s`).
func (s *Server) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	switch {
	case req.GetContainerId() == "":
		return nil, fmt.Errorf("%w: ExecSync needs container_id", errdefs.ErrInvalidArgument)
	case len(req.GetCmd()) == 0:
		return nil, fmt.Errorf("%w: ExecSync needs a command (cmd)", errdefs.ErrInvalidArgument)
	case req.GetTimeout() < 0:
		return nil, fmt.Errorf("%w: ExecSync timeout %d is negative (0 means none)", errdefs.ErrInvalidArgument, req.GetTimeout())
	}
	if err := checkCmd("ExecSync", req.GetCmd()); err != nil {
		return nil, err
	}
	if t := req.GetTimeout(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, execSyncTimeout(t), errExecTimedOut)
		defer cancel()
	}
	stdout, stderr := &cappedBuffer{limit: maxExecSyncOutput}, &cappedBuffer{limit: maxExecSyncOutput}
	code, err := s.sandboxes.ExecContainer(ctx, req.GetContainerId(), sandbox.ExecOptions{
		Cmd: req.GetCmd(), Stdout: stdout, Stderr: stderr,
	})
	if err != nil {
		if errors.Is(err, errExecTimedOut) {
			return nil, status.Errorf(codes.DeadlineExceeded, "command %q in container %s timed out after %ds and was killed",
				req.GetCmd()[0], req.GetContainerId(), req.GetTimeout())
		}
		return nil, err
	}
	out, errOut := stdout.buf.Bytes(), stderr.buf.Bytes()
	for _, b := range []*cappedBuffer{stdout, stderr} {
		if b.dropped > 0 {
			name := "stdout"
			if b == stderr {
				name = "stderr"
			}
			s.log.Warn("ExecSync output truncated", "container", req.GetContainerId(), "stream", name, "dropped_bytes", b.dropped)
			errOut = fmt.Appendf(errOut, "\n[berth: %s truncated to %d MiB, %d bytes dropped]\n", name, maxExecSyncOutput>>20, b.dropped)
		}
	}
	return &runtimeapi.ExecSyncResponse{Stdout: out, Stderr: errOut, ExitCode: int32(code)}, nil
}

// execSyncTimeout is a timeout in seconds as a duration; one too long for
// a time.Duration (about 292 years) is the longest there is, not an
// overflow into the past.
func execSyncTimeout(seconds int64) time.Duration {
	if seconds > int64(math.MaxInt64/time.Second) {
		return math.MaxInt64
	}
	return time.Duration(seconds) * time.Second
}

// cappedBuffer keeps the first limit bytes written and counts the rest;
// writing never fails, so the process is never stopped for its output.
type cappedBuffer struct {
	buf     bytes.Buffer
	limit   int
	dropped int64
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if room := b.limit - b.buf.Len(); room < len(p) {
		b.dropped += int64(len(p) - max(room, 0))
		p = p[:max(room, 0)]
	}
	b.buf.Write(p)
	return n, nil
}
