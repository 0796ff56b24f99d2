package cri

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-runtime/berth/sandbox"
	"github.com/berth-runtime/berth/sandbox/ocispec"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// FuzzMount feeds one CRI mount through CreateContainer's translation
// (toMount) and the spec generator's bind-mount checks, in a plain
// container (ID-mapped in a pod with a user namespace when asked).
//
// Properties: nothing panics; errors are typed (translation:
// InvalidArgument; generator: InvalidArgument, NotFound or
// FailedPrecondition, never Unknown); an accepted mount keeps its paths
// and flags, an image volume is read-only with a local image_sub_path;
// in a generated spec the mount's destination is its container path
// cleaned — absolute, without ".." — its source is the host path with its
// symlinks resolved, absolute, from a host path without ".." or NUL, and a
// read-only mount is read-only.
func FuzzMount(f *testing.F) {
	for _, s := range []struct {
		ctr, host, image, sub string
		ro, rro               bool
		prop                  int32
		mapped                bool
	}{
		// As kubelet sends them.
		{"/var/run/secrets/kubernetes.io/serviceaccount", "/var/lib/kubelet/pods/" + fuzzPodUID + "/volumes/kubernetes.io~projected/kube-api-access-x", "", "", true, false, 0, false},
		{"/etc/hosts", "/etc/hosts", "", "", false, false, 0, false},
		{"/dev/termination-log", "/dev/null", "", "", false, false, 0, false},
		{"/data", "/tmp", "", "", false, false, 1, false},
		{"/host", "/", "", "", true, true, 0, false},
		{"/shared", "/", "", "", false, false, 2, false},
		{"/cache", "/tmp", "", "", false, false, 0, true},
		{"/models", "", "registry.example.com/models:1", "", false, false, 0, false},
		{"/models", "", "registry.example.com/models:1", "llama/weights", false, false, 0, false},
		// Traversal, relative and odd paths.
		{"/../../../etc", "/tmp", "", "", false, false, 0, false},
		{"/data/../../etc/shadow", "/tmp/../etc", "", "", false, false, 0, false},
		{"/x/./y//", "/tmp/./", "", "", false, false, 0, false},
		{"data", "tmp", "", "", false, false, 0, false},
		{"", "", "", "", false, false, 0, false},
		{"/data", "/tmp", "", "", false, true, 1, false},
		{"/data", "/tmp", "", "", false, false, 99, false},
		{"/data", "/tmp", "img", "../../../etc", false, false, 0, false},
		{"/data", "", "img", "/etc", false, false, 0, false},
		{"/data", "/proc/self/root", "", "", false, false, 0, false},
		{"/data", "/etc/passwd/x", "", "", false, false, 0, false},
		// NUL bytes, very long strings, unicode.
		{"/data\x00", "/tmp\x00/x", "", "", false, false, 0, false},
		{"/" + strings.Repeat("a/", 3000), "/" + strings.Repeat("b", 5000), "", "", false, false, 0, false},
		{"/données/\u202e", "/tmp/ünïcödé", "", "", false, false, 0, false},
	} {
		f.Add(s.ctr, s.host, s.image, s.sub, s.ro, s.rro, s.prop, s.mapped)
	}

	env := newSpecEnv(f)
	f.Fuzz(func(t *testing.T, ctrPath, hostPath, img, sub string, ro, rro bool, prop int32, mapped bool) {
		m := &runtimeapi.Mount{
			ContainerPath: ctrPath, HostPath: hostPath, Readonly: ro, RecursiveReadOnly: rro,
			Propagation: runtimeapi.MountPropagation(prop), ImageSubPath: sub,
		}
		if img != "" {
			m.Image = &runtimeapi.ImageSpec{Image: img}
		}
		ids := []*runtimeapi.IDMapping{{HostId: 65536 * 7, Length: 65536}}
		if mapped {
			m.UidMappings, m.GidMappings = ids, ids
		}
		om, err := toMount(m)
		if err != nil {
			requireCode(t, "toMount", err, codes.InvalidArgument)
			return
		}
		if om.ContainerPath != ctrPath || om.HostPath != hostPath || om.RecursiveReadonly != rro || om.Propagation != ocispec.Propagation(prop) ||
			om.Image != img || om.ImageSubPath != sub || (img == "" && om.Readonly != ro) || len(om.UIDMappings) != len(m.UidMappings) {
			t.Fatalf("mount %v translated to %+v", m, om)
		}
		if img != "" && (!om.Readonly || (sub != "" && !filepath.IsLocal(sub))) {
			t.Fatalf("image volume %+v", om)
		}

		cc := sandbox.ContainerConfig{
			Metadata: sandbox.ContainerMetadata{Name: "app"},
			Image:    toImageInfo("registry.example.com/team/app:1.2", fuzzImage),
			Spec: ocispec.Container{
				Name: "app", Mounts: []ocispec.Mount{om},
				Security: ocispec.SecurityContext{PIDNS: ocispec.NamespaceContainer, Seccomp: &ocispec.Profile{Type: ocispec.ProfileUnconfined}},
			},
		}
		if mapped {
			u := &ocispec.UserNamespace{UIDs: []ocispec.IDMapping{{HostID: 65536 * 7, Length: 65536}}, GIDs: []ocispec.IDMapping{{HostID: 65536 * 7, Length: 65536}}}
			cc.Spec.Security.UserNS = u
		}
		in := env.input(cc)
		res, err := env.gen.Generate(in)
		if err != nil {
			requireCode(t, "Generate", err, codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition)
			return
		}
		bound := in.Container.Mounts[0]
		dst := filepath.Clean(ctrPath)
		if !filepath.IsAbs(dst) || hasDotDot(dst) {
			t.Fatalf("accepted container path %s", short(ctrPath))
		}
		if hasDotDot(bound.HostPath) || strings.ContainsRune(bound.HostPath, 0) || strings.ContainsRune(ctrPath, 0) {
			t.Fatalf("accepted mount %s from %s", short(ctrPath), short(bound.HostPath))
		}
		i := slices.IndexFunc(res.Spec.Mounts, func(sm specs.Mount) bool { return sm.Destination == dst && sm.Type == "bind" })
		if i < 0 {
			t.Fatalf("mount %s is not in the spec at %s", short(ctrPath), short(dst))
		}
		got := res.Spec.Mounts[i]
		// (/proc/thread-self and the like resolve differently each time.)
		if resolved, err := filepath.EvalSymlinks(bound.HostPath); !filepath.IsAbs(got.Source) ||
			(!strings.HasPrefix(resolved, "/proc/") && (err != nil || got.Source != resolved)) {
			t.Fatalf("mount %s from %s has source %s", short(dst), short(bound.HostPath), short(got.Source))
		}
		if (om.Readonly || om.RecursiveReadonly) && !slices.Contains(got.Options, "ro") && !slices.Contains(got.Options, "rro") {
			t.Fatalf("read-only mount %s has options %v", short(dst), got.Options)
		}
		if !om.Readonly && !om.RecursiveReadonly && !slices.Contains(got.Options, "rw") {
			t.Fatalf("read-write mount %s has options %v", short(dst), got.Options)
		}
	})
}
