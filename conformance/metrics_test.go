package conformance

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// freeLoopbackPort is a TCP port on 127.0.0.1 nobody listens on now (the
// daemon's metrics address must be known before it starts).
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// metricsDaemon starts a berth of the test's own that serves metrics (and
// pprof, when asked) on a free loopback port; it returns the base URL.
func metricsDaemon(t *testing.T, network, pprof bool) (*framework.Daemon, string) {
	t.Helper()
	framework.SkipIfExternal(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
	toml := fmt.Sprintf("[metrics]\naddress = %q\nenable_pprof = %v\n", addr, pprof)
	d := framework.StartDaemon(t, framework.DaemonOptions{Network: network, ConfigTOML: toml})
	return d, "http://" + addr
}

// scrape is one scrape of /metrics, parsed.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t *testing.T, base string) scrape {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s: %s", resp.Status, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the scrape: %v", err)
	}
	return mfs
}

// value is the value of the series of name with exactly these labels: a
// counter's or gauge's value, a histogram's sample count. ok is false when
// there is no such series.
func (s scrape) value(name string, labels ...string) (float64, bool) {
	mf := s[name]
	if mf == nil {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if !maps.Equal(got, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// expect checks one series against cmp ("==", ">=") and want.
func (s scrape) expect(t *testing.T, cmp string, want float64, name string, labels ...string) {
	t.Helper()
	got, ok := s.value(name, labels...)
	if !ok {
		t.Errorf("no series %s%v in the scrape", name, labels)
		return
	}
	if (cmp == "==" && got != want) || (cmp == ">=" && got < want) {
		t.Errorf("%s%v = %v, want %s %v", name, labels, got, cmp, want)
	}
}

// The metrics an operator watches move with real work: CRI calls by method
// and code, a pull's bytes and outcome, CNI ADD/DEL, pods, containers and
// monitors by state, and a monitor's death.
func TestMetricsAfterRealOperations(t *testing.T) {
	d, base := metricsDaemon(t, true, false)
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Images: d.Images, Daemon: d}
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	e := &ctrEnv{tg: tg, reg: reg, logs: t.TempDir()}
	e.image = e.pushAndPull(t, "conformance/busybox:metrics", framework.ImageSpec{})
	if _, err := pull(t, tg, reg.Ref("conformance/absent:1"), nil); err == nil {
		t.Fatal("pulled an image the registry lacks")
	}
	podID, podCfg := e.pod(t, "metrics")
	ctrID := e.run(t, podID, podCfg, e.ctrConfig("sleeper", "sleep", "3607"))
	ctx := context.Background()
	if _, err := tg.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "no-such-container"}); err == nil {
		t.Fatal("status of a missing container")
	}

	s := scrapeMetrics(t, base)
	for _, method := range []string{"PullImage", "RunPodSandbox", "CreateContainer", "StartContainer", "Version"} {
		s.expect(t, ">=", 1, "berth_cri_requests_total", "method", method, "code", "OK")
		s.expect(t, ">=", 1, "berth_cri_request_duration_seconds", "method", method)
	}
	s.expect(t, ">=", 1, "berth_cri_requests_total", "method", "PullImage", "code", "NotFound")
	s.expect(t, ">=", 1, "berth_cri_request_errors_total", "method", "ContainerStatus", "code", "NotFound")
	if _, ok := s.value("berth_cri_request_errors_total", "method", "RunPodSandbox", "code", "OK"); ok {
		t.Error("a success is counted as an error")
	}

	s.expect(t, "==", 1, "berth_pod_sandboxes", "state", "ready")
	s.expect(t, "==", 0, "berth_pod_sandboxes", "state", "notready")
	s.expect(t, "==", 1, "berth_containers", "state", "running")
	s.expect(t, "==", 1, "berth_monitors")
	s.expect(t, "==", 1, "berth_monitor_starts_total")
	s.expect(t, "==", 0, "berth_monitor_deaths_total")

	s.expect(t, ">=", 1, "berth_image_pull_duration_seconds", "result", "success")
	s.expect(t, ">=", 1, "berth_image_pull_duration_seconds", "result", "failure")
	s.expect(t, ">=", 1, "berth_image_pull_failures_total", "code", "NotFound")
	s.expect(t, "==", 0, "berth_image_pulls_in_flight")
	if n, _ := s.value("berth_image_pull_bytes_total"); n < 100<<10 {
		t.Errorf("berth_image_pull_bytes_total = %v after pulling busybox", n)
	}

	s.expect(t, "==", 1, "berth_cni_operation_duration_seconds", "operation", "ADD")
	s.expect(t, "==", 0, "berth_cni_operation_failures_total", "operation", "ADD")
	s.expect(t, "==", 1, "berth_build_info", "version", buildVersion(t, s), "cri_api", "v1")
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_open_fds", "process_resident_memory_bytes"} {
		if _, ok := s.value(name); !ok {
			t.Errorf("no %s: the Go runtime and process collectors are missing", name)
		}
	}

	// The monitor dies: counted, with the running container it cost.
	monitor, _ := strconv.Atoi(jsonNumberOfPod(t, e, podID))
	if err := syscall.Kill(monitor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.waitState(t, ctrID, runtimeapi.ContainerState_CONTAINER_EXITED, 10*time.Second)
	s = scrapeMetrics(t, base)
	s.expect(t, "==", 1, "berth_monitor_deaths_total")
	s.expect(t, "==", 1, "berth_monitor_lost_containers_total")
	s.expect(t, "==", 1, "berth_containers", "state", "exited")

	if _, err := tg.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	s = scrapeMetrics(t, base)
	s.expect(t, ">=", 1, "berth_cni_operation_duration_seconds", "operation", "DEL")
	s.expect(t, "==", 0, "berth_cni_operation_failures_total", "operation", "DEL")
	s.expect(t, "==", 0, "berth_pod_sandboxes", "state", "ready")
	s.expect(t, "==", 0, "berth_containers", "state", "exited")
	s.expect(t, "==", 0, "berth_monitors")
	s.expect(t, ">=", 1, "berth_cri_requests_total", "method", "RemovePodSandbox", "code", "OK")
}

