package main

import (
	"math"
	"slices"
	"time"
)

// Summary describes a set of latencies in milliseconds.
type Summary struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
}

// percentile is the nearest-rank percentile of sorted: the smallest sample
// that at least p% of the samples do not exceed. It is always a measured
// value (no interpolation), so with 50 samples p99 is the maximum — the
// report says how many samples each figure rests on.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// summarize computes a Summary; samples is not modified.
func summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var total time.Duration
	for _, d := range s {
		total += d
	}
	return Summary{
		N:    len(s),
		Mean: ms(total / time.Duration(len(s))),
		P50:  ms(percentile(s, 50)),
		P90:  ms(percentile(s, 90)),
		P99:  ms(percentile(s, 99)),
		Max:  ms(s[len(s)-1]),
	}
}

// ms is d in milliseconds, rounded to microseconds so that the JSON stays
// readable.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// ratio is a/b, or false when it has no meaning (a missing value or b == 0).
func ratio(a, b float64, aok, bok bool) (float64, bool) {
	if !aok || !bok || b == 0 {
		return 0, false
	}
	return a / b, true
}

// median of plain numbers (throughputs); 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
