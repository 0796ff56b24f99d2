package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/berth-runtime/berth/sandbox/ocispec"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func TestVolumePaths(t *testing.T) {
	volumes := map[string]struct{}{"/vol": {}, "/vol/": {}, "data": {}, "/covered/": {}, "/a/../b": {}}
	got := volumePaths(volumes, []ocispec.Mount{{ContainerPath: "/covered"}})
	if want := []string{"/b", "/data", "/vol"}; !slices.Equal(got, want) {
		t.Fatalf("volumePaths = %v, want %v", got, want)
	}
	if got := volumePaths(nil, nil); len(got) != 0 {
		t.Fatalf("no volumes: %v", got)
	}
}

func TestImageSubPath(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"data/sub", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "data/file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Symlinks resolve inside the image: an absolute or climbing target
	// stays below the root.
	for name, target := range map[string]string{"abs": "/etc", "climb": "../../../../etc", "rel": "data/sub"} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	for sub, want := range map[string]string{
		"": root, "data/sub": root + "/data/sub", "data//sub/": root + "/data/sub", ".": root,
		"abs": root + "/etc", "climb": root + "/etc", "rel": root + "/data/sub",
	} {
		if got, err := imageSubPath(root, sub); err != nil || got != want {
			t.Errorf("imageSubPath(%q) = %q, %v; want %q", sub, got, err, want)
		}
	}
	for sub, class := range map[string]func(error) bool{
		"missing":   errdefs.IsNotFound,
		"data/nope": errdefs.IsNotFound,
		"data/file": errdefs.IsInvalidArgument,
		"../escape": errdefs.IsInvalidArgument,
		"/etc":      errdefs.IsInvalidArgument,
	} {
		if _, err := imageSubPath(root, sub); !class(err) {
			t.Errorf("imageSubPath(%q) = %v, wrong class", sub, err)
		}
	}
}

// The image's content at a VOLUME is copied with its ownership and modes;
// a VOLUME the image does not have is left empty, one that is a file is
// refused.
func TestCopyImageContent(t *testing.T) {
	rootfs := t.TempDir()
	vol := filepath.Join(rootfs, "var/vol")
	if err := os.MkdirAll(filepath.Join(vol, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "sub/file"), []byte("seed\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/file", filepath.Join(vol, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/var/vol", filepath.Join(rootfs, "volink")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "afile"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	if root {
		for _, p := range []string{vol, filepath.Join(vol, "sub"), filepath.Join(vol, "sub/file")} {
			if err := os.Lchown(p, 1234, 5678); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, dst := range []string{"/var/vol", "/volink"} {
		host := filepath.Join(t.TempDir(), "v")
		if err := os.Mkdir(host, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := copyImageContent(rootfs, dst, host); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(host, "link")); err != nil || string(b) != "seed\n" {
			t.Fatalf("%s: copied content %q, %v", dst, b, err)
		}
		for p, mode := range map[string]os.FileMode{host: 0o750, filepath.Join(host, "sub/file"): 0o640} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != mode {
				t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), mode)
			}
			if st := fi.Sys().(*syscall.Stat_t); root && (st.Uid != 1234 || st.Gid != 5678) {
				t.Errorf("%s: owner %d:%d, want 1234:5678", p, st.Uid, st.Gid)
			}
		}
	}
	empty := t.TempDir()
	if err := copyImageContent(rootfs, "/not/in/image", empty); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Fatalf("a VOLUME the image lacks got content: %v", entries)
	}
	if err := copyImageContent(rootfs, "/afile", t.TempDir()); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("a VOLUME that is a file: %v, want InvalidArgument", err)
	}
}

func TestUnmountImageVolumesWithoutAny(t *testing.T) {
	bundle := t.TempDir()
	if err := unmountImageVolumes(bundle); err != nil {
		t.Fatalf("no image-volumes dir: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(bundle, imageVolumesDir, "0"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unmountImageVolumes(bundle); err != nil {
		t.Fatalf("an unmounted image volume: %v", err)
	}
}

// makeVolumes gives each VOLUME no CRI mount covers a seeded directory
// under <root>/volumes/<id>, in path order, and refuses VOLUME /.
func TestMakeVolumes(t *testing.T) {
	m := &Manager{opts: Options{Root: t.TempDir()}}
	rootfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "var/lib/db"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "var/lib/db/seed"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Container{ID: "c1"}
	c.Config.Image.Config.Volumes = map[string]struct{}{"/var/lib/db": {}, "/cache": {}, "/covered": {}}
	got, err := m.makeVolumes(c, rootfs, []ocispec.Mount{{ContainerPath: "/covered/", HostPath: "/h"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(m.opts.Root, "volumes", "c1")
	want := []ocispec.Mount{
		{ContainerPath: "/cache", HostPath: filepath.Join(base, "0"), SELinuxRelabel: true},
		{ContainerPath: "/var/lib/db", HostPath: filepath.Join(base, "1"), SELinuxRelabel: true},
	}
	if !slices.EqualFunc(got, want, func(a, b ocispec.Mount) bool {
		return a.ContainerPath == b.ContainerPath && a.HostPath == b.HostPath && a.SELinuxRelabel == b.SELinuxRelabel && !a.Readonly
	}) {
		t.Fatalf("volumes %+v, want %+v", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(base, "1", "seed")); err != nil || string(b) != "s" {
		t.Fatalf("seed: %q, %v", b, err)
	}
	if entries, err := os.ReadDir(filepath.Join(base, "0")); err != nil || len(entries) != 0 {
		t.Fatalf("/cache, absent from the image: %v, %v", entries, err)
	}

	if got, err := m.makeVolumes(&Container{ID: "c2"}, rootfs, nil, nil); err != nil || got != nil {
		t.Fatalf("an image without VOLUMEs: %v, %v", got, err)
	}
	if _, err := os.Stat(m.volumesDir("c2")); !os.IsNotExist(err) {
		t.Fatalf("a directory for no VOLUMEs: %v", err)
	}
	root := &Container{ID: "c3"}
	root.Config.Image.Config.Volumes = map[string]struct{}{"/": {}}
	if _, err := m.makeVolumes(root, rootfs, nil, nil); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("VOLUME /: %v, want InvalidArgument", err)
	}
}

// In a user namespace a VOLUME the image has nothing at belongs to the
// container's root, mapped.
func TestMakeVolumesInUserNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	m := &Manager{opts: Options{Root: t.TempDir()}}
	c := &Container{ID: "c1"}
	c.Config.Image.Config.Volumes = map[string]struct{}{"/cache": {}}
	userNS := &ocispec.UserNamespace{
		UIDs: []ocispec.IDMapping{{ContainerID: 0, HostID: 100000, Length: 65536}},
		GIDs: []ocispec.IDMapping{{ContainerID: 0, HostID: 200000, Length: 65536}},
	}
	got, err := m.makeVolumes(c, t.TempDir(), nil, userNS)
	if err != nil || len(got) != 1 {
		t.Fatalf("volumes %v, %v", got, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(got[0].HostPath, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 100000 || st.Gid != 200000 {
		t.Fatalf("VOLUME directory owned by %d:%d, want the mapped root 100000:200000", st.Uid, st.Gid)
	}
}
