package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// goal is a target ratio of the first runtime to the second (issue 9):
// at most Value for costs (latency, memory), at least Value for rates.
type goal struct {
	AtLeast bool
	Value   float64
}

func (g goal) String() string {
	if g.AtLeast {
		return "≥ " + strconv.FormatFloat(g.Value, 'g', -1, 64)
	}
	return "≤ " + strconv.FormatFloat(g.Value, 'g', -1, 64)
}

func (g goal) met(r float64) bool {
	if g.AtLeast {
		return r >= g.Value
	}
	return r <= g.Value
}

// metric is one row of the comparison table.
type metric struct {
	label string
	unit  string
	get   func(*Result) (float64, bool)
	goal  *goal
}

// Comparison is a row of the table in the JSON report.
type Comparison struct {
	Metric string     `json:"metric"`
	Unit   string     `json:"unit"`
	Values []*float64 `json:"values"` // per runtime, in Report.Runtimes order; null if not measured
	Ratio  *float64   `json:"ratio,omitempty"`
	Target string     `json:"target,omitempty"`
	Met    *bool      `json:"met,omitempty"`
}

func summaryOf(pick func(*Result) Summary, f func(Summary) float64) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		s := pick(r)
		return f(s), s.N > 0
	}
}

func p50(s Summary) float64 { return s.P50 }
func p90(s Summary) float64 { return s.P90 }
func p99(s Summary) float64 { return s.P99 }

func part(name string) func(*Result) Summary {
	return func(r *Result) Summary { return r.PodStartParts[name] }
}

func query(name string) func(*Result) Summary {
	return func(r *Result) Summary { return r.Queries[name] }
}

// stepValue reads a figure of the density step with n pods.
func stepValue(n int, f func(*Result, DensityStep) (float64, bool)) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		s, ok := r.step(n)
		if !ok {
			return 0, false
		}
		return f(r, s)
	}
}

func half() *goal { return &goal{Value: 0.5} }

// metrics lists the table's rows for density steps small and large (20
// and 100 by default); the goals are those of issue 9.
func metrics(small, large int) []metric {
	seq := func(r *Result) Summary { return r.PodStart }
	td := func(r *Result) Summary { return r.Teardown }
	cseq := func(r *Result) Summary { return r.PodStartConcurrent }
	ctd := func(r *Result) Summary { return r.TeardownConcurrent }
	mem := func(n int) []metric {
		return []metric{
			{fmt.Sprintf("daemon PSS, %d pods", n), "MB", stepValue(n, func(_ *Result, s DensityStep) (float64, bool) {
				return float64(s.Memory.DaemonKB) / 1024, s.Memory.Measured
			}), nil},
			{fmt.Sprintf("per-pod processes PSS (sum), %d pods", n), "MB", stepValue(n, func(_ *Result, s DensityStep) (float64, bool) {
				return float64(s.Memory.PerPodKB) / 1024, s.Memory.Measured
			}), nil},
			{fmt.Sprintf("runtime memory per pod, %d pods", n), "KB", stepValue(n, (*Result).perPodKB), &goal{Value: 0.2}},
			{fmt.Sprintf("daemon threads, %d pods", n), "", stepValue(n, func(_ *Result, s DensityStep) (float64, bool) {
				return float64(s.Memory.DaemonThreads), s.Memory.Measured
			}), nil},
		}
	}
	ms := []metric{
		{"pod start p50", "ms", summaryOf(seq, p50), half()},
		{"pod start p90", "ms", summaryOf(seq, p90), nil},
		{"pod start p99", "ms", summaryOf(seq, p99), half()},
		{"  RunPodSandbox p50", "ms", summaryOf(part("RunPodSandbox"), p50), nil},
		{"  CreateContainer p50", "ms", summaryOf(part("CreateContainer"), p50), nil},
		{"  StartContainer p50", "ms", summaryOf(part("StartContainer"), p50), nil},
		{"teardown p50", "ms", summaryOf(td, p50), half()},
		{"teardown p99", "ms", summaryOf(td, p99), nil},
		{"pod start p50, concurrent", "ms", summaryOf(cseq, p50), nil},
		{"pod start p90, concurrent", "ms", summaryOf(cseq, p90), nil},
		{"pod start p99, concurrent", "ms", summaryOf(cseq, p99), nil},
		{"teardown p50, concurrent", "ms", summaryOf(ctd, p50), nil},
		{fmt.Sprintf("time until %d pods run", large), "s", stepValue(large, func(_ *Result, s DensityStep) (float64, bool) {
			return s.StartSeconds, true
		}), nil},
		{fmt.Sprintf("time to remove %d pods", large), "s", stepValue(large, func(_ *Result, s DensityStep) (float64, bool) {
			return s.RemoveSeconds, true
		}), nil},
		{"daemon PSS, 0 pods", "MB", func(r *Result) (float64, bool) {
			if r.MemoryIdle == nil {
				return 0, false
			}
			return float64(r.MemoryIdle.DaemonKB) / 1024, r.MemoryIdle.Measured
		}, nil},
	}
	if small != large {
		ms = append(ms, mem(small)...)
	}
	ms = append(ms, mem(large)...)
	ms[len(ms)-4].goal = &goal{Value: 0.7} // daemon PSS at the large step
	for _, q := range queryNames {
		g := half()
		if q == "Version" {
			g = nil // the baseline, no target
		}
		ms = append(ms,
			metric{fmt.Sprintf("%s p50, %d pods", q, large), "ms", summaryOf(query(q), p50), g},
			metric{fmt.Sprintf("%s p99, %d pods", q, large), "ms", summaryOf(query(q), p99), nil})
	}
	pull := func(f func(*PullResult) float64) func(*Result) (float64, bool) {
		return func(r *Result) (float64, bool) {
			if r.Pull == nil || len(r.Pull.Seconds) == 0 || r.Pull.Cached {
				return 0, false
			}
			return f(r.Pull), true
		}
	}
	ms = append(ms,
		metric{"pull+unpack, compressed", "MB/s", pull(func(p *PullResult) float64 { return p.MBps }), &goal{AtLeast: true, Value: 1.5}},
		metric{"pull+unpack, uncompressed", "MB/s", pull(func(p *PullResult) float64 { return p.UnpackedMBps }), nil},
	)
	return ms
}