// buildVersion is the version label the daemon reports (devel in tests).
func buildVersion(t *testing.T, s scrape) string {
	t.Helper()
	for _, m := range s["berth_build_info"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "version" {
				return l.GetValue()
			}
		}
	}
	t.Error("no berth_build_info")
	return ""
}

// pprof is served only when enabled; metrics then still are.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		_, base := metricsDaemon(t, false, enabled)
		scrapeMetrics(t, base)
		resp, err := http.Get(base + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		served := resp.StatusCode == http.StatusOK && strings.Contains(string(body), "goroutine")
		if served != enabled {
			t.Errorf("enable_pprof = %v: /debug/pprof/goroutine answered %s", enabled, resp.Status)
		}
	}
}

// What reconciliation removes at start is counted by kind; a leftover the
// crash left is found after the restart.
func TestRecoveryCountersAfterCrash(t *testing.T) {
	d, base := metricsDaemon(t, false, false)
	s := scrapeMetrics(t, base)
	s.expect(t, "==", 0, "berth_recovery_rollbacks_total", "kind", "pod_sandbox")
	if err := d.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.Wait(30 * time.Second)
	// Two pod directories no record owns, as a crash between making a pod's
	// directory and its record leaves them.
	for _, id := range []string{strings.Repeat("ab", 32), strings.Repeat("cd", 32)} {
		if err := os.MkdirAll(filepath.Join(d.State, "sandboxes", id), 0o711); err != nil {
			t.Fatal(err)
		}
	}
	d.Restart(t)
	s = scrapeMetrics(t, base)
	s.expect(t, "==", 2, "berth_recovery_orphans_removed_total", "kind", "pod_directory")
	kinds := []string{}
	for _, m := range s["berth_recovery_orphans_removed_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			kinds = append(kinds, l.GetValue())
		}
	}
	if !slices.Equal(kinds, []string{"pod_directory"}) {
		t.Errorf("orphan kinds %v, want only pod_directory", kinds)
	}
}
