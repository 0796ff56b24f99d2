package cri

import (
	"testing"

	"github.com/berth-runtime/berth/image"
	"github.com/berth-runtime/berth/sandbox/ocispec"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestToProfile(t *testing.T) {
	for _, tc := range []struct {
		p      *runtimeapi.SecurityProfile
		legacy string
		want   *ocispec.Profile
	}{
		{nil, "", nil},
		{nil, "runtime/default", &ocispec.Profile{Type: ocispec.ProfileRuntimeDefault}},
		{nil, "docker/default", &ocispec.Profile{Type: ocispec.ProfileRuntimeDefault}},
		{nil, "unconfined", &ocispec.Profile{Type: ocispec.ProfileUnconfined}},
		{nil, "localhost//etc/p.json", &ocispec.Profile{Type: ocispec.ProfileLocalhost, LocalhostRef: "/etc/p.json"}},
		{&runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "p.json"}, "unconfined",
			&ocispec.Profile{Type: ocispec.ProfileLocalhost, LocalhostRef: "p.json"}},
	} {
		got, err := toProfile("seccomp", tc.p, tc.legacy)
		if err != nil || (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
			t.Errorf("toProfile(%v, %q) = %+v, %v; want %+v", tc.p, tc.legacy, got, err, tc.want)
		}
	}
	if _, err := toProfile("seccomp", nil, "bogus"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("unknown legacy profile: %v", err)
	}
	if _, err := toProfile("seccomp", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost}, ""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Localhost without a ref: %v", err)
	}
}

func TestStopSignalNames(t *testing.T) {
	if got := stopSignalName(runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT); got != "" {
		t.Errorf("default: %q", got)
	}
	if got := stopSignalName(runtimeapi.Signal_SIGNAL_SIGUSR1); got != "SIGUSR1" {
		t.Errorf("SIGUSR1: %q", got)
	}
	if got := toCRISignal("SIGUSR1"); got != runtimeapi.Signal_SIGNAL_SIGUSR1 {
		t.Errorf("toCRISignal: %v", got)
	}
	if got := toCRISignal(""); got != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		t.Errorf("toCRISignal empty: %v", got)
	}
}

func TestToContainerConfig(t *testing.T) {
	img := image.Image{ID: "sha256:abc", RepoTags: []string{"example.com/a:1"}, RepoDigests: []string{"example.com/a@sha256:def"}}
	c := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app", Attempt: 2},
		Image:    &runtimeapi.ImageSpec{Image: "a:1"},
		Command:  []string{"sh"},
		Envs:     []*runtimeapi.KeyValue{{Key: "A", Value: []byte("1")}},
		Mounts:   []*runtimeapi.Mount{{ContainerPath: "/m", HostPath: "/h", Readonly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}},
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 20,
				HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}}},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				RunAsUser:        &runtimeapi.Int64Value{Value: 7},
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "other"},
			},
		},
		StopSignal: runtimeapi.Signal_SIGNAL_SIGINT,
	}
	cfg, err := toContainerConfig(c, img)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Metadata.Name != "app" || cfg.Metadata.Attempt != 2 || cfg.TargetID != "other" || cfg.StopSignalArg != "SIGINT" {
		t.Errorf("config %+v", cfg)
	}
	if cfg.Image.ID != "sha256:abc" || cfg.Image.Ref != "example.com/a@sha256:def" || cfg.Image.Name != "example.com/a:1" || cfg.Image.Requested != "a:1" {
		t.Errorf("image %+v", cfg.Image)
	}
	s := cfg.Spec
	if *s.Security.RunAsUser != 7 || s.Security.PIDNS != ocispec.NamespaceTarget || s.Resources.MemoryLimit != 1<<20 ||
		s.Resources.HugepageLimits["2MB"] != 4<<20 || s.Env[0] != (ocispec.KeyValue{Key: "A", Value: "1"}) ||
		s.Mounts[0].Propagation != ocispec.PropagationBidirection || !s.Mounts[0].Readonly {
		t.Errorf("spec %+v", s)
	}

	c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.com/gpu=0"}}
	if _, err := toContainerConfig(c, img); !errdefs.IsInvalidArgument(err) {
		t.Errorf("CDI devices: %v", err)
	}
	c.CDIDevices = nil
	c.Linux.SecurityContext.NamespaceOptions.TargetId = ""
	if _, err := toContainerConfig(c, img); !errdefs.IsInvalidArgument(err) {
		t.Errorf("TARGET without target_id: %v", err)
	}
}

func TestToMountImageVolume(t *testing.T) {
	m, err := toMount(&runtimeapi.Mount{ContainerPath: "/data", Image: &runtimeapi.ImageSpec{Image: "example.com/data:1"}, ImageSubPath: "sub/dir"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Image != "example.com/data:1" || m.ImageSubPath != "sub/dir" || !m.Readonly || m.HostPath != "" {
		t.Errorf("image volume %+v, want the image and sub path, read-only, no host path", m)
	}
	st := toCRIMount(ocispec.Mount{ContainerPath: "/data", HostPath: "/run/berth/containers/c/image-volumes/0/sub/dir",
		Readonly: true, Image: "example.com/data:1", ImageSubPath: "sub/dir"})
	if st.GetImage().GetImage() != "example.com/data:1" || st.ImageSubPath != "sub/dir" || !st.Readonly {
		t.Errorf("status mount %+v", st)
	}
	for name, bad := range map[string]*runtimeapi.Mount{
		"host path and image":       {ContainerPath: "/d", HostPath: "/h", Image: &runtimeapi.ImageSpec{Image: "a"}},
		"sub path escapes":          {ContainerPath: "/d", Image: &runtimeapi.ImageSpec{Image: "a"}, ImageSubPath: "../etc"},
		"absolute sub path":         {ContainerPath: "/d", Image: &runtimeapi.ImageSpec{Image: "a"}, ImageSubPath: "/etc"},
		"sub path without image":    {ContainerPath: "/d", HostPath: "/h", ImageSubPath: "x"},
		"empty image, no host path": {ContainerPath: "/d", Image: &runtimeapi.ImageSpec{}},
		"mount options":             {ContainerPath: "/d", HostPath: "/h", MountOptions: []string{"noexec"}},
	} {
		if _, err := toMount(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
}
