package main

import (
	"testing"
	"time"
)

func durations(msList ...int) []time.Duration {
	var out []time.Duration
	for _, m := range msList {
		out = append(out, time.Duration(m)*time.Millisecond)
	}
	return out
}

func TestPercentileNearestRank(t *testing.T) {
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{nil, 50, 0},
		{durations(7), 50, 7 * time.Millisecond},
		{durations(7), 99, 7 * time.Millisecond},
		{durations(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{durations(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{durations(1, 2, 3, 4), 0, 1 * time.Millisecond},
		{hundred, 50, 50 * time.Millisecond},
		{hundred, 90, 90 * time.Millisecond},
		{hundred, 99, 99 * time.Millisecond},
		{hundred, 100, 100 * time.Millisecond},
		// 50 samples: p99 is the maximum.
		{hundred[:50], 99, 50 * time.Millisecond},
	} {
		if got := percentile(c.samples, c.p); got != c.want {
			t.Errorf("percentile(%d samples, %v) = %v, want %v", len(c.samples), c.p, got, c.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	in := durations(30, 10, 20, 40)
	s := summarize(in)
	want := Summary{N: 4, Mean: 25, P50: 20, P90: 40, P99: 40, Max: 40}
	if s != want {
		t.Errorf("summarize = %+v, want %+v", s, want)
	}
	if in[0] != 30*time.Millisecond {
		t.Error("summarize sorted its input")
	}
	if s := summarize(nil); s != (Summary{}) {
		t.Errorf("summarize(nil) = %+v", s)
	}
	if got := summarize([]time.Duration{1500 * time.Microsecond}).P50; got != 1.5 {
		t.Errorf("1.5 ms reported as %v", got)
	}
}

func TestRatioAndMedian(t *testing.T) {
	if r, ok := ratio(1, 4, true, true); !ok || r != 0.25 {
		t.Errorf("ratio(1, 4) = %v, %v", r, ok)
	}
	for _, c := range []struct {
		b        float64
		aok, bok bool
	}{{0, true, true}, {4, false, true}, {4, true, false}} {
		if _, ok := ratio(1, c.b, c.aok, c.bok); ok {
			t.Errorf("ratio(1, %v, %v, %v) has a value", c.b, c.aok, c.bok)
		}
	}
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median even = %v", m)
	}
	if m := median(nil); m != 0 {
		t.Errorf("median(nil) = %v", m)
	}
}
