package framework

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// EndpointEnv points the conformance suite at an already running CRI
// runtime (berth, containerd, CRI-O) instead of a berth it starts itself.
const EndpointEnv = "BERTH_CRI_ENDPOINT"

// Target is the CRI runtime a conformance test drives.
type Target struct {
	Conn    *grpc.ClientConn
	Runtime runtimeapi.RuntimeServiceClient
	Images  runtimeapi.ImageServiceClient
	// Daemon is the berth started for this test; nil for an external endpoint.
	Daemon *Daemon
}

// NewTarget connects to $BERTH_CRI_ENDPOINT, or starts a berth of its own.
func NewTarget(t testing.TB) *Target {
	t.Helper()
	if ep := os.Getenv(EndpointEnv); ep != "" {
		conn, err := Dial(ep)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return &Target{Conn: conn, Runtime: runtimeapi.NewRuntimeServiceClient(conn), Images: runtimeapi.NewImageServiceClient(conn)}
	}
	d := StartDaemon(t, DaemonOptions{})
	return &Target{Conn: d.Conn, Runtime: d.Runtime, Images: d.Images, Daemon: d}
}

// RequireOwnBerth skips tests that need to control the daemon (its config,
// its process) when the suite runs against an external endpoint.
func (tg *Target) RequireOwnBerth(t testing.TB) *Daemon {
	t.Helper()
	if tg.Daemon == nil {
		t.Skipf("needs a berth started by the suite; %s points elsewhere", EndpointEnv)
	}
	return tg.Daemon
}

// IsBerth reports whether the runtime under test calls itself berth.
func (tg *Target) IsBerth(t testing.TB) bool {
	t.Helper()
	v, err := tg.Runtime.Version(context.Background(), &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	return v.RuntimeName == "berth"
}

// RequireRoot skips a test that needs root, except when BERTH_INTEGRATION=1
// (as `make test` and CI set it), where skipping would hide a failure.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("BERTH_INTEGRATION") == "1" {
		t.Fatal("this test needs root and BERTH_INTEGRATION=1 is set: run the tests as root")
	}
	t.Skip("needs root (set BERTH_INTEGRATION=1 to make this a failure)")
}

// CNIPluginsEnv names the directory with the CNI plugins that `make
// cni-plugins` builds; `make test` sets it.
const CNIPluginsEnv = "BERTH_CNI_PLUGINS"

// CNIPlugins returns the directory of built CNI plugins, or skips the test
// when there is none (fails under BERTH_INTEGRATION=1, where it must exist).
func CNIPlugins(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(CNIPluginsEnv)
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "bridge")); err == nil {
			return dir
		}
	}
	if os.Getenv("BERTH_INTEGRATION") == "1" {
		t.Fatalf("no CNI plugins in %s=%q: run `make cni-plugins`", CNIPluginsEnv, dir)
	}
	t.Skipf("no CNI plugins: set %s to the output of `make cni-plugins`", CNIPluginsEnv)
	return ""
}

// NewTargetIfExternal connects to $BERTH_CRI_ENDPOINT when it is set, and
// returns nil otherwise (the caller starts a berth configured as it needs).
func NewTargetIfExternal(t testing.TB) *Target {
	t.Helper()
	if os.Getenv(EndpointEnv) == "" {
		return nil
	}
	return NewTarget(t)
}

// SkipIfExternal skips a test that starts berth daemons of its own with a
// particular configuration when the suite runs against an external endpoint.
func SkipIfExternal(t testing.TB) {
	t.Helper()
	if os.Getenv(EndpointEnv) != "" {
		t.Skipf("needs berth daemons started by the suite; %s points elsewhere", EndpointEnv)
	}
}
