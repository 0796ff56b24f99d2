package ocispec

import (
	"encoding/json"
	"testing"
)

// js renders v for comparison in messages and checks.
func js(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestResources(t *testing.T) {
	for _, tc := range []struct {
		name      string
		r         *Resources
		swap      bool
		hugetlb   bool
		v2        bool
		pids      int64
		clamp     func(int) int
		want      string // the spec's resources without the device rules
		wantScore *int
	}{
		{name: "none", r: nil, want: `{}`},
		{name: "pids limit default", pids: 4096, want: `{"pids":{"limit":4096}}`},
		{
			name: "cpu and memory with swap accounting: swap = memory",
			r:    &Resources{CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512, MemoryLimit: 1 << 30, CPUSetCPUs: "0-1", CPUSetMems: "0", OOMScoreAdj: 500},
			swap: true,
			want: `{"memory":{"limit":1073741824,"swap":1073741824},"cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0-1","mems":"0"}}`, wantScore: ptr(500),
		},
		{
			name: "explicit memory+swap", swap: true,
			r:    &Resources{MemoryLimit: 1 << 30, MemorySwapLimit: 2 << 30},
			want: `{"memory":{"limit":1073741824,"swap":2147483648},"cpu":{}}`, wantScore: ptr(0),
		},
		{
			name: "no swap accounting: swap dropped",
			r:    &Resources{MemoryLimit: 1 << 30, MemorySwapLimit: 2 << 30},
			want: `{"memory":{"limit":1073741824},"cpu":{}}`, wantScore: ptr(0),
		},
		{
			name: "unlimited quota and swap", swap: true,
			r:    &Resources{CPUQuota: -1, MemoryLimit: 1 << 20, MemorySwapLimit: -1},
			want: `{"memory":{"limit":1048576,"swap":-1},"cpu":{"quota":-1}}`, wantScore: ptr(0),
		},
		{
			name: "hugepages sorted", hugetlb: true,
			r:    &Resources{HugepageLimits: map[string]uint64{"2MB": 4 << 20, "1GB": 0}},
			want: `{"memory":{},"cpu":{},"hugepageLimits":[{"pageSize":"1GB","limit":0},{"pageSize":"2MB","limit":4194304}]}`, wantScore: ptr(0),
		},
		{
			name: "hugepages without the controller are dropped",
			r:    &Resources{HugepageLimits: map[string]uint64{"2MB": 4 << 20}},
			want: `{"memory":{},"cpu":{}}`, wantScore: ptr(0),
		},
		{
			name: "unified on cgroup v2", v2: true,
			r:    &Resources{Unified: map[string]string{"memory.high": "1000000"}},
			want: `{"memory":{},"cpu":{},"unified":{"memory.high":"1000000"}}`, wantScore: ptr(0),
		},
		{
			name: "oom score clamped", clamp: func(v int) int { return max(v, -500) },
			r:    &Resources{OOMScoreAdj: -998},
			want: `{"memory":{},"cpu":{}}`, wantScore: ptr(-500),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, f := newTestGenerator(t, Defaults{PidsLimit: tc.pids, ClampOOMScoreAdj: tc.clamp})
			f.swap, f.hugetlb, f.v2 = tc.swap, tc.hugetlb, tc.v2
			in := baseInput(t)
			in.Container.Resources = tc.r
			s := mustGenerate(t, g, in).Spec
			lr := *s.Linux.Resources
			if len(lr.Devices) == 0 || lr.Devices[0] != denyAll {
				t.Errorf("device rules = %+v, want deny-all first", lr.Devices)
			}
			lr.Devices = nil
			if got := js(t, lr); got != tc.want {
				t.Errorf("resources = %s\nwant        %s", got, tc.want)
			}
			got := s.Process.OOMScoreAdj
			if (got == nil) != (tc.wantScore == nil) || (got != nil && *got != *tc.wantScore) {
				t.Errorf("oom score adj = %v, want %v", js(t, got), js(t, tc.wantScore))
			}
		})
	}
}

func TestResourceErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		r     Resources
		word  string
		v2    bool
		class func(error) bool
	}{
		{name: "negative period", r: Resources{CPUPeriod: -1}, word: "cpu_period"},
		{name: "quota below -1", r: Resources{CPUQuota: -2}, word: "cpu_quota"},
		{name: "shares 1", r: Resources{CPUShares: 1}, word: "cpu_shares"},
		{name: "shares too large", r: Resources{CPUShares: 262145}, word: "cpu_shares"},
		{name: "negative memory", r: Resources{MemoryLimit: -5}, word: "memory_limit_in_bytes"},
		{name: "negative swap", r: Resources{MemorySwapLimit: -5}, word: "memory_swap_limit_in_bytes"},
		{name: "swap below memory", r: Resources{MemoryLimit: 100 << 20, MemorySwapLimit: 50 << 20}, word: "memory_swap_limit_in_bytes"},
		{name: "swap without memory", r: Resources{MemorySwapLimit: 50 << 20}, word: "memory_swap_limit_in_bytes"},
		{name: "oom score out of range", r: Resources{OOMScoreAdj: 1001}, word: "oom_score_adj"},
		{name: "bad cpuset", r: Resources{CPUSetCPUs: "0-x"}, word: "cpuset_cpus"},
		{name: "reversed cpuset", r: Resources{CPUSetMems: "3-1"}, word: "cpuset_mems"},
		{name: "unknown page size", r: Resources{HugepageLimits: map[string]uint64{"3MB": 1}}, word: `"3MB"`},
		{name: "unified on cgroup v1", r: Resources{Unified: map[string]string{"memory.high": "1"}}, word: "cgroup v2"},
		{name: "unified key with a slash", v2: true, r: Resources{Unified: map[string]string{"../memory.high": "1"}}, word: "not a file name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, f := newTestGenerator(t, Defaults{})
			f.v2 = tc.v2
			in := baseInput(t)
			in.Container.Resources = &tc.r
			_, err := g.Generate(in)
			wantErr(t, err, isInvalid, tc.word)
		})
	}
}

func TestCgroupsPath(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	in.CgroupsPath = "kubepods-pod1.slice:berth:ctr1"
	if got := mustGenerate(t, g, in).Spec.Linux.CgroupsPath; got != in.CgroupsPath {
		t.Errorf("cgroupsPath = %q, want %q", got, in.CgroupsPath)
	}
}
