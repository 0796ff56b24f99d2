package sandbox

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/systemd"
	"golang.org/x/sys/unix"
)

func TestPodCgroupPath(t *testing.T) {
	for _, tc := range []struct{ driver, parent, podID, want string }{
		{DriverCgroupfs, "/kubepods/burstable/pod123", "p1", "/kubepods/burstable/pod123"},
		{DriverCgroupfs, "/kubepods//besteffort/pod123/", "p1", "/kubepods/besteffort/pod123"},
		{DriverCgroupfs, "", "abc", "/berth/berth-pod-abc"},
		{DriverSystemd, "kubepods-burstable-pod123.slice", "p1", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod123.slice"},
		{DriverSystemd, "kubepods-pod1_2_3.slice", "p1", "/kubepods.slice/kubepods-pod1_2_3.slice"},
		{DriverSystemd, "kubepods.slice", "p1", "/kubepods.slice"},
		{DriverSystemd, "", "abc", "/berth.slice/berth-pod_abc.slice"},
		// A "-" in the ID would nest slices; it is escaped like kubelet's pod UIDs.
		{DriverSystemd, "", "a-b", "/berth.slice/berth-pod_a_b.slice"},
	} {
		got, err := podCgroupPath(tc.driver, tc.parent, tc.podID)
		if err != nil || got != tc.want {
			t.Errorf("podCgroupPath(%q, %q, %q) = %q, %v; want %q", tc.driver, tc.parent, tc.podID, got, err, tc.want)
		}
	}
}

func TestEnsurePodCgroupInvalid(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ driver, parent, podID string }{
		{DriverCgroupfs, "kubepods/pod1", "p"},
		{DriverCgroupfs, "kubepods-pod1.slice", "p"},
		{DriverCgroupfs, "/kubepods/../etc", "p"},
		{DriverCgroupfs, "/..", "p"},
		{DriverCgroupfs, "/", "p"},
		{DriverCgroupfs, "/kube\x00pods", "p"},
		{DriverSystemd, "/kubepods/pod1", "p"},
		{DriverSystemd, "kubepods-pod1", "p"},
		{DriverSystemd, "kubepods--pod1.slice", "p"},
		{DriverSystemd, "-kubepods.slice", "p"},
		{DriverSystemd, ".slice", "p"},
		{DriverSystemd, "-.slice", "p"},
		{DriverSystemd, "kube/pods.slice", "p"},
		{DriverSystemd, "kube pods.slice", "p"},
		{"", "/kubepods/pod1", "p"},
		{"cgroupv3", "/kubepods/pod1", "p"},
		{DriverCgroupfs, "", ""},
		{DriverCgroupfs, "", "a/b"},
		{DriverSystemd, "", "a b"},
	} {
		_, err := EnsurePodCgroup(ctx, tc.driver, tc.parent, tc.podID, nil)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("EnsurePodCgroup(%q, %q, %q) = %v; want InvalidArgument", tc.driver, tc.parent, tc.podID, err)
		}
	}
	bad := []*Resources{{CPUShares: 1}, {CPUShares: -5}, {CPUQuota: -2}, {MemoryLimit: -3},
		{MemoryLimit: 100 << 20, MemorySwapLimit: 50 << 20}, {MemorySwapLimit: 50 << 20}, {HugepageLimits: map[string]uint64{"3MB": 1}},
		{Unified: map[string]string{"../memory.max": "1"}}}
	for _, res := range bad {
		if _, err := EnsurePodCgroup(ctx, DriverCgroupfs, "/berth-test-never/pod", "p", res); !errdefs.IsInvalidArgument(err) {
			t.Errorf("EnsurePodCgroup with %+v = %v; want InvalidArgument", res, err)
		}
	}
}

