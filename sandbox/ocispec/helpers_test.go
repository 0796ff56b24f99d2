package ocispec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// testPasswd and testGroup make the fake image's user database.
const (
	testPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001:Bob:/home/bob:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
`
	testGroup = `root:x:0:
daemon:x:1:
wheel:x:10:root,alice
alice:x:1000:
bob:x:1001:alice
staff:x:50:alice,bob
audio:x:29:bob
`
)

// fakeCaps is what the fake berth holds: everything but CAP_SYS_RESOURCE
// (like this project's VMs).
func fakeCaps(t *testing.T) []string {
	t.Helper()
	tm, err := newTemplate()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for c := range tm.supported {
		if c != "CAP_SYS_RESOURCE" {
			out = append(out, c)
		}
	}
	return out
}

// fakeHost answers every probe without looking at the machine.
type fakeHost struct {
	v2, swap, hugetlb, seccomp bool
	caps                       []string
	mounts                     map[string]*mountinfo.Info // mount point → info
	cgroupfsOptions            string
	apparmorLoaded             map[string]bool
	apparmorLoads              int
}

func (f *fakeHost) host() host {
	return host{
		cgroupV2:        func() bool { return f.v2 },
		currentCaps:     func() ([]string, error) { return f.caps, nil },
		swapAccounting:  func() bool { return f.swap },
		hugetlb:         func() bool { return f.hugetlb },
		hugePageSizes:   func() []string { return []string{"2MB", "1GB"} },
		seccomp:         func() bool { return f.seccomp },
		hostDevices:     func() ([]specs.LinuxDevice, error) { return fakeHostDevices(), nil },
		cgroupfsOptions: func() string { return f.cgroupfsOptions },
		hostname:        func() (string, error) { return "node-1", nil },
		lookupMount: func(path string) (*mountinfo.Info, error) {
			var best *mountinfo.Info
			for mp, m := range f.mounts {
				if (path == mp || strings.HasPrefix(path, mp+"/") || mp == "/") && (best == nil || len(mp) > len(best.Mountpoint)) {
					best = m
				}
			}
			if best == nil {
				return nil, errors.New("no mount")
			}
			return best, nil
		},
		appArmorProfileLoaded: func(name string) (bool, error) { return f.apparmorLoaded[name], nil },
		loadAppArmorDefault: func(name string) error {
			f.apparmorLoads++
			return nil
		},
	}
}

func fakeHostDevices() []specs.LinuxDevice {
	mode := os.FileMode(0o666)
	var zero uint32
	return []specs.LinuxDevice{
		{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: &mode, UID: &zero, GID: &zero},
		{Path: "/dev/kmsg", Type: "c", Major: 1, Minor: 11, FileMode: &mode, UID: &zero, GID: &zero},
	}
}

// newTestGenerator returns a Generator on a fake host (cgroup v1, swap
// accounting, hugetlb and seccomp available, no AppArmor).
func newTestGenerator(t *testing.T, d Defaults) (*Generator, *fakeHost) {
	t.Helper()
	f := &fakeHost{swap: true, hugetlb: true, seccomp: true, caps: fakeCaps(t), mounts: map[string]*mountinfo.Info{
		"/": {Mountpoint: "/"},
	}}
	g := NewGenerator(d)
	g.host = f.host()
	return g, f
}

// fakeRootfs makes an image rootfs with /etc/passwd and /etc/group.
func fakeRootfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/passwd"), testPasswd)
	writeFile(t, filepath.Join(root, "etc/group"), testGroup)
	return root
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// baseInput is a plain container of a plain pod with pinned namespaces and
// no pod files.
func baseInput(t *testing.T) Input {
	t.Helper()
	return Input{
		ID:     "ctr1",
		Rootfs: fakeRootfs(t),
		Container: Container{
			Name:     "app",
			Command:  []string{"/bin/sh"},
			Security: SecurityContext{PIDNS: NamespaceContainer},
		},
		Pod: Pod{
			ID: "pod1", Hostname: "pod-host",
			NetNS: "/run/berth/netns/pod1", IPCNS: "/run/berth/ipc/pod1", UTSNS: "/run/berth/uts/pod1",
		},
		CgroupsPath: "/kubepods/pod1/ctr1",
	}
}

func mustGenerate(t *testing.T, g *Generator, in Input) *Result {
	t.Helper()
	res, err := g.Generate(in)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return res
}

// wantErr checks that err is of the class (errdefs.IsInvalidArgument, ...)
// and mentions each of the words.
func wantErr(t *testing.T, err error, class func(error) bool, words ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("Generate succeeded, want an error")
	}
	if !class(err) {
		t.Fatalf("error %q has the wrong class", err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func findMount(s *specs.Spec, dst string) (specs.Mount, bool) {
	for _, m := range s.Mounts {
		if m.Destination == dst {
			return m, true
		}
	}
	return specs.Mount{}, false
}

func destinations(s *specs.Spec) []string {
	var out []string
	for _, m := range s.Mounts {
		out = append(out, m.Destination)
	}
	return out
}

var (
	isInvalid        = errdefs.IsInvalidArgument
	isNotFound       = errdefs.IsNotFound
	isPrecondition   = errdefs.IsFailedPrecondition
	isNotImplemented = errdefs.IsNotImplemented
)

func ptr[T any](v T) *T { return &v }
