package cri

import (
	"fmt"

	"github.com/berth-runtime/berth/sandbox"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// GetContainerEvents streams container and sandbox lifecycle events, each
// with the pod's status and its containers' statuses attached, as kubelet's
// evented PLEG consumes them. The stream ends when the client goes away or
// falls so far behind that events were dropped (kubelet then relists).
func (s *Server) GetContainerEvents(_ *runtimeapi.GetEventsRequest, stream grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	events, cancel := s.sandboxes.Subscribe()
	defer cancel()
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return fmt.Errorf("%w: this event stream fell behind and lost events: subscribe again and relist",
					errdefs.ErrResourceExhausted)
			}
			if err := stream.Send(s.toContainerEvent(ev)); err != nil {
				return err
			}
		}
	}
}

func (s *Server) toContainerEvent(ev sandbox.Event) *runtimeapi.ContainerEventResponse {
	id := ev.ContainerID
	if ev.Sandbox {
		id = ev.SandboxID
	}
	out := &runtimeapi.ContainerEventResponse{
		ContainerId:        id,
		ContainerEventType: runtimeapi.ContainerEventType(ev.Type),
		CreatedAt:          ev.At.UnixNano(),
	}
	// The pod may be gone by now (a deletion event): then there is no
	// status to attach, as with containerd.
	if sb, err := s.sandboxes.Get(ev.SandboxID); err == nil {
		out.PodSandboxStatus = toSandboxStatus(sb)
		for _, c := range s.listContainers(sandbox.ContainerFilter{SandboxID: sb.ID}) {
			out.ContainersStatuses = append(out.ContainersStatuses, toContainerStatus(c))
		}
	}
	return out
}
