package conformance

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// Every RPC, called with an empty request as a careless client would, answers
// with a meaningful code: success, a validation error, or Unimplemented that
// names the RPC. Never Unknown or Internal, and the runtime keeps serving.
func TestEveryRPCAnswersWithAMeaningfulCode(t *testing.T) {
	tg := framework.NewTarget(t)
	rpcs, err := framework.AllRPCs()
	if err != nil {
		t.Fatal(err)
	}
	for _, rpc := range rpcs {
		if strings.HasPrefix(rpc.Name, "Stream") || rpc.Name == "GetContainerEvents" {
			// Streams that are implemented stay open; they get their own cases.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := framework.CallEmpty(ctx, tg.Conn, rpc)
			cancel()
			if c := status.Code(err); c == codes.Unknown || c == codes.Internal {
				t.Errorf("%s: %v", rpc.Name, err)
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := framework.CallEmpty(ctx, tg.Conn, rpc)
		cancel()
		st := status.Convert(err)
		switch st.Code() {
		case codes.Unknown, codes.Internal, codes.DeadlineExceeded:
			t.Errorf("%s with an empty request: %v", rpc.Name, err)
		case codes.Unimplemented:
			if !strings.Contains(st.Message(), rpc.Name) {
				t.Errorf("%s: Unimplemented without naming the RPC: %q", rpc.Name, st.Message())
			}
		}
	}
	if _, err := tg.Runtime.Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("runtime stopped serving: %v", err)
	}
}

// A panicking handler (injected through berth's test-only hook) answers
// Internal and leaves the daemon serving.
func TestPanicInHandlerDoesNotKillDaemon(t *testing.T) {
	tg := framework.NewTarget(t)
	d := tg.RequireOwnBerth(t)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "berth-test-panic", "Status")
	_, err := d.Runtime.Status(ctx, &runtimeapi.StatusRequest{})
	if status.Code(err) != codes.Internal {
		t.Fatalf("injected panic: want Internal, got %v", err)
	}
	if _, err := d.Runtime.Status(context.Background(), &runtimeapi.StatusRequest{}); err != nil {
		t.Fatalf("daemon not serving after a panic: %v", err)
	}
	if d.Exited() {
		t.Fatal("daemon exited after a handler panic")
	}
	if !strings.Contains(d.Logs(), "panic in CRI handler") {
		t.Fatalf("panic not logged:\n%s", d.Logs())
	}
}
