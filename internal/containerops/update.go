package containerops

// Updating a live container's cgroup limits, as `runc update` does
// (runc's update.go), from an OCI LinuxResources.

import (
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// withResources returns a copy of cfg with r applied. Config() copies only
// the top level; the cgroup settings are copied here so that a refused
// update leaves the container's configuration untouched (libcontainer
// rolls back to it). SkipDevices is set, as runc update does (it cannot
// change the device rules, and an extra plugin may have added some); it is
// not saved in the container's state.
func withResources(cfg configs.Config, r *specs.LinuxResources) configs.Config {
	cg := *cfg.Cgroups
	res := *cg.Resources
	cg.Resources = &res
	cfg.Cgroups = &cg

	if mem := r.Memory; mem != nil {
		if mem.Limit != nil {
			res.Memory = *mem.Limit
			// As runc update: with an unlimited memory and no swap given,
			// leave the swap limit alone (0 is "not set").
			if *mem.Limit == -1 && mem.Swap == nil {
				res.MemorySwap = 0
			}
		}
		if mem.Swap != nil {
			res.MemorySwap = *mem.Swap
		}
		if mem.Reservation != nil {
			res.MemoryReservation = *mem.Reservation
		}
		if mem.CheckBeforeUpdate != nil {
			res.MemoryCheckBeforeUpdate = *mem.CheckBeforeUpdate
		}
	}
	if cpu := r.CPU; cpu != nil {
		if cpu.Shares != nil {
			res.CpuShares = *cpu.Shares
			res.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(*cpu.Shares)
		}
		// Quota and period alone leave the other at its old value, as in
		// runc update.
		if cpu.Quota != nil {
			res.CpuQuota = *cpu.Quota
		}
		if cpu.Period != nil {
			res.CpuPeriod = *cpu.Period
		}
		if cpu.Burst != nil {
			res.CpuBurst = cpu.Burst
		}
		if cpu.RealtimePeriod != nil {
			res.CpuRtPeriod = *cpu.RealtimePeriod
		}
		if cpu.RealtimeRuntime != nil {
			res.CpuRtRuntime = *cpu.RealtimeRuntime
		}
		if cpu.Cpus != "" {
			res.CpusetCpus = cpu.Cpus
		}
		if cpu.Mems != "" {
			res.CpusetMems = cpu.Mems
		}
		if cpu.Idle != nil {
			res.CPUIdle = cpu.Idle
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		limit := *r.Pids.Limit
		res.PidsLimit = &limit
	}
	if r.BlockIO != nil && r.BlockIO.Weight != nil {
		res.BlkioWeight = *r.BlockIO.Weight
	}
	if len(r.HugepageLimits) > 0 {
		res.HugetlbLimit = upsertHugepages(res.HugetlbLimit, r.HugepageLimits)
	}
	if r.Unified != nil {
		res.Unified = r.Unified // replaced, as by runc update
	}
	res.SkipDevices = true
	return cfg
}

// upsertHugepages replaces the limits of the page sizes in with, keeping
// the others.
func upsertHugepages(cur []*cgroups.HugepageLimit, with []specs.LinuxHugepageLimit) []*cgroups.HugepageLimit {
	out := make([]*cgroups.HugepageLimit, 0, len(cur)+len(with))
	seen := make(map[string]bool, len(with))
	for _, h := range with {
		seen[h.Pagesize] = true
		out = append(out, &cgroups.HugepageLimit{Pagesize: h.Pagesize, Limit: h.Limit})
	}
	for _, h := range cur {
		if !seen[h.Pagesize] {
			out = append(out, h)
		}
	}
	return out
}
