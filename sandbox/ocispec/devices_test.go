package ocispec

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var denyAll = specs.LinuxDeviceCgroup{Allow: false, Access: "rwm"}

func TestDevices(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	link := filepath.Join(t.TempDir(), "nullish")
	if err := os.Symlink("/dev/null", link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		dev        Device
		wantPath   string
		wantAccess string
	}{
		{name: "same path, default permissions", dev: Device{ContainerPath: "/dev/null", HostPath: "/dev/null"}, wantPath: "/dev/null", wantAccess: "rwm"},
		{name: "other path and permissions", dev: Device{ContainerPath: "/dev/mine/", HostPath: "/dev/null", Permissions: "rw"}, wantPath: "/dev/mine", wantAccess: "rw"},
		{name: "symlinked host path", dev: Device{ContainerPath: "/dev/x", HostPath: link, Permissions: "r"}, wantPath: "/dev/x", wantAccess: "r"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			in.Container.Devices = []Device{tc.dev}
			l := mustGenerate(t, g, in).Spec.Linux
			if len(l.Devices) != 1 {
				t.Fatalf("devices = %+v, want one", l.Devices)
			}
			d := l.Devices[0]
			if d.Path != tc.wantPath || d.Type != "c" || d.Major != 1 || d.Minor != 3 ||
				d.FileMode == nil || *d.FileMode != 0o666 || d.UID == nil || *d.UID != 0 || d.GID == nil || *d.GID != 0 {
				t.Errorf("device = %+v (mode %v), want %s c 1:3 0666 0:0", d, d.FileMode, tc.wantPath)
			}
			rules := l.Resources.Devices
			if len(rules) != 2 || rules[0] != denyAll {
				t.Fatalf("cgroup rules = %+v, want deny-all then the device's", rules)
			}
			r := rules[1]
			if !r.Allow || r.Type != "c" || r.Major == nil || *r.Major != 1 || r.Minor == nil || *r.Minor != 3 || r.Access != tc.wantAccess {
				t.Errorf("rule = %+v, want allow c 1:3 %s", r, tc.wantAccess)
			}
		})
	}
}

func TestDeviceErrors(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	regular := filepath.Join(t.TempDir(), "file")
	writeFile(t, regular, "x")
	for _, tc := range []struct {
		name  string
		dev   Device
		class func(error) bool
		words []string
	}{
		{name: "missing", dev: Device{ContainerPath: "/dev/x", HostPath: "/dev/berth-nonexistent"}, class: isNotFound, words: []string{`"/dev/berth-nonexistent"`}},
		{name: "not a device", dev: Device{ContainerPath: "/dev/x", HostPath: regular}, class: isInvalid, words: []string{"not a device node"}},
		{name: "bad permissions", dev: Device{ContainerPath: "/dev/x", HostPath: "/dev/null", Permissions: "rwx"}, class: isInvalid, words: []string{`"rwx"`}},
		{name: "relative host path", dev: Device{ContainerPath: "/dev/x", HostPath: "dev/null"}, class: isInvalid, words: []string{"host_path"}},
		{name: "relative container path", dev: Device{ContainerPath: "dev/x", HostPath: "/dev/null"}, class: isInvalid, words: []string{"container_path"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			in.Container.Devices = []Device{tc.dev}
			_, err := g.Generate(in)
			wantErr(t, err, tc.class, tc.words...)
		})
	}
}

// A directory gives its device nodes (containerd's getDevices).
func TestDeviceDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for mknod")
	}
	dir := t.TempDir()
	if err := unix.Mknod(filepath.Join(dir, "null"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
		t.Skipf("mknod: %v", err)
	}
	if err := unix.Mknod(filepath.Join(dir, "zero"), unix.S_IFCHR|0o640, int(unix.Mkdev(1, 5))); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "regular"), "x")
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	in.Container.Devices = []Device{{ContainerPath: "/dev/mine", HostPath: dir, Permissions: "rw"}}
	l := mustGenerate(t, g, in).Spec.Linux
	var got []string
	for _, d := range l.Devices {
		got = append(got, d.Path)
	}
	if want := []string{"/dev/mine/null", "/dev/mine/zero"}; !slices.Equal(got, want) {
		t.Errorf("devices = %v, want %v", got, want)
	}
	if len(l.Resources.Devices) != 3 {
		t.Errorf("cgroup rules = %+v, want deny-all and two devices", l.Resources.Devices)
	}
}

func TestPrivilegedDevices(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	in.Container.Security.Privileged = true
	in.Container.Devices = []Device{{ContainerPath: "/dev/null", HostPath: "/dev/null", Permissions: "r"}}
	l := mustGenerate(t, g, in).Spec.Linux
	var paths []string
	for _, d := range l.Devices {
		paths = append(paths, d.Path)
	}
	if want := []string{"/dev/null", "/dev/kmsg"}; !slices.Equal(paths, want) {
		t.Errorf("devices = %v, want the CRI one then the host's others %v", paths, want)
	}
	if want := []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}; !slices.Equal(l.Resources.Devices, want) {
		t.Errorf("cgroup rules = %+v, want allow-all", l.Resources.Devices)
	}
}
