package cri_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func updatePodCIDR(s *testServer, cidr string) error {
	_, err := s.rt.UpdateRuntimeConfig(context.Background(), &runtimeapi.UpdateRuntimeConfigRequest{
		RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr}},
	})
	return err
}

func verboseInfo(t *testing.T, s *testServer) map[string]string {
	t.Helper()
	resp, err := s.rt.Status(context.Background(), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Info
}

func TestUpdateRuntimeConfigStoresPodCIDRAcrossRestart(t *testing.T) {
	cfg := testConfig(t)
	s := startServer(t, cfg, nil)
	if err := updatePodCIDR(s, "10.244.3.0/24,fd00:10:244:3::/64"); err != nil {
		t.Fatal(err)
	}
	// A new server on the same root stands for a daemon restart.
	s.shutdown()
	restarted := startServer(t, cfg, nil)
	if got := verboseInfo(t, restarted)["podCIDRs"]; !strings.Contains(got, "10.244.3.0/24") || !strings.Contains(got, "fd00:10:244:3::/64") {
		t.Fatalf("pod CIDRs after restart: %q", got)
	}
}

func TestUpdateRuntimeConfigRejectsBadCIDR(t *testing.T) {
	s := startServer(t, testConfig(t), nil)
	if err := updatePodCIDR(s, "10.244.3.0/24"); err != nil {
		t.Fatal(err)
	}
	err := updatePodCIDR(s, "10.244.3.0/33")
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "10.244.3.0/33") {
		t.Fatalf("want InvalidArgument naming the CIDR, got %v", err)
	}
	if got := verboseInfo(t, s)["podCIDRs"]; !strings.Contains(got, "10.244.3.0/24") {
		t.Fatalf("a rejected update changed the stored CIDRs: %q", got)
	}
}

func TestUpdateRuntimeConfigEmptyIsNoop(t *testing.T) {
	s := startServer(t, testConfig(t), nil)
	if _, err := s.rt.UpdateRuntimeConfig(context.Background(), &runtimeapi.UpdateRuntimeConfigRequest{}); err != nil {
		t.Fatalf("empty request: %v", err)
	}
	if _, ok := verboseInfo(t, s)["podCIDRs"]; ok {
		t.Fatal("an empty update stored pod CIDRs")
	}
}