// compare fills in the comparison rows: values of every runtime, and the
// ratio first/second with its goal when there are two.
func compare(rs []*Result, ms []metric) []Comparison {
	var out []Comparison
	for _, m := range ms {
		c := Comparison{Metric: strings.TrimSpace(m.label), Unit: m.unit}
		for _, r := range rs {
			if v, ok := m.get(r); ok {
				c.Values = append(c.Values, &v)
			} else {
				c.Values = append(c.Values, nil)
			}
		}
		if len(rs) == 2 && c.Values[0] != nil && c.Values[1] != nil {
			if q, ok := ratio(*c.Values[0], *c.Values[1], true, true); ok {
				c.Ratio = &q
				if m.goal != nil {
					met := m.goal.met(q)
					c.Met = &met
				}
			}
		}
		if m.goal != nil && len(rs) == 2 {
			c.Target = m.goal.String()
		}
		out = append(out, c)
	}
	return out
}

// writeTable prints the comparison as a Markdown table (what
// docs/benchmarks.md keeps), labels indented as in metrics.
func writeTable(w io.Writer, rs []*Result, ms []metric, cs []Comparison) {
	head := []string{"metric", "unit"}
	for _, r := range rs {
		head = append(head, r.Name)
	}
	if len(rs) == 2 {
		head = append(head, rs[0].Name+"/"+rs[1].Name, "target", "met")
	}
	fmt.Fprintln(w, "| "+strings.Join(head, " | ")+" |")
	fmt.Fprintln(w, "|"+strings.Repeat("---|", len(head)))
	for i, c := range cs {
		row := []string{strings.ReplaceAll(ms[i].label, "  ", "· "), c.Unit}
		for _, v := range c.Values {
			row = append(row, formatValue(v, c.Unit))
		}
		if len(rs) == 2 {
			r := "–"
			if c.Ratio != nil {
				r = strconv.FormatFloat(*c.Ratio, 'f', 2, 64)
			}
			met := ""
			if c.Met != nil {
				met = map[bool]string{true: "yes", false: "**no**"}[*c.Met]
			}
			row = append(row, r, c.Target, met)
		}
		fmt.Fprintln(w, "| "+strings.Join(row, " | ")+" |")
	}
}

func formatValue(v *float64, unit string) string {
	if v == nil {
		return "–"
	}
	switch unit {
	case "KB", "":
		return strconv.FormatFloat(*v, 'f', 0, 64)
	case "s", "MB", "MB/s":
		return strconv.FormatFloat(*v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(*v, 'f', 1, 64)
	}
}

// writeNotes prints what the table rests on: sample counts, the load during
// each phase, and pulls that were served from a cache.
func writeNotes(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "\n%s on %s (%s, %d CPUs, %d MB); load at start %s, at end %s\n",
		rep.Date, rep.Host.Hostname, rep.Host.Kernel, rep.Host.CPUs, rep.Host.MemoryMB, rep.Host.LoadStart, rep.Host.LoadEnd)
	s := rep.Settings
	fmt.Fprintf(w, "samples: %d sequential pods, %d pods by %d clients, density %v, up to %d calls of each read RPC (budget %s), %d pulls; settle %s\n",
		s.Iterations, s.ConcurrentPods, s.Concurrency, s.DensityPods, s.Queries, s.QueryBudget, s.Pulls, s.Settle)
	for _, r := range rep.Runtimes {
		fmt.Fprintf(w, "%s: %s %s at %s", r.Name, r.RuntimeName, r.RuntimeVersion, r.Endpoint)
		if r.Pull != nil {
			fmt.Fprintf(w, "; pull image %d layers, %.1f MB compressed, %.1f MB unpacked, seconds %v",
				r.Pull.Layers, r.Pull.CompressedMB, r.Pull.UncompressedMB, r.Pull.Seconds)
			if r.Pull.Cached {
				fmt.Fprint(w, " (CACHED: a pull fetched fewer layers than the image has; figure dropped)")
			}
		}
		fmt.Fprintln(w)
		var loads []string
		for _, l := range r.Load {
			loads = append(loads, l.Phase+" "+l.LoadAvg)
		}
		fmt.Fprintf(w, "  load: %s\n", strings.Join(loads, "; "))
	}
}