func TestSystemdDriverWithoutSystemd(t *testing.T) {
	if systemd.IsRunningSystemd() {
		t.Skip("systemd is running here")
	}
	_, err := EnsurePodCgroup(context.Background(), DriverSystemd, "kubepods-besteffort-pod1.slice", "p", nil)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "systemd") {
		t.Fatalf("EnsurePodCgroup(systemd) without systemd = %v; want FailedPrecondition naming systemd", err)
	}
	cg := LoadPodCgroup(CgroupState{Driver: DriverSystemd, Path: "/kubepods.slice/kubepods-pod1.slice", Owned: true})
	if _, err := cg.Stats(); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Stats of a systemd cgroup without systemd = %v; want FailedPrecondition", err)
	}
	// A record that does not expand back to itself is not a slice path.
	cg = LoadPodCgroup(CgroupState{Driver: DriverSystemd, Path: "/kubepods/pod1.slice", Owned: true})
	if err := cg.Remove(); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Remove of an invalid systemd record = %v; want InvalidArgument", err)
	}
}

func TestResourcesWithOverhead(t *testing.T) {
	base := &Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20,
		MemorySwapLimit: 128 << 20, CPUSetCPUs: "0", HugepageLimits: map[string]uint64{"2MB": 2 << 20}}
	got := base.WithOverhead(&Resources{CPUShares: 100, CPUQuota: 5000, CPUPeriod: 50000, MemoryLimit: 16 << 20})
	want := Resources{CPUShares: 612, CPUQuota: 60000, CPUPeriod: 100000, MemoryLimit: 80 << 20,
		MemorySwapLimit: 144 << 20, CPUSetCPUs: "0"}
	if got.CPUShares != want.CPUShares || got.CPUQuota != want.CPUQuota || got.CPUPeriod != want.CPUPeriod ||
		got.MemoryLimit != want.MemoryLimit || got.MemorySwapLimit != want.MemorySwapLimit || got.CPUSetCPUs != "0" {
		t.Errorf("WithOverhead = %+v; want %+v", *got, want)
	}
	got.HugepageLimits["2MB"] = 0
	if base.HugepageLimits["2MB"] != 2<<20 || base.CPUShares != 512 {
		t.Error("WithOverhead changed its receiver")
	}
	// Unlimited stays unlimited; shares still add up.
	got = (&Resources{CPUQuota: -1}).WithOverhead(&Resources{CPUShares: 10, CPUQuota: 5000, MemoryLimit: 1 << 20})
	if got.CPUQuota != -1 || got.MemoryLimit != 0 || got.CPUShares != 10 {
		t.Errorf("WithOverhead on unlimited = %+v", *got)
	}
	if (*Resources)(nil).WithOverhead(&Resources{CPUShares: 10}) != nil {
		t.Error("nil.WithOverhead is not nil")
	}
	if got := base.WithOverhead(nil); got.CPUShares != 512 || got == base {
		t.Errorf("WithOverhead(nil) = %+v, same pointer %v", got, got == base)
	}
}

func TestCgroupResources(t *testing.T) {
	// The library leaves the v1 shares -> v2 weight conversion to its caller.
	for shares, weight := range map[int64]uint64{0: 0, 2: 1, 1024: 100, 262144: 10000} {
		cr, err := (&Resources{CPUShares: shares}).CgroupResources()
		if err != nil || cr.CpuShares != uint64(shares) || cr.CpuWeight != weight || !cr.SkipDevices {
			t.Errorf("CgroupResources(shares %d) = %+v, %v; want weight %d", shares, cr, err, weight)
		}
	}
	cr, err := (*Resources)(nil).CgroupResources()
	if err != nil || cr == nil || !cr.SkipDevices {
		t.Errorf("nil.CgroupResources() = %+v, %v", cr, err)
	}
	_, err = (&Resources{Unified: map[string]string{"memory.high": "max"}}).CgroupResources()
	if v2 := cgroups.IsCgroup2UnifiedMode(); v2 != (err == nil) || !v2 && !errdefs.IsInvalidArgument(err) {
		t.Errorf("unified resources on v2=%v: %v", v2, err)
	}
	if sizes := cgroups.HugePageSizes(); len(sizes) > 0 {
		_, err := (&Resources{HugepageLimits: map[string]uint64{sizes[0]: 0}}).CgroupResources()
		if hugetlbAvailable() != (err == nil) || err != nil && !errdefs.IsFailedPrecondition(err) {
			t.Errorf("huge page limit with hugetlb available=%v: %v", hugetlbAvailable(), err)
		}
	}
}

