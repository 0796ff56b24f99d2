package cri_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/berth-runtime/berth/cri"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// startMetricsServer serves a real cri.Server with metrics on a registry of
// the test's own, through the interceptors the daemon uses.
func startMetricsServer(t *testing.T) (*prometheus.Registry, runtimeapi.RuntimeServiceClient, runtimeapi.ImageServiceClient) {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	srv, err := cri.New(context.Background(), testConfig(t), log, cri.Options{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(srv.GRPCServerOptions()...)
	srv.Register(g)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(func() {
		g.Stop()
		srv.Close()
	})
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return reg, runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
}

func TestRPCMetricsCountCodesAndLatency(t *testing.T) {
	reg, rt, img := startMetricsServer(t)
	ctx := context.Background()
	for range 3 {
		if _, err := rt.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("ContainerStatus of a missing container: %v", err)
	}
	if _, err := img.ListImages(ctx, &runtimeapi.ListImagesRequest{}); err != nil {
		t.Fatal(err)
	}

	requests := counterValues(t, reg, "berth_cri_requests_total")
	for labels, want := range map[string]float64{
		"method=Version,code=OK":               3,
		"method=ContainerStatus,code=NotFound": 1,
		"method=ListImages,code=OK":            1,
	} {
		if requests[labels] != want {
			t.Errorf("berth_cri_requests_total{%s} = %v, want %v (all: %v)", labels, requests[labels], want, requests)
		}
	}
	errs := counterValues(t, reg, "berth_cri_request_errors_total")
	if len(errs) != 1 || errs["method=ContainerStatus,code=NotFound"] != 1 {
		t.Errorf("berth_cri_request_errors_total = %v, want only ContainerStatus NotFound", errs)
	}
	if n := histogramCount(t, reg, "berth_cri_request_duration_seconds", "method=Version"); n != 3 {
		t.Errorf("latency histogram of Version has %d samples, want 3", n)
	}
}

func TestStateMetricsStartAtZero(t *testing.T) {
	reg, _, _ := startMetricsServer(t)
	// A fresh node: every state is there, at 0, so that dashboards and
	// alerts see series from the start.
	want := `
# HELP berth_pod_sandboxes Pod sandboxes, by state (creating, ready, notready).
# TYPE berth_pod_sandboxes gauge
berth_pod_sandboxes{state="creating"} 0
berth_pod_sandboxes{state="notready"} 0
berth_pod_sandboxes{state="ready"} 0
# HELP berth_monitors Pod monitor processes berth has recorded (one per pod).
# TYPE berth_monitors gauge
berth_monitors 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "berth_pod_sandboxes", "berth_monitors"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "berth_containers"); err != nil || n != 5 {
		t.Fatalf("berth_containers has %d series (%v), want one per state (5)", n, err)
	}
	for _, name := range []string{"berth_cni_operation_failures_total", "berth_recovery_rollbacks_total", "berth_image_pulls_in_flight"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n == 0 {
			t.Errorf("%s is not exported before its first event (%d, %v)", name, n, err)
		}
	}
}

// counterValues gathers a counter vector as "k=v,k=v" → value.
func counterValues(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, l := range m.GetLabel() {
				parts = append(parts, l.GetName()+"="+l.GetValue())
			}
			out[orderLabels(parts)] = m.GetCounter().GetValue()
		}
	}
	return out
}

// orderLabels puts method before code, as the tests write them.
func orderLabels(parts []string) string {
	for i, p := range parts {
		if strings.HasPrefix(p, "method=") && i > 0 {
			parts[0], parts[i] = parts[i], parts[0]
		}
	}
	return strings.Join(parts, ",")
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name, label string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName()+"="+l.GetValue() == label {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}
