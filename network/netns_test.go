package network

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// requireRoot is for the namespace tests, which need no CNI plugins.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("BERTH_INTEGRATION") == "1" {
			t.Fatal("BERTH_INTEGRATION=1 but not root")
		}
		t.Skip("needs root (network namespaces)")
	}
}

// mountedAt reports whether /proc/self/mountinfo has a mount at path.
func mountedAt(t *testing.T, path string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestCreateRemoveNetNS(t *testing.T) {
	requireRoot(t)
	pin := filepath.Join(t.TempDir(), "netns")
	if err := CreateNetNS(pin); err != nil {
		t.Fatal(err)
	}
	if !NetNSExists(pin) || !mountedAt(t, pin) {
		t.Fatal("pin is not a mounted namespace")
	}
	if inode(t, pin) == inode(t, "/proc/self/ns/net") {
		t.Fatal("the pin is the host's network namespace")
	}
	// A second pin is a different namespace.
	other := filepath.Join(t.TempDir(), "netns")
	if err := CreateNetNS(other); err != nil {
		t.Fatal(err)
	}
	if inode(t, other) == inode(t, pin) {
		t.Fatal("two pins share one namespace")
	}
	for _, p := range []string{pin, other} {
		if err := RemoveNetNS(p); err != nil {
			t.Fatal(err)
		}
		if mountedAt(t, p) || NetNSExists(p) {
			t.Fatalf("%s still mounted after RemoveNetNS", p)
		}
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Fatalf("pin file %s left behind: %v", p, err)
		}
		if err := RemoveNetNS(p); err != nil {
			t.Fatalf("second RemoveNetNS: %v", err)
		}
	}
}

func TestCreateNetNSFailuresLeaveNothing(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	existing := filepath.Join(dir, "taken")
	if err := os.WriteFile(existing, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CreateNetNS(existing); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("CreateNetNS over a file = %v, want AlreadyExists", err)
	}
	if data, _ := os.ReadFile(existing); string(data) != "mine" || mountedAt(t, existing) {
		t.Fatal("CreateNetNS touched an existing file")
	}
	if NetNSExists(existing) {
		t.Fatal("a plain file counts as a namespace")
	}

	missing := filepath.Join(dir, "no-such-dir", "netns")
	if err := CreateNetNS(missing); err == nil {
		t.Fatal("CreateNetNS in a missing directory succeeded")
	}
	if _, err := os.Lstat(filepath.Dir(missing)); !os.IsNotExist(err) || mountedAt(t, missing) {
		t.Fatal("failed CreateNetNS left something behind")
	}
	if NetNSExists("") || NetNSExists(missing) {
		t.Fatal("NetNSExists is true for a missing path")
	}
}

func TestBringUpLoopback(t *testing.T) {
	requireRoot(t)
	pin := filepath.Join(t.TempDir(), "netns")
	if err := CreateNetNS(pin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = RemoveNetNS(pin) })
	if loUp(t, pin) {
		t.Fatal("lo is up in a fresh namespace")
	}
	if err := BringUpLoopback(pin); err != nil {
		t.Fatal(err)
	}
	if !loUp(t, pin) {
		t.Fatal("lo is not up after BringUpLoopback")
	}
	l := serveIn(t, pin, "127.0.0.1:0", "local")
	if got, err := fetchFrom(pin, l.Addr().String()); err != nil || got != "local" {
		t.Fatalf("127.0.0.1 inside the pod: %q, %v", got, err)
	}

	if err := BringUpLoopback(filepath.Join(t.TempDir(), "absent")); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("BringUpLoopback on a missing pin = %v, want FailedPrecondition", err)
	}
}

func loUp(t *testing.T, pin string) bool {
	t.Helper()
	var up bool
	err := ns.WithNetNSPath(pin, func(ns.NetNS) error {
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			up = lo.Attrs().Flags&net.FlagUp != 0
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return up
}
