package sandbox

// The pod cgroup's usage as berth reads it back for the CRI stats RPCs.

import (
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
)

// CgroupStats is a snapshot of a pod cgroup's usage, in the terms kubelet's
// summary API uses.
type CgroupStats struct {
	Timestamp time.Time
	// CPUUsageNanos is cumulative CPU time since the cgroup was created.
	CPUUsageNanos uint64
	MemoryUsage   uint64
	// MemoryWorkingSet is usage minus inactive file pages (reclaimable
	// cache), as cAdvisor computes it; kubelet evicts on it.
	MemoryWorkingSet uint64
	// MemoryRSS is anonymous memory (v1 total_rss, v2 anon).
	MemoryRSS uint64
	// MemoryLimit is 0 when unlimited; MemoryAvailable (limit minus working
	// set) is then 0 as well and means nothing.
	MemoryLimit, MemoryAvailable uint64
	// SwapUsage is swap alone, not memory+swap.
	SwapUsage                   uint64
	PageFaults, MajorPageFaults uint64
	// Pids counts tasks (threads) as pids.current does; containerd reports
	// the same number as the CRI process count.
	Pids uint64
}

// memoryUnlimited is above any real limit: v1 reports "no limit" as
// 0x7ffffffffffff000, v2 as "max" (MaxUint64 here).
const memoryUnlimited = 1 << 62

// Stats reads the cgroup's CPU, memory and pids usage.
func (c *PodCgroup) Stats() (*CgroupStats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	mgr, err := c.existing()
	if err != nil {
		return nil, err
	}
	// Only the controllers used: blkio and NUMA-wide stats are not cheap.
	st, err := mgr.Stats(&cgroups.StatsOptions{Controllers: cgroups.CPU | cgroups.Memory | cgroups.Pids})
	if err != nil && !statsPathsExist(mgr) {
		// Removed while its files were read (kubelet deleting it, or a
		// RemovePodSandbox): the read fails in many ways (ENOENT, ENODEV,
		// a half-read file); what matters is that the cgroup is gone.
		return nil, fmt.Errorf("%w: pod cgroup %s went away while its stats were read: %v", errdefs.ErrNotFound, c.state.Path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("stats of pod cgroup %s: %w", c.state.Path, err)
	}
	mem := st.MemoryStats
	// v1 names the hierarchical (this cgroup and below) counters total_*;
	// v2 counters are always hierarchical and unprefixed.
	stat := func(name string) uint64 {
		if v, ok := mem.Stats["total_"+name]; ok {
			return v
		}
		return mem.Stats[name]
	}
	out := &CgroupStats{
		Timestamp:       time.Now(),
		CPUUsageNanos:   st.CpuStats.CpuUsage.TotalUsage,
		MemoryUsage:     mem.Usage.Usage,
		SwapUsage:       mem.SwapOnlyUsage.Usage,
		PageFaults:      stat("pgfault"),
		MajorPageFaults: stat("pgmajfault"),
		Pids:            st.PidsStats.Current,
	}
	if _, v1 := mem.Stats["total_rss"]; v1 {
		out.MemoryRSS = mem.Stats["total_rss"]
		// The library computes v1 swap as memsw minus usage, read apart:
		// without swap accounting (no memsw files) or in a race it wraps.
		if mem.SwapUsage.Usage < mem.Usage.Usage {
			out.SwapUsage = 0
		}
	} else {
		out.MemoryRSS = mem.Stats["anon"]
	}
	if inactive := stat("inactive_file"); out.MemoryUsage > inactive {
		out.MemoryWorkingSet = out.MemoryUsage - inactive
	}
	if limit := mem.Usage.Limit; limit > 0 && limit < memoryUnlimited {
		out.MemoryLimit = limit
		if limit > out.MemoryWorkingSet {
			out.MemoryAvailable = limit - out.MemoryWorkingSet
		}
	}
	return out, nil
}