func TestClampOOMScoreAdj(t *testing.T) {
	for _, tc := range []struct {
		requested, current int
		privileged         bool
		want               int
	}{
		{-998, 0, false, 0}, {-998, 0, true, -998}, {-998, -999, false, -998},
		{500, 0, false, 500}, {1500, 0, false, 1000}, {-1500, 0, true, -1000}, {-5, 100, false, 100},
	} {
		if got := clampOOMScoreAdj(tc.requested, tc.current, tc.privileged); got != tc.want {
			t.Errorf("clampOOMScoreAdj(%d, %d, %v) = %d; want %d", tc.requested, tc.current, tc.privileged, got, tc.want)
		}
	}
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	current, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if got := ClampOOMScoreAdj(1000); got != 1000 {
		t.Errorf("ClampOOMScoreAdj(1000) = %d", got)
	}
	got := ClampOOMScoreAdj(-998)
	if hasCapSysResource() && got != -998 || !hasCapSysResource() && got != max(current, -998) {
		t.Errorf("ClampOOMScoreAdj(-998) = %d (current %d, CAP_SYS_RESOURCE %v)", got, current, hasCapSysResource())
	}

	// What the kernel says: the clamped value can be given to a child,
	// the raw request only with CAP_SYS_RESOURCE.
	child := startChild(t, exec.Command("sleep", "60"))
	adj := filepath.Join("/proc", strconv.Itoa(child.Process.Pid), "oom_score_adj")
	if err := os.WriteFile(adj, []byte(strconv.Itoa(got)), 0); err != nil {
		t.Errorf("writing the clamped oom_score_adj %d: %v", got, err)
	}
	err = os.WriteFile(adj, []byte("-998"), 0)
	if !hasCapSysResource() && current > -998 && !errors.Is(err, unix.EACCES) {
		t.Errorf("writing oom_score_adj -998 without CAP_SYS_RESOURCE = %v; want EACCES", err)
	}
}

// checkLimits asserts the limits of cgroup rel as the kernel reports them.
func checkLimits(t *testing.T, rel string, mem, quota, period, shares int64) {
	t.Helper()
	got := map[string]string{}
	want := map[string]string{}
	if cgroups.IsCgroup2UnifiedMode() {
		for _, f := range []string{"memory.max", "cpu.max", "cpu.weight"} {
			got[f] = cgroupValue(t, rel, f)
		}
		want["memory.max"] = strconv.FormatInt(mem, 10)
		want["cpu.max"] = strconv.FormatInt(quota, 10) + " " + strconv.FormatInt(period, 10)
		want["cpu.weight"] = strconv.FormatUint(cgroups.ConvertCPUSharesToCgroupV2Value(uint64(shares)), 10)
	} else {
		for _, f := range []string{"memory.limit_in_bytes", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.shares"} {
			got[f] = cgroupValue(t, rel, f)
		}
		want["memory.limit_in_bytes"] = strconv.FormatInt(mem, 10)
		want["cpu.cfs_quota_us"] = strconv.FormatInt(quota, 10)
		want["cpu.cfs_period_us"] = strconv.FormatInt(period, 10)
		want["cpu.shares"] = strconv.FormatInt(shares, 10)
	}
	for f, w := range want {
		if got[f] != w {
			t.Errorf("%s of %s = %q; want %q", f, rel, got[f], w)
		}
	}
}

