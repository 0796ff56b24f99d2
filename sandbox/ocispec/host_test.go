package ocispec

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestTemplateIsContainerds(t *testing.T) {
	tm, err := newTemplate()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tm.caps, containerdDefaultCaps) {
		t.Errorf("default caps = %v", tm.caps)
	}
	var dsts []string
	for _, m := range tm.mounts {
		dsts = append(dsts, m.Destination)
	}
	if want := []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"}; !slices.Equal(dsts, want) {
		t.Errorf("default mounts = %v, want %v (no /run)", dsts, want)
	}
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/sys/firmware", "/proc/scsi"} {
		if !slices.Contains(tm.maskedPaths, p) {
			t.Errorf("masked paths %v lack %s", tm.maskedPaths, p)
		}
	}
	if want := []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}; !slices.Equal(tm.readonlyPaths, want) {
		t.Errorf("readonly paths = %v, want %v", tm.readonlyPaths, want)
	}
	if !tm.known["CAP_CHOWN"] || !tm.supported["CAP_CHOWN"] || tm.known["CAP_FLY"] {
		t.Error("capability lists are wrong")
	}
}

// mountTmpfs mounts a tmpfs on a new directory with the given propagation
// (unix.MS_SHARED, unix.MS_PRIVATE, ...) and unmounts it at the end.
func mountTmpfs(t *testing.T, propagation uintptr) string {
	t.Helper()
	dir := hostDir(t)
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	if err := unix.Mount("", dir, "", propagation, ""); err != nil {
		t.Fatalf("set propagation of %s: %v", dir, err)
	}
	return dir
}

// The real host probe, on real mounts: needs root.
func TestPropagationOnRealMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	shared := mountTmpfs(t, unix.MS_SHARED)
	private := mountTmpfs(t, unix.MS_PRIVATE)
	// A slave: a bind of the shared mount, then made a slave of it.
	slave := hostDir(t)
	if err := unix.Mount(shared, slave, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(slave, unix.MNT_DETACH) })
	if err := unix.Mount("", slave, "", unix.MS_SLAVE, ""); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(shared, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}

	info, err := lookupMount(sub)
	if err != nil || info.Mountpoint != shared || !strings.Contains(info.Optional, "shared:") {
		t.Fatalf("lookupMount(%s) = %+v, %v; want the shared tmpfs", sub, info, err)
	}
	if info, err := lookupMount(slave); err != nil || !strings.Contains(info.Optional, "master:") {
		t.Fatalf("lookupMount(%s) = %+v, %v; want a slave", slave, info, err)
	}

	g, _ := newTestGenerator(t, Defaults{})
	g.host.lookupMount = lookupMount
	for _, tc := range []struct {
		src  string
		prop Propagation
		ok   bool
	}{
		{sub, PropagationBidirection, true},
		{sub, PropagationHostToCtr, true},
		{slave, PropagationHostToCtr, true},
		{slave, PropagationBidirection, false},
		{private, PropagationHostToCtr, false},
		{private, PropagationPrivate, true},
	} {
		in := baseInput(t)
		in.Container.Mounts = []Mount{{ContainerPath: "/m", HostPath: tc.src, Propagation: tc.prop}}
		_, err := g.Generate(in)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s with %s: %v", tc.src, propagationName(tc.prop), err)
		case !tc.ok && !isPrecondition(err):
			t.Errorf("%s with %s: err = %v, want FailedPrecondition", tc.src, propagationName(tc.prop), err)
		}
	}
}

func TestSuperOptions(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := mountTmpfs(t, unix.MS_PRIVATE)
	if o := superOptions(dir); !strings.Contains(o, "size=1024k") {
		t.Errorf("super options of the tmpfs = %q", o)
	}
	if o := superOptions(filepath.Join(dir, "not-a-mountpoint")); o != "" {
		t.Errorf("super options of a non-mount = %q", o)
	}
}
