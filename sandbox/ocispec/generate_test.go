package ocispec

import (
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
)

func TestRootfs(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	in.Container.Security.ReadonlyRootfs = true
	s := mustGenerate(t, g, in).Spec
	if s.Root.Path != in.Rootfs || !s.Root.Readonly {
		t.Errorf("root = %+v, want %s read-only", s.Root, in.Rootfs)
	}
	in.Rootfs = "rootfs"
	_, err := g.Generate(in)
	wantErr(t, err, isInvalid, `"rootfs"`)
	in.Rootfs = filepath.Join(t.TempDir(), "missing")
	_, err = g.Generate(in)
	wantErr(t, err, isNotFound, "mount the container's rootfs first")
}

func TestAnnotationsAndSysctls(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	in.Container.Annotations = map[string]string{"team": "a", annotationContainerType: "forged"}
	in.Pod.Sysctls = map[string]string{"net.ipv4.ping_group_range": "0 2147483647"}
	s := mustGenerate(t, g, in).Spec
	want := map[string]string{
		"team":                  "a",
		annotationContainerType: "container",
		annotationSandboxID:     "pod1",
		annotationContainerName: "app",
	}
	if !maps.Equal(s.Annotations, want) {
		t.Errorf("annotations = %v\nwant          %v", s.Annotations, want)
	}
	if !maps.Equal(s.Linux.Sysctl, in.Pod.Sysctls) {
		t.Errorf("sysctls = %v, want %v", s.Linux.Sysctl, in.Pod.Sysctls)
	}
	in.Pod.Name, in.Pod.Namespace, in.Pod.UID, in.ImageName = "web", "default", "uid-1", "docker.io/library/nginx:1"
	s = mustGenerate(t, g, in).Spec
	for k, v := range map[string]string{
		annotationSandboxName: "web", annotationSandboxNamespace: "default", annotationSandboxUID: "uid-1", annotationImageName: "docker.io/library/nginx:1",
	} {
		if s.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, s.Annotations[k], v)
		}
	}
	if in.Container.Annotations[annotationContainerType] != "forged" {
		t.Error("the request's annotations were modified")
	}
}

func TestNoNewPrivileges(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	if mustGenerate(t, g, in).Spec.Process.NoNewPrivileges {
		t.Error("no_new_privs set without being asked for")
	}
	in.Container.Security.NoNewPrivs = true
	if !mustGenerate(t, g, in).Spec.Process.NoNewPrivileges {
		t.Error("no_new_privs not set")
	}
}

func TestPrivileged(t *testing.T) {
	g, f := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	sc := &in.Container.Security
	sc.Privileged = true
	sc.Seccomp = &Profile{Type: ProfileRuntimeDefault}
	sc.DropCapabilities = []string{"ALL"}
	sc.MaskedPaths = []string{"/proc/kcore"}
	s := mustGenerate(t, g, in).Spec
	if got := slices.Sorted(slices.Values(s.Process.Capabilities.Bounding)); !slices.Equal(got, slices.Sorted(slices.Values(f.caps))) {
		t.Errorf("capabilities = %v, want all berth holds", got)
	}
	if s.Linux.Seccomp != nil || s.Linux.MaskedPaths != nil || s.Linux.ReadonlyPaths != nil {
		t.Error("privileged container has seccomp or masked/readonly paths")
	}
	if len(s.Linux.Resources.Devices) != 1 || !s.Linux.Resources.Devices[0].Allow {
		t.Errorf("device rules = %+v, want allow-all", s.Linux.Resources.Devices)
	}
	if len(s.Linux.Devices) == 0 {
		t.Error("no host devices")
	}
}

// What Generate makes is a spec libcontainer accepts, for a plain and for a
// busy container.
func TestLibcontainerAcceptsSpec(t *testing.T) {
	g, f := newTestGenerator(t, Defaults{PidsLimit: 100})
	shared := hostDir(t)
	f.mounts[shared] = &mountinfo.Info{Mountpoint: shared, Optional: "shared:1"}
	in := baseInput(t)
	podFiles(t, &in)
	in.Container.Mounts = []Mount{
		{ContainerPath: "/data", HostPath: shared, Readonly: true, RecursiveReadonly: true},
		{ContainerPath: "/shared", HostPath: shared, Propagation: PropagationBidirection},
	}
	in.Container.Devices = []Device{{ContainerPath: "/dev/x", HostPath: "/dev/null"}}
	in.Container.Resources = &Resources{CPUShares: 512, CPUQuota: 20000, CPUPeriod: 100000, MemoryLimit: 64 << 20}
	in.Container.Security.Seccomp = &Profile{Type: ProfileRuntimeDefault}
	in.Container.Security.AddAmbientCapabilities = []string{"NET_BIND_SERVICE"}
	in.Container.Security.RunAsUser = ptr[int64](1000)
	for _, privileged := range []bool{false, true} {
		in.Container.Security.Privileged = privileged
		s := mustGenerate(t, g, in).Spec
		cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: in.ID, Spec: s})
		if err != nil {
			t.Fatalf("privileged=%v: libcontainer refuses the spec: %v", privileged, err)
		}
		if cfg.RootPropagation == 0 || cfg.Cgroups.Resources.PidsLimit == nil || *cfg.Cgroups.Resources.PidsLimit != 100 {
			t.Errorf("privileged=%v: config lost the rootfs propagation or pids limit", privileged)
		}
		if !privileged && (cfg.Seccomp == nil || cfg.Seccomp.DefaultAction != configs.Errno) {
			t.Errorf("seccomp = %+v", cfg.Seccomp)
		}
		// The standard devices (/dev/zero is 1:5) and their rules come
		// from libcontainer, after the spec's deny-all rule.
		var zeroRule bool
		for _, r := range cfg.Cgroups.Resources.Devices {
			zeroRule = zeroRule || (r.Allow && r.Major == 1 && r.Minor == 5)
		}
		if !zeroRule || !slices.ContainsFunc(cfg.Devices, func(d *config.Device) bool { return d.Path == "/dev/zero" }) {
			t.Errorf("privileged=%v: libcontainer did not add the standard devices", privileged)
		}
	}
}