func TestPodCgroupOwnedLifecycle(t *testing.T) {
	requireRoot(t)
	parent := testTop(t) + "/pod" + randomName(t)
	res := (&Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20}).
		WithOverhead(&Resources{CPUShares: 100, CPUQuota: 10000, MemoryLimit: 16 << 20})
	cg, err := EnsurePodCgroup(context.Background(), DriverCgroupfs, parent, "p1", res)
	if err != nil {
		t.Fatal(err)
	}
	if cg.Path() != parent || !cg.Owned() {
		t.Fatalf("Path() = %q, Owned() = %v; want %q, true", cg.Path(), cg.Owned(), parent)
	}
	if n, of := existsIn(t, parent); n != of {
		t.Fatalf("pod cgroup exists in %d of %d hierarchies", n, of)
	}
	checkLimits(t, parent, 80<<20, 60000, 100000, 612)

	// Re-attached from its record, as after a daemon restart.
	cg = LoadPodCgroup(cg.State())
	if err := cg.Update(&Resources{CPUShares: 256, CPUQuota: 20000, MemoryLimit: 128 << 20}); err != nil {
		t.Fatal(err)
	}
	checkLimits(t, parent, 128<<20, 20000, 100000, 256)
	if err := cg.Update(&Resources{CPUShares: 1}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Update with 1 CPU share = %v; want InvalidArgument", err)
	}

	if err := cg.Remove(); err != nil {
		t.Fatal(err)
	}
	if n, _ := existsIn(t, parent); n != 0 {
		t.Fatalf("pod cgroup left in %d hierarchies after Remove", n)
	}
	if err := cg.Remove(); err != nil {
		t.Errorf("second Remove = %v; want success", err)
	}
	if err := cg.Update(&Resources{CPUShares: 256}); !errdefs.IsNotFound(err) {
		t.Errorf("Update of a removed cgroup = %v; want NotFound", err)
	}
	if _, err := cg.Stats(); !errdefs.IsNotFound(err) {
		t.Errorf("Stats of a removed cgroup = %v; want NotFound", err)
	}
}

func TestPodCgroupExistingParentNotOwned(t *testing.T) {
	requireRoot(t)
	parent := testTop(t) + "/pod" + randomName(t)
	// Stand in for kubelet, which creates the pod cgroup before RunPodSandbox.
	for _, h := range hierarchies(t) {
		if err := os.MkdirAll(filepath.Join(h, parent), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cg, err := EnsurePodCgroup(context.Background(), DriverCgroupfs, parent, "p1",
		&Resources{CPUShares: 300, CPUQuota: 30000, MemoryLimit: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if cg.Owned() {
		t.Error("a pre-existing pod cgroup is reported as owned")
	}
	checkLimits(t, parent, 32<<20, 30000, 100000, 300)
	if err := cg.Remove(); err != nil {
		t.Fatal(err)
	}
	if n, of := existsIn(t, parent); n != of {
		t.Errorf("Remove of kubelet's cgroup left it in only %d of %d hierarchies", n, of)
	}
}

func TestPodCgroupDefaultParent(t *testing.T) {
	requireRoot(t)
	_, err := os.Stat(cgroupDir(t, DefaultCgroupfsParent, "memory"))
	if errors.Is(err, os.ErrNotExist) {
		// Only if empty: other tests or a daemon may have pods below it now.
		t.Cleanup(func() {
			for _, h := range hierarchies(t) {
				_ = unix.Rmdir(filepath.Join(h, DefaultCgroupfsParent))
			}
		})
	}
	podID := "berth-test-" + randomName(t)
	cg, err := EnsurePodCgroup(context.Background(), DriverCgroupfs, "", podID, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeEverywhere(t, cg.Path()) })
	if want := DefaultCgroupfsParent + "/berth-pod-" + podID; cg.Path() != want || !cg.Owned() {
		t.Fatalf("Path() = %q, Owned() = %v; want %q, true", cg.Path(), cg.Owned(), want)
	}
	// Below berth's own parent the cgroup is berth's even if it exists
	// already (a crash before its record was written).
	again, err := EnsurePodCgroup(context.Background(), DriverCgroupfs, "", podID, nil)
	if err != nil || !again.Owned() {
		t.Fatalf("second EnsurePodCgroup = owned %v, %v", again != nil && again.Owned(), err)
	}
	if err := again.Remove(); err != nil {
		t.Fatal(err)
	}
	if n, _ := existsIn(t, cg.Path()); n != 0 {
		t.Errorf("pod cgroup left in %d hierarchies", n)
	}
}

func TestEnsurePodCgroupRollsBack(t *testing.T) {
	requireRoot(t)
	parent := testTop(t) + "/pod" + randomName(t)
	// Valid to look at, refused by the kernel: no such CPU.
	_, err := EnsurePodCgroup(context.Background(), DriverCgroupfs, parent, "p1", &Resources{CPUSetCPUs: "4095"})
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("EnsurePodCgroup with cpuset 4095 = %v; want InvalidArgument", err)
	}
	if n, _ := existsIn(t, parent); n != 0 {
		t.Errorf("failed EnsurePodCgroup left the cgroup in %d hierarchies", n)
	}
}
