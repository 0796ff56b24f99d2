package cri_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/berth-runtime/berth/cri"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// faultyRuntime overrides two RPCs of the real server: Version panics and
// ContainerStatus returns a typed error, to exercise the interceptors.
type faultyRuntime struct{ *cri.Server }

func (faultyRuntime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	panic("boom")
}

func (faultyRuntime) ContainerStatus(_ context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	return nil, fmt.Errorf("container %s: %w", req.ContainerId, errdefs.ErrNotFound)
}

func startFaulty(t *testing.T) *testServer {
	return startServer(t, testConfig(t), func(g *grpc.Server, srv *cri.Server) {
		runtimeapi.RegisterRuntimeServiceServer(g, faultyRuntime{srv})
	})
}

func TestPanicInHandlerReturnsInternalAndServerKeepsServing(t *testing.T) {
	s := startFaulty(t)
	ctx := context.Background()
	_, err := s.rt.Version(ctx, &runtimeapi.VersionRequest{})
	if status.Code(err) != codes.Internal || !strings.Contains(status.Convert(err).Message(), "Version") {
		t.Fatalf("panicking handler: want Internal naming Version, got %v", err)
	}
	if !strings.Contains(s.log.String(), "goroutine") {
		t.Fatalf("panic logged without a stack:\n%s", s.log.String())
	}
	// The server still answers, also the same RPC again.
	if _, err := s.rt.Status(ctx, &runtimeapi.StatusRequest{}); err != nil {
		t.Fatalf("server not serving after a panic: %v", err)
	}
	if _, err := s.rt.Version(ctx, &runtimeapi.VersionRequest{}); status.Code(err) != codes.Internal {
		t.Fatalf("second panic: %v", err)
	}
}

func TestTypedErrorsBecomeCodesAndAreLoggedWithIDs(t *testing.T) {
	s := startFaulty(t)
	_, err := s.rt.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: "c0ffee"})
	if status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), "c0ffee") {
		t.Fatalf("want NotFound with the ID, got %v", err)
	}
	var found bool
	for _, line := range strings.Split(strings.TrimSpace(s.log.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec["method"] == "ContainerStatus" {
			found = true
			if rec["container_id"] != "c0ffee" || rec["code"] != "NotFound" || rec["level"] != "WARN" || rec["duration"] == nil {
				t.Errorf("request log lacks fields: %v", rec)
			}
		}
	}
	if !found {
		t.Fatalf("no log line for ContainerStatus:\n%s", s.log.String())
	}
}

func TestSuccessfulRPCsLogAtDebug(t *testing.T) {
	s := startServer(t, testConfig(t), nil)
	if _, err := s.rt.Status(context.Background(), &runtimeapi.StatusRequest{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.log.String(), `"level":"DEBUG","msg":"CRI request","method":"Status"`) {
		t.Fatalf("no debug line for Status:\n%s", s.log.String())
	}
}
