package cri_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-runtime/berth/internal/config"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func condition(t *testing.T, resp *runtimeapi.StatusResponse, typ string) *runtimeapi.RuntimeCondition {
	t.Helper()
	for _, c := range resp.GetStatus().GetConditions() {
		if c.Type == typ {
			return c
		}
	}
	t.Fatalf("no %s condition in %v", typ, resp.GetStatus())
	return nil
}

func TestStatusNetworkNotReadyWithoutCNIConfig(t *testing.T) {
	s := startServer(t, testConfig(t), nil)
	resp, err := s.rt.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := condition(t, resp, runtimeapi.RuntimeReady); !c.Status {
		t.Fatalf("runtime not ready: %+v", c)
	}
	net := condition(t, resp, runtimeapi.NetworkReady)
	if net.Status || net.Reason != "NetworkPluginNotReady" || !strings.Contains(net.Message, s.cfg.CNI.ConfDir) {
		t.Fatalf("want NetworkReady=false NetworkPluginNotReady naming %s, got %+v", s.cfg.CNI.ConfDir, net)
	}
	if resp.Info != nil {
		t.Fatalf("non-verbose Status returned info %v", resp.Info)
	}
}

func TestStatusNetworkReadyOnceCNIConfigAppears(t *testing.T) {
	s := startServer(t, testConfig(t), nil)
	ctx := context.Background()
	// The config arrives after the daemon started, as when a CNI daemonset installs it.
	for _, dir := range []string{s.cfg.CNI.ConfDir, s.cfg.CNI.BinDirs[0]} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := `{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"}]}`
	if err := os.WriteFile(filepath.Join(s.cfg.CNI.ConfDir, "10-pods.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := s.rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := condition(t, resp, runtimeapi.NetworkReady); c.Status || !strings.Contains(c.Message, `"bridge"`) {
		t.Fatalf("config with a missing plugin must not be ready, and say which plugin: %+v", c)
	}
	if err := os.WriteFile(filepath.Join(s.cfg.CNI.BinDirs[0], "bridge"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	resp, err = s.rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := condition(t, resp, runtimeapi.NetworkReady); !c.Status {
		t.Fatalf("network not ready with a usable config: %+v", c)
	}
}

func TestStatusRuntimeNotReadyWhenStateDirGone(t *testing.T) {
	s := startServer(t, testConfig(t), nil)
	if err := os.RemoveAll(s.cfg.State); err != nil {
		t.Fatal(err)
	}
	resp, err := s.rt.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := condition(t, resp, runtimeapi.RuntimeReady); c.Status || !strings.Contains(c.Message, s.cfg.State) {
		t.Fatalf("want RuntimeReady=false naming %s, got %+v", s.cfg.State, c)
	}
}

func TestStatusVerboseReturnsEffectiveConfig(t *testing.T) {
	cfg := testConfig(t)
	cfg.CgroupDriver = config.CgroupDriverSystemd
	s := startServer(t, cfg, nil)
	resp, err := s.rt.Status(context.Background(), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var got config.Config
	if err := json.Unmarshal([]byte(resp.Info["config"]), &got); err != nil {
		t.Fatalf("info[config] is not the config as JSON: %v: %q", err, resp.Info["config"])
	}
	if got.JSON() != cfg.JSON() {
		t.Fatalf("verbose config differs:\n got %s\nwant %s", got.JSON(), cfg.JSON())
	}
}

// After a reload, Status verbose shows the reloaded keys' new values and
// the startup values of the keys that need a restart.
func TestStatusVerboseShowsReloadedConfig(t *testing.T) {
	cfg := testConfig(t)
	s := startServer(t, cfg, nil)
	next := cfg
	next.Log.Level = "debug"
	next.Image.PinnedImages = []string{"registry.example/pinned:1"}
	next.Image.MaxConcurrentDownloads = cfg.Image.MaxConcurrentDownloads + 7 // needs a restart
	s.srv.Reload(context.Background(), next)
	resp, err := s.rt.Status(context.Background(), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var got config.Config
	if err := json.Unmarshal([]byte(resp.Info["config"]), &got); err != nil {
		t.Fatalf("info[config] is not the config as JSON: %v: %q", err, resp.Info["config"])
	}
	want := cfg.WithReloaded(next)
	if got.JSON() != want.JSON() {
		t.Fatalf("verbose config after reload:\n got %s\nwant %s", got.JSON(), want.JSON())
	}
	if got.Log.Level != "debug" || got.Image.MaxConcurrentDownloads != cfg.Image.MaxConcurrentDownloads {
		t.Fatalf("log level %q, max downloads %d: want the reloaded level and the startup downloads", got.Log.Level, got.Image.MaxConcurrentDownloads)
	}
}

// Features are advertised only where they are built and tested: recursive
// read-only mounts (conformance TestContainerRecursiveReadonlyMount, on a
// kernel with mount_setattr) and the Strict supplemental groups policy
// (TestContainerUser) and user namespaces (TestUserNamespacePod); not
// mount options.
func TestStatusAdvertisesOnlyBuiltFeatures(t *testing.T) {
	s := startServer(t, testConfig(t), nil)
	resp, err := s.rt.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range resp.RuntimeHandlers {
		names = append(names, h.Name)
		// This kernel (6.x) has ID-mapped overlay layers: user namespaces
		// are advertised, as TestUserNamespacePod shows they work.
		if f := h.Features; !f.GetRecursiveReadOnlyMounts() || !f.GetUserNamespaces() {
			t.Fatalf("handler %q features %v, want recursive read-only mounts and user namespaces", h.Name, f)
		}
	}
	if !slices.Equal(names, []string{"", "runc"}) {
		t.Fatalf("handlers %q, want the default and the configured runc", names)
	}
	if rf := resp.Features; !rf.GetSupplementalGroupsPolicy() || rf.GetUserNamespacesHostNetwork() || rf.GetMountOptions() {
		t.Fatalf("runtime features %v, want the supplemental groups policy only", rf)
	}
}

func TestStatusRuntimeNotReadyWithoutMonitor(t *testing.T) {
	cfg := testConfig(t)
	cfg.Runtime.MonitorPath = filepath.Join(t.TempDir(), "no-berth-monitor")
	s := startServer(t, cfg, nil)
	resp, err := s.rt.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := condition(t, resp, runtimeapi.RuntimeReady); c.Status || c.Reason != "MonitorMissing" || !strings.Contains(c.Message, "no-berth-monitor") {
		t.Fatalf("RuntimeReady %+v, want false with reason MonitorMissing naming the path", c)
	}
}
