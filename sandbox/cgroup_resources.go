package sandbox

// The pod cgroup's limits: what berth writes (Resources), with the pod
// overhead added, checked before anything is created.

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
)

// Resources are a pod cgroup's limits. Zero means "unset: leave as is";
// -1 means unlimited for CPUQuota, MemoryLimit and MemorySwapLimit.
type Resources struct {
	CPUPeriod, CPUQuota, CPUShares int64
	MemoryLimit                    int64
	// MemorySwapLimit is memory+swap, as on cgroup v1 and in the CRI.
	MemorySwapLimit        int64
	CPUSetCPUs, CPUSetMems string
	// HugepageLimits maps a page size ("2MB", "1GB") to a limit in bytes.
	HugepageLimits map[string]uint64
	// Unified holds raw cgroup v2 files; rejected on cgroup v1.
	Unified map[string]string
}

// WithOverhead returns r plus the pod overhead o, as kubelet sizes a pod
// cgroup: CPU shares always add up; a CPU quota or memory limit is only
// raised when r has one, because an unlimited pod stays unlimited. A nil r
// (no pod-level resources asked for) has nothing to add to and stays nil.
func (r *Resources) WithOverhead(o *Resources) *Resources {
	if r == nil {
		return nil
	}
	out := *r
	out.HugepageLimits = maps.Clone(r.HugepageLimits)
	out.Unified = maps.Clone(r.Unified)
	if o == nil {
		return &out
	}
	if o.CPUShares > 0 {
		out.CPUShares = min(out.CPUShares+o.CPUShares, 262144)
	}
	if out.CPUQuota > 0 && o.CPUQuota > 0 {
		// Quotas are per period: scale the overhead's to r's period.
		out.CPUQuota += o.CPUQuota * cfsPeriod(out.CPUPeriod) / cfsPeriod(o.CPUPeriod)
	}
	if out.MemoryLimit > 0 && o.MemoryLimit > 0 {
		out.MemoryLimit += o.MemoryLimit
	}
	if out.MemorySwapLimit > 0 {
		out.MemorySwapLimit += max(o.MemorySwapLimit, o.MemoryLimit, 0)
	}
	return &out
}

func cfsPeriod(p int64) int64 {
	if p <= 0 {
		return 100000 // the kernel's default, on v1 and v2
	}
	return p
}

// Validate rejects values no cgroup version accepts, before anything is
// created, so a bad request leaves no half-made cgroup behind.
func (r *Resources) Validate() error {
	if r == nil {
		return nil
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{errdefs.ErrInvalidArgument}, args...)...)
	}
	switch {
	case r.CPUPeriod < 0:
		return bad("negative CPU period %d", r.CPUPeriod)
	case r.CPUQuota < -1:
		return bad("CPU quota %d (want -1 for unlimited or a positive value)", r.CPUQuota)
	case r.CPUShares < 0, r.CPUShares == 1, r.CPUShares > 262144:
		// The kernel silently clamps v1 shares to [2, 262144].
		return bad("CPU shares %d outside [2, 262144]", r.CPUShares)
	case r.MemoryLimit < -1:
		return bad("memory limit %d", r.MemoryLimit)
	case r.MemorySwapLimit < -1:
		return bad("memory+swap limit %d", r.MemorySwapLimit)
	case r.MemorySwapLimit > 0 && (r.MemoryLimit <= 0 || r.MemorySwapLimit < r.MemoryLimit):
		// Both kernels (and the v2 conversion) need memory <= memory+swap.
		return bad("memory+swap limit %d needs a memory limit no larger (have %d)", r.MemorySwapLimit, r.MemoryLimit)
	}
	for size := range r.HugepageLimits {
		if !slices.Contains(cgroups.HugePageSizes(), size) {
			return bad("huge page size %q not supported by this host (have %v)", size, cgroups.HugePageSizes())
		}
	}
	for k := range r.Unified {
		if k == "" || strings.ContainsAny(k, "/\x00") || k == "." || k == ".." {
			return bad("unified cgroup key %q is not a file name", k)
		}
	}
	return nil
}

// CgroupResources converts r for the opencontainers/cgroups managers.
func (r *Resources) CgroupResources() (*cgroups.Resources, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	// A pod cgroup restricts no devices (each container gets its own rules),
	// and changing its limits never needs the freeze done around device updates.
	cr := &cgroups.Resources{SkipDevices: true, SkipFreezeOnSet: true}
	if r == nil {
		return cr, nil
	}
	cr.CpuPeriod = uint64(r.CPUPeriod)
	cr.CpuQuota = r.CPUQuota
	cr.CpuShares = uint64(r.CPUShares)
	// The v2 managers read only CpuWeight and leave the shares conversion to
	// the caller; the v1 ones ignore CpuWeight, so setting both is safe.
	cr.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(cr.CpuShares)
	cr.Memory = r.MemoryLimit
	cr.MemorySwap = r.MemorySwapLimit // the v2 managers subtract memory themselves
	cr.CpusetCpus, cr.CpusetMems = r.CPUSetCPUs, r.CPUSetMems
	for _, size := range slices.Sorted(maps.Keys(r.HugepageLimits)) {
		cr.HugetlbLimit = append(cr.HugetlbLimit, &cgroups.HugepageLimit{Pagesize: size, Limit: r.HugepageLimits[size]})
	}
	if len(cr.HugetlbLimit) > 0 && !hugetlbAvailable() {
		return nil, fmt.Errorf("%w: huge page limits asked for, but the hugetlb cgroup controller is not available", errdefs.ErrFailedPrecondition)
	}
	if len(r.Unified) > 0 {
		if !cgroups.IsCgroup2UnifiedMode() {
			return nil, fmt.Errorf("%w: unified cgroup resources need a cgroup v2 host", errdefs.ErrInvalidArgument)
		}
		cr.Unified = maps.Clone(r.Unified)
	}
	return cr, nil
}

func hugetlbAvailable() bool {
	if cgroups.IsCgroup2UnifiedMode() {
		b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		return err == nil && slices.Contains(strings.Fields(string(b)), "hugetlb")
	}
	_, err := cgroups.FindCgroupMountpoint("", "hugetlb")
	return err == nil
}
