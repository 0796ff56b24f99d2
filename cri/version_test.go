package cri_test

import (
	"context"
	"testing"

	"github.com/berth-runtime/berth/internal/version"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestVersion(t *testing.T) {
	s := startServer(t, testConfig(t), nil)
	resp, err := s.rt.Version(context.Background(), &runtimeapi.VersionRequest{Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.RuntimeName != "berth" || resp.RuntimeApiVersion != "v1" || resp.Version != "0.1.0" {
		t.Fatalf("unexpected version response %+v", resp)
	}
	if resp.RuntimeVersion == "" || resp.RuntimeVersion != version.Berth() {
		t.Fatalf("RuntimeVersion %q, want the build's %q", resp.RuntimeVersion, version.Berth())
	}
}
