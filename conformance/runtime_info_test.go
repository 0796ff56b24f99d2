package conformance

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// The first three calls kubelet makes on a runtime: Version, Status, RuntimeConfig.

func TestVersionHandshake(t *testing.T) {
	tg := framework.NewTarget(t)
	v, err := tg.Runtime.Version(context.Background(), &runtimeapi.VersionRequest{Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeApiVersion != "v1" {
		t.Errorf("RuntimeApiVersion %q, kubelet requires v1", v.RuntimeApiVersion)
	}
	if v.RuntimeName == "" || v.RuntimeVersion == "" || v.Version == "" {
		t.Errorf("Version response has empty fields: %+v", v)
	}
	if tg.Daemon != nil && v.RuntimeName != "berth" {
		t.Errorf("RuntimeName %q, want berth", v.RuntimeName)
	}
}

func TestStatusConditions(t *testing.T) {
	tg := framework.NewTarget(t)
	resp, err := tg.Runtime.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]*runtimeapi.RuntimeCondition{}
	for _, c := range resp.GetStatus().GetConditions() {
		seen[c.Type] = c
		if !c.Status && (c.Reason == "" || c.Message == "") {
			t.Errorf("condition %s is false without reason and message: %+v", c.Type, c)
		}
	}
	for _, typ := range []string{runtimeapi.RuntimeReady, runtimeapi.NetworkReady} {
		if seen[typ] == nil {
			t.Errorf("Status lacks the %s condition kubelet requires", typ)
		}
	}
	if c := seen[runtimeapi.RuntimeReady]; c != nil && !c.Status {
		t.Errorf("runtime not ready: %+v", c)
	}
}

func TestStatusNetworkNotReadyWithoutCNIConfig(t *testing.T) {
	tg := framework.NewTarget(t)
	d := tg.RequireOwnBerth(t) // its CNI conf dir starts empty
	resp, err := tg.Runtime.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.GetStatus().GetConditions() {
		if c.Type == runtimeapi.NetworkReady && (c.Status || c.Reason != "NetworkPluginNotReady") {
			t.Fatalf("empty CNI conf dir %s: want NetworkReady=false reason NetworkPluginNotReady, got %+v", d.CNIConfDir, c)
		}
	}
}

// With the shipped default network and the real plugins, the network is ready.
func TestStatusNetworkReadyWithDefaultCNIConfig(t *testing.T) {
	framework.SkipIfExternal(t)
	d := framework.StartDaemon(t, framework.DaemonOptions{CNIBinDir: framework.CNIPlugins(t)})
	conflist, err := os.ReadFile("../contrib/cni/10-berth-bridge.conflist")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.CNIConfDir, "10-berth-bridge.conflist"), conflist, 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := d.Runtime.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.GetStatus().GetConditions() {
		if c.Type == runtimeapi.NetworkReady && !c.Status {
			t.Fatalf("default network with real plugins not ready: %+v", c)
		}
	}
}

func TestStatusVerboseHasInfo(t *testing.T) {
	tg := framework.NewTarget(t)
	resp, err := tg.Runtime.Status(context.Background(), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Info) == 0 {
		t.Fatal("verbose Status returned no info")
	}
	if tg.Daemon != nil && resp.Info["config"] == "" {
		t.Fatalf("berth's verbose Status lacks the effective config: %v", resp.Info)
	}
}

func TestRuntimeConfigCgroupDriver(t *testing.T) {
	tg := framework.NewTarget(t)
	resp, err := tg.Runtime.RuntimeConfig(context.Background(), &runtimeapi.RuntimeConfigRequest{})
	if err != nil {
		t.Fatalf("RuntimeConfig (mandatory for kubelet 1.36+): %v", err)
	}
	if resp.GetLinux() == nil {
		t.Fatal("RuntimeConfig has no linux section")
	}
	if tg.Daemon != nil && resp.GetLinux().GetCgroupDriver() != runtimeapi.CgroupDriver_CGROUPFS {
		t.Fatalf("default cgroup driver %v, want CGROUPFS", resp.GetLinux().GetCgroupDriver())
	}
}

func TestRuntimeConfigSystemdDriver(t *testing.T) {
	framework.SkipIfExternal(t)
	d := framework.StartDaemon(t, framework.DaemonOptions{Args: []string{"--cgroup-driver", "systemd"}})
	resp, err := d.Runtime.RuntimeConfig(context.Background(), &runtimeapi.RuntimeConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetLinux().GetCgroupDriver(); got != runtimeapi.CgroupDriver_SYSTEMD {
		t.Fatalf("--cgroup-driver systemd reported as %v", got)
	}
}

func TestUpdateRuntimeConfigPodCIDR(t *testing.T) {
	tg := framework.NewTarget(t)
	ctx := context.Background()
	update := func(cidr string) error {
		_, err := tg.Runtime.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{
			RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr}}})
		return err
	}
	if err := update("10.244.0.0/24"); err != nil {
		t.Fatalf("valid pod CIDR refused: %v", err)
	}
	if tg.Daemon != nil {
		if err := update("not-a-cidr"); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("invalid pod CIDR: want InvalidArgument, got %v", err)
		}
	}
}
