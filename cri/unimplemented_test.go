package cri_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/berth-runtime/berth/conformance/framework"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// implemented lists the RPCs built so far; every other one must answer
// Unimplemented naming itself. Add an RPC here when its work lands.
var implemented = map[string]bool{
	"Version": true, "Status": true, "RuntimeConfig": true, "UpdateRuntimeConfig": true,
	"RunPodSandbox": true, "StopPodSandbox": true, "RemovePodSandbox": true, "PodSandboxStatus": true,
	"ListPodSandbox": true, "StreamPodSandboxes": true, "UpdatePodSandboxResources": true,
	"PodSandboxStats": true, "ListPodSandboxStats": true, "StreamPodSandboxStats": true,
	"ListMetricDescriptors": true, "ListPodSandboxMetrics": true, "StreamPodSandboxMetrics": true,
	"PullImage": true, "ListImages": true, "StreamImages": true, "ImageStatus": true, "RemoveImage": true, "ImageFsInfo": true,
	"CreateContainer": true, "StartContainer": true, "StopContainer": true, "RemoveContainer": true,
	"ListContainers": true, "StreamContainers": true, "ContainerStatus": true, "UpdateContainerResources": true,
	"ReopenContainerLog": true, "ContainerStats": true, "ListContainerStats": true, "StreamContainerStats": true,
	"GetContainerEvents": true, "ExecSync": true, "Exec": true, "Attach": true, "PortForward": true,
}

func TestUnbuiltRPCsAnswerUnimplementedByName(t *testing.T) {
	s := startServer(t, testConfig(t), nil)
	rpcs, err := framework.AllRPCs()
	if err != nil {
		t.Fatal(err)
	}
	if len(rpcs) < 40 {
		t.Fatalf("only %d CRI RPCs found in the API descriptors", len(rpcs))
	}
	for _, rpc := range rpcs {
		timeout := 5 * time.Second
		if rpc.Name == "GetContainerEvents" {
			// A live stream that only ends with its client: any answer
			// but Unimplemented within a moment shows it is served.
			timeout = 300 * time.Millisecond
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := framework.CallEmpty(ctx, s.conn, rpc)
		cancel()
		if implemented[rpc.Name] {
			if status.Code(err) == codes.Unimplemented {
				t.Errorf("%s is built but answers Unimplemented", rpc.Name)
			}
			continue
		}
		st := status.Convert(err)
		if st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), rpc.Name) {
			t.Errorf("%s: want Unimplemented naming the RPC, got %v", rpc.Name, err)
		}
	}
}
