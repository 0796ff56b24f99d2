package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// twoRuntimes is a berth that meets some targets against a containerd.
func twoRuntimes() []*Result {
	mk := func(name string, start, daemonIdle, daemon100, procs100 float64, pull float64) *Result {
		r := &Result{
			Name:          name,
			PodStart:      Summary{N: 10, P50: start, P90: start * 1.5, P99: start * 2},
			Teardown:      Summary{N: 10, P50: start, P99: start},
			PodStartParts: map[string]Summary{},
			Queries:       map[string]Summary{"ListContainers": {N: 5, P50: 1, P99: 2}},
			MemoryIdle:    &MemorySample{DaemonKB: int64(daemonIdle), Measured: true},
			Density: []DensityStep{
				{Pods: 20, StartSeconds: 2, Memory: MemorySample{DaemonKB: int64(daemonIdle), Measured: true}},
				{Pods: 100, StartSeconds: 10, Memory: MemorySample{DaemonKB: int64(daemon100), PerPodKB: int64(procs100), PerPodProcesses: 100, Measured: true}},
			},
			Pull: &PullResult{Seconds: []float64{1}, MBps: pull},
		}
		return r
	}
	return []*Result{
		mk("berth", 40, 30000, 32000, 98000, 150),        // 1000 KB/pod
		mk("containerd", 100, 40000, 60000, 980000, 100), // 10000 KB/pod
	}
}

func find(t *testing.T, cs []Comparison, metric string) Comparison {
	t.Helper()
	for _, c := range cs {
		if c.Metric == metric {
			return c
		}
	}
	t.Fatalf("no row %q", metric)
	return Comparison{}
}

func TestCompareRatiosAndGoals(t *testing.T) {
	rs := twoRuntimes()
	cs := compare(rs, metrics(20, 100))
	for _, c := range []struct {
		metric string
		ratio  float64
		met    bool
	}{
		{"pod start p50", 0.4, true},
		{"pod start p99", 0.4, true},
		{"teardown p50", 0.4, true},
		{"runtime memory per pod, 100 pods", 0.1, true},
		{"daemon PSS, 100 pods", 32000.0 / 60000, true},
		{"ListContainers p50, 100 pods", 1, false},
		{"pull+unpack, compressed", 1.5, true}, // at least 1.5
	} {
		row := find(t, cs, c.metric)
		if row.Ratio == nil || *row.Ratio-c.ratio > 1e-9 || c.ratio-*row.Ratio > 1e-9 {
			t.Errorf("%s: ratio %v, want %v", c.metric, row.Ratio, c.ratio)
			continue
		}
		if row.Met == nil || *row.Met != c.met {
			t.Errorf("%s: met %v, want %v", c.metric, row.Met, c.met)
		}
	}
	if row := find(t, cs, "runtime memory per pod, 100 pods"); *row.Values[0] != 1000 || *row.Values[1] != 10000 {
		t.Errorf("per-pod memory values %v %v", *row.Values[0], *row.Values[1])
	}
	// No goal, no verdict; a figure missing on one side: no ratio.
	if row := find(t, cs, "pod start p90"); row.Met != nil || row.Target != "" {
		t.Errorf("pod start p90 has a goal: %+v", row)
	}
	if row := find(t, cs, "ContainerStatus p50, 100 pods"); row.Ratio != nil || row.Values[0] != nil {
		t.Errorf("unmeasured ContainerStatus has figures: %+v", row)
	}
}

func TestCachedPullHasNoFigure(t *testing.T) {
	rs := twoRuntimes()
	rs[1].Pull.Cached = true
	row := find(t, compare(rs, metrics(20, 100)), "pull+unpack, compressed")
	if row.Values[1] != nil || row.Ratio != nil || row.Met != nil {
		t.Errorf("a cached pull was compared: %+v", row)
	}
}

func TestSingleRuntimeTable(t *testing.T) {
	rs := twoRuntimes()[:1]
	ms := metrics(20, 100)
	cs := compare(rs, ms)
	var buf bytes.Buffer
	writeTable(&buf, rs, ms, cs)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if lines[0] != "| metric | unit | berth |" {
		t.Errorf("header %q", lines[0])
	}
	if len(lines) != len(ms)+2 {
		t.Errorf("%d lines for %d metrics", len(lines), len(ms))
	}
	for _, c := range cs {
		if c.Ratio != nil || c.Target != "" {
			t.Errorf("single runtime row %q has a ratio or target", c.Metric)
		}
	}
}

func TestTableAndJSON(t *testing.T) {
	rs := twoRuntimes()
	ms := metrics(20, 100)
	cs := compare(rs, ms)
	var buf bytes.Buffer
	writeTable(&buf, rs, ms, cs)
	out := buf.String()
	for _, want := range []string{
		"| metric | unit | berth | containerd | berth/containerd | target | met |",
		"| pod start p50 | ms | 40.0 | 100.0 | 0.40 | ≤ 0.5 | yes |",
		"| ListContainers p50, 100 pods | ms | 1.0 | 1.0 | 1.00 | ≤ 0.5 | **no** |",
		"| runtime memory per pod, 100 pods | KB | 1000 | 10000 | 0.10 | ≤ 0.2 | yes |",
		"| pull+unpack, compressed | MB/s | 150.0 | 100.0 | 1.50 | ≥ 1.5 | yes |",
		"| ContainerStatus p50, 100 pods | ms | – | – | – | ≤ 0.5 |  |",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b, err := json.Marshal(&Report{Runtimes: rs, Comparisons: cs})
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Comparisons) != len(cs) || back.Runtimes[1].PodStart.P50 != 100 {
		t.Errorf("JSON round trip lost data: %s", b)
	}
}

func TestPerPodKBNeedsIdleSample(t *testing.T) {
	r := twoRuntimes()[0]
	step, _ := r.step(100)
	if kb, ok := r.perPodKB(step); !ok || kb != 1000 {
		t.Errorf("perPodKB = %v, %v", kb, ok)
	}
	r.MemoryIdle = nil
	if _, ok := r.perPodKB(step); ok {
		t.Error("perPodKB without an idle sample")
	}
}
