package ocispec

import (
	"maps"
	"slices"
	"strings"

	"github.com/opencontainers/cgroups/systemd"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// resources is containerd's WithResources and WithOOMScoreAdj, checked
// first like berth's pod cgroup limits (containerd leaves bad values to
// runc, which fails when it writes them). Linux.Resources is never nil: it
// starts with containerd's deny-all device rule, to which devices adds.
// Defaults.PidsLimit (the CRI has no per-container one) is berth's own.
func (g *Generator) resources(r *Resources) (*specs.LinuxResources, *int, error) {
	lr := &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
	if g.defaults.PidsLimit > 0 {
		limit := g.defaults.PidsLimit
		lr.Pids = &specs.LinuxPids{Limit: &limit}
	}
	if r == nil {
		return lr, nil, nil
	}
	if err := g.checkResources(r); err != nil {
		return nil, nil, err
	}
	cpu := &specs.LinuxCPU{Cpus: r.CPUSetCPUs, Mems: r.CPUSetMems}
	mem := &specs.LinuxMemory{}
	lr.CPU, lr.Memory = cpu, mem
	if r.CPUPeriod != 0 {
		p := uint64(r.CPUPeriod)
		cpu.Period = &p
	}
	if r.CPUQuota != 0 {
		q := r.CPUQuota
		cpu.Quota = &q
	}
	if r.CPUShares != 0 {
		s := uint64(r.CPUShares)
		cpu.Shares = &s
	}
	// The CRI's memory_swap_limit_in_bytes and the spec's Memory.Swap are
	// both memory+swap. Without swap accounting it cannot be set and is
	// dropped, as containerd does; with it, a memory limit alone also caps
	// memory+swap, so the container does not swap.
	swap := g.host.swapAccounting()
	if r.MemoryLimit != 0 {
		l := r.MemoryLimit
		mem.Limit = &l
		if r.MemorySwapLimit == 0 && swap {
			sw := l
			mem.Swap = &sw
		}
	}
	if r.MemorySwapLimit != 0 && swap {
		sw := r.MemorySwapLimit
		mem.Swap = &sw
	}
	// Without the hugetlb controller the limits are dropped, as containerd
	// does with tolerate_missing_hugetlb_controller (its default). kubelet
	// sends a limit for every page size, 0 when none is asked for.
	if len(r.HugepageLimits) > 0 && g.host.hugetlb() {
		for _, size := range slices.Sorted(maps.Keys(r.HugepageLimits)) {
			lr.HugepageLimits = append(lr.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: size, Limit: r.HugepageLimits[size]})
		}
	}
	if len(r.Unified) > 0 {
		lr.Unified = maps.Clone(r.Unified)
	}
	adj := int(r.OOMScoreAdj)
	if g.defaults.ClampOOMScoreAdj != nil {
		adj = g.defaults.ClampOOMScoreAdj(adj)
	}
	return lr, &adj, nil
}

// checkResources refuses values no kernel accepts (the same rules as the
// pod cgroup's).
func (g *Generator) checkResources(r *Resources) error {
	switch {
	case r.CPUPeriod < 0:
		return invalidf("cpu_period %d is negative", r.CPUPeriod)
	case r.CPUQuota < -1:
		return invalidf("cpu_quota %d: want -1 (unlimited) or a positive value", r.CPUQuota)
	case r.CPUShares < 0, r.CPUShares == 1, r.CPUShares > 262144:
		return invalidf("cpu_shares %d is outside [2, 262144]", r.CPUShares)
	case r.MemoryLimit < -1:
		return invalidf("memory_limit_in_bytes %d is negative", r.MemoryLimit)
	case r.MemorySwapLimit < -1:
		return invalidf("memory_swap_limit_in_bytes %d is negative", r.MemorySwapLimit)
	case r.MemorySwapLimit > 0 && (r.MemoryLimit <= 0 || r.MemorySwapLimit < r.MemoryLimit):
		return invalidf("memory_swap_limit_in_bytes %d (memory+swap) needs a memory_limit_in_bytes no larger (have %d)",
			r.MemorySwapLimit, r.MemoryLimit)
	case r.OOMScoreAdj < -1000 || r.OOMScoreAdj > 1000:
		return invalidf("oom_score_adj %d is outside [-1000, 1000]", r.OOMScoreAdj)
	}
	for _, set := range []struct{ field, value string }{{"cpuset_cpus", r.CPUSetCPUs}, {"cpuset_mems", r.CPUSetMems}} {
		if set.value == "" {
			continue
		}
		if _, err := systemd.RangeToBits(set.value); err != nil {
			return invalidf("%s %q is not a list like \"0-2,7\": %v", set.field, set.value, err)
		}
	}
	sizes := g.host.hugePageSizes()
	for size := range r.HugepageLimits {
		if !slices.Contains(sizes, size) {
			return invalidf("hugepage_limits: page size %q is not one this node has (%v)", size, sizes)
		}
	}
	if len(r.Unified) > 0 && !g.host.cgroupV2() {
		return invalidf("unified cgroup resources (%v) need a cgroup v2 node; this one runs cgroup v1", slices.Sorted(maps.Keys(r.Unified)))
	}
	for k := range r.Unified {
		if k == "" || k == "." || k == ".." || strings.ContainsAny(k, "/\x00") {
			return invalidf("unified cgroup key %q is not a file name", k)
		}
	}
	return nil
}
