package containerops

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runOp runs Main's body in-process and decodes its Failure line, if any.
func runOp(t *testing.T, stdin string, args ...string) (int, Failure, string) {
	t.Helper()
	var out bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out)
	var f Failure
	if out.Len() > 0 && !strings.Contains(out.String(), `"pid"`) {
		if err := json.Unmarshal(out.Bytes(), &f); err != nil {
			t.Fatalf("output %q: %v", out.String(), err)
		}
		if strings.Count(out.String(), "\n") != 1 || !strings.HasSuffix(out.String(), "\n") {
			t.Fatalf("output %q is not one line", out.String())
		}
	}
	return code, f, out.String()
}

func TestBadCommandLines(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frob", "--root", "/r", "--id", "a"},
		{"create", "--root", "/r", "--id", "a"},
		{"delete", "--root", "/r"},
		{"kill", "--root", "/r", "--id", "a"},
		{"kill", "--root", "/r", "--id", "a", "--signal", "65"},
		{"delete", "--root", "/r", "--id", "a", "extra"},
		{"delete", "--root", "/r", "--id", "a", "--tty"},
	} {
		code, f, _ := runOp(t, "", args...)
		if code != 2 || f.Code != monitorapi.CodeInvalidArgument || !strings.Contains(f.Error, Command) {
			t.Errorf("%q: exit %d, %+v; want 2 and invalid-argument", args, code, f)
		}
	}
}

func TestMissingContainer(t *testing.T) {
	root := t.TempDir()
	// delete and kill of what does not exist succeed, silently.
	for _, args := range [][]string{
		{"delete", "--root", root, "--id", "gone"},
		{"kill", "--root", root, "--id", "gone", "--signal", "9"},
		{"kill", "--root", root, "--id", "gone", "--signal", "15", "--all"},
	} {
		if code, _, out := runOp(t, "", args...); code != 0 || out != "" {
			t.Errorf("%q: exit %d, output %q", args, code, out)
		}
	}
	code, f, _ := runOp(t, `{"pids": {"limit": 5}}`, "update", "--root", root, "--id", "gone")
	if code != 1 || f.Code != monitorapi.CodeNotFound {
		t.Errorf("update of a missing container: exit %d, %+v", code, f)
	}
	for _, in := range []string{"", "null", "{bad", `"text"`} {
		code, f, _ := runOp(t, in, "update", "--root", root, "--id", "gone")
		if code != 1 || f.Code != monitorapi.CodeInvalidArgument {
			t.Errorf("update with resources %q: exit %d, %+v", in, code, f)
		}
	}
	// A bundle that is not there is the caller's mistake.
	code, f, _ = runOp(t, "", "create", "--root", root, "--id", "c", "--bundle", t.TempDir())
	if code != 1 || f.Code != monitorapi.CodeInvalidArgument || !strings.Contains(f.Error, "config.json") {
		t.Errorf("create without a config.json: exit %d, %+v", code, f)
	}
}

func TestValidateSpec(t *testing.T) {
	good := func() *specs.Spec {
		return &specs.Spec{
			Root:    &specs.Root{Path: "/rootfs"},
			Process: &specs.Process{Cwd: "/", Args: []string{"sh"}},
			Linux:   &specs.Linux{},
		}
	}
	if err := validateSpec(good()); err != nil {
		t.Fatal(err)
	}
	for what, mutate := range map[string]func(*specs.Spec){
		"root.path":    func(s *specs.Spec) { s.Root = nil },
		"absolute":     func(s *specs.Spec) { s.Root.Path = "rootfs" },
		"linux":        func(s *specs.Spec) { s.Linux = nil },
		"process":      func(s *specs.Spec) { s.Process = nil },
		"process.cwd":  func(s *specs.Spec) { s.Process.Cwd = "." },
		"process.args": func(s *specs.Spec) { s.Process.Args = nil },
	} {
		s := good()
		mutate(s)
		if err := validateSpec(s); err == nil || !strings.Contains(err.Error(), what) {
			t.Errorf("%s: %v", what, err)
		}
	}
	if _, err := newProcess(&specs.Process{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS"}}}); err == nil {
		t.Error("an unknown rlimit was accepted")
	}
}

func TestWithResources(t *testing.T) {
	mem, swap, pids := int64(64<<20), int64(128<<20), int64(7)
	orig := configs.Config{Cgroups: &cgroups.Cgroup{Resources: &cgroups.Resources{
		Memory: mem, MemorySwap: swap, CpuShares: 1024, CpuQuota: 50000, CpuPeriod: 100000,
		HugetlbLimit: []*cgroups.HugepageLimit{{Pagesize: "2MB", Limit: 1}, {Pagesize: "1GB", Limit: 2}},
	}}}
	before := *orig.Cgroups.Resources
	unlimited, shares, quota := int64(-1), uint64(512), int64(20000)
	got := withResources(orig, &specs.LinuxResources{
		Memory:         &specs.LinuxMemory{Limit: &unlimited},
		CPU:            &specs.LinuxCPU{Shares: &shares, Quota: &quota},
		Pids:           &specs.LinuxPids{Limit: &pids},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 10}},
	})
	// The original is untouched: a refused update rolls back to it.
	if !reflect.DeepEqual(*orig.Cgroups.Resources, before) {
		t.Fatalf("the original changed: %+v", *orig.Cgroups.Resources)
	}
	r := got.Cgroups.Resources
	switch {
	case r.Memory != -1 || r.MemorySwap != 0:
		t.Errorf("memory %d swap %d, want -1 and 0 (left alone)", r.Memory, r.MemorySwap)
	case r.CpuShares != 512 || r.CpuWeight != cgroups.ConvertCPUSharesToCgroupV2Value(512):
		t.Errorf("shares %d weight %d", r.CpuShares, r.CpuWeight)
	case r.CpuQuota != 20000 || r.CpuPeriod != 100000:
		t.Errorf("quota %d period %d: the period must stay", r.CpuQuota, r.CpuPeriod)
	case r.PidsLimit == nil || *r.PidsLimit != 7:
		t.Errorf("pids %v", r.PidsLimit)
	case !r.SkipDevices:
		t.Error("SkipDevices not set")
	}
	limits := map[string]uint64{}
	for _, h := range r.HugetlbLimit {
		limits[h.Pagesize] = h.Limit
	}
	if !reflect.DeepEqual(limits, map[string]uint64{"2MB": 10, "1GB": 2}) {
		t.Errorf("hugepages %v", limits)
	}
}
