package cri

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/berth-runtime/berth/sandbox"
	"github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func newTestMetrics(t *testing.T) *metrics {
	t.Helper()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMetricsOffGivesNilObservers(t *testing.T) {
	m, err := newMetrics(nil)
	if err != nil || m != nil {
		t.Fatalf("newMetrics(nil) = %v, %v", m, err)
	}
	// Nil interfaces, not typed nils: the packages below then use their
	// own no-op observers.
	if m.imageObserver() != nil || m.networkObserver() != nil || m.sandboxObserver() != nil {
		t.Fatal("metrics off, yet an observer is wired")
	}
}

func TestImageObserverCountsPulls(t *testing.T) {
	m := newTestMetrics(t)
	o := m.imageObserver()
	o.PullStarted("a")
	o.PullStarted("b")
	o.PullBytes(1000)
	o.PullBytes(24)
	if v := testutil.ToFloat64(m.pullsInFlight); v != 2 {
		t.Fatalf("in flight %v, want 2", v)
	}
	o.PullDone("a", time.Second, nil)
	o.PullDone("b", time.Second, fmt.Errorf("pull b: %w", errdefs.ErrNotFound))
	if v := testutil.ToFloat64(m.pullsInFlight); v != 0 {
		t.Errorf("in flight %v after both ended", v)
	}
	if v := testutil.ToFloat64(m.pullBytes); v != 1024 {
		t.Errorf("bytes %v, want 1024", v)
	}
	// The code kubelet would see for the error.
	if v := testutil.ToFloat64(m.pullFailures.WithLabelValues("NotFound")); v != 1 {
		t.Errorf("failures{code=NotFound} = %v", v)
	}
	if n := testutil.CollectAndCount(m.pullDuration); n != 2 {
		t.Errorf("pull duration has %d series, want success and failure", n)
	}
	o.PullStarted("c")
	o.PullDone("c", time.Minute, context.DeadlineExceeded)
	if v := testutil.ToFloat64(m.pullFailures.WithLabelValues("DeadlineExceeded")); v != 1 {
		t.Errorf("a stalled pull is not DeadlineExceeded: %v", v)
	}
}

func TestNetworkAndSandboxObservers(t *testing.T) {
	m := newTestMetrics(t)
	n := m.networkObserver()
	n.CNIDone("ADD", 30*time.Millisecond, nil)
	n.CNIDone("ADD", time.Second, errors.New("bridge: boom"))
	n.CNIDone("DEL", 10*time.Millisecond, nil)
	if v := testutil.ToFloat64(m.cniFailures.WithLabelValues("ADD")); v != 1 {
		t.Errorf("ADD failures %v", v)
	}
	if v := testutil.ToFloat64(m.cniFailures.WithLabelValues("DEL")); v != 0 {
		t.Errorf("DEL failures %v", v)
	}
	s := m.sandboxObserver()
	s.MonitorStarted("p1")
	s.MonitorDied("p1", 2)
	s.RolledBack(sandbox.RollbackContainer)
	s.OrphansRemoved("pod_directory", 3)
	for name, got := range map[string]float64{
		"starts":      testutil.ToFloat64(m.monitorStarts),
		"deaths":      testutil.ToFloat64(m.monitorDeaths),
		"lost":        testutil.ToFloat64(m.monitorLost) / 2,
		"rollbacks":   testutil.ToFloat64(m.rollbacks.WithLabelValues("container")),
		"orphans / 3": testutil.ToFloat64(m.orphans.WithLabelValues("pod_directory")) / 3,
		"no pod rb":   1 - testutil.ToFloat64(m.rollbacks.WithLabelValues("pod_sandbox")),
	} {
		if got != 1 {
			t.Errorf("%s: %v, want 1", name, got)
		}
	}
}

func TestStateCollectorReadsCounts(t *testing.T) {
	c := newStateCollector(func() sandbox.Counts {
		return sandbox.Counts{
			Pods:       map[sandbox.State]int{sandbox.StateReady: 2, sandbox.StateNotReady: 1},
			Containers: map[sandbox.ContainerState]int{sandbox.ContainerRunning: 3},
			Monitors:   2,
		}
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"berth_pod_sandboxes/ready": 2, "berth_pod_sandboxes/notready": 1, "berth_pod_sandboxes/creating": 0,
		"berth_containers/running": 3, "berth_containers/exited": 0, "berth_monitors": 2,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
}
