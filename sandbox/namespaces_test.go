package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-runtime/berth/internal/nsthread"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// podNSRequireRoot skips a test that needs root, unless BERTH_INTEGRATION=1
// says the run must cover it.
func podNSRequireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("BERTH_INTEGRATION") == "1" {
		t.Fatal("BERTH_INTEGRATION=1 but not running as root")
	}
	t.Skip("needs root")
}

// inPinnedNamespaces runs fn on a throwaway thread that has joined the
// namespaces pinned in p, so fn sees what the pod's containers will see.
func inPinnedNamespaces(t *testing.T, p Pinned, fn func() error) {
	t.Helper()
	err := nsthread.RunDisposable(func(int) error {
		for _, ns := range []struct {
			pin  string
			kind int
		}{{p.IPC, unix.CLONE_NEWIPC}, {p.UTS, unix.CLONE_NEWUTS}} {
			if ns.pin == "" {
				continue
			}
			fd, err := unix.Open(ns.pin, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			err = unix.Setns(fd, ns.kind)
			unix.Close(fd)
			if err != nil {
				return err
			}
		}
		return fn()
	})
	if err != nil {
		t.Fatal(err)
	}
}

func readTrimmed(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// assertNothingIn fails if anything is mounted in, or left in, dir.
func assertNothingIn(t *testing.T, dir string) {
	t.Helper()
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		t.Errorf("left mounted: %s", m.Mountpoint)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind: %s", filepath.Join(dir, e.Name()))
	}
}

func TestCreatePinnedNamespaces(t *testing.T) {
	podNSRequireRoot(t)
	dir := t.TempDir()
	hostHostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	hostShmmni := readTrimmed(t, "/proc/sys/kernel/shmmni")
	hostMsgMax := readTrimmed(t, "/proc/sys/fs/mqueue/msg_max")
	n, err := strconv.Atoi(hostShmmni)
	if err != nil {
		t.Fatal(err)
	}
	podShmmni := strconv.Itoa(n/2 + 1) // distinct from the host's, and allowed
	podMsgMax := "17"
	if hostMsgMax == podMsgMax {
		podMsgMax = "18"
	}

	p, err := CreatePinnedNamespaces(dir, NamespaceOptions{
		IPC: true, UTS: true, Hostname: "pod-a.example",
		IPCSysctls: map[string]string{"kernel.shmmni": podShmmni, "fs/mqueue/msg_max": podMsgMax},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = RemovePinnedNamespaces(p) })
	if want := (Pinned{IPC: PinPaths(dir).IPC, UTS: PinPaths(dir).UTS}); p != want {
		t.Fatalf("Pinned = %+v, want %+v", p, want)
	}
	for _, pin := range []string{p.IPC, p.UTS} {
		var st unix.Statfs_t
		if err := unix.Statfs(pin, &st); err != nil || st.Type != unix.NSFS_MAGIC {
			t.Fatalf("%s is not a namespace pin (statfs type %#x, %v)", pin, st.Type, err)
		}
	}
	if nsInode(t, p.IPC) == nsInode(t, "/proc/self/ns/ipc") || nsInode(t, p.UTS) == nsInode(t, "/proc/self/ns/uts") {
		t.Fatal("a pinned namespace is the host's")
	}

	inPinnedNamespaces(t, p, func() error {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return err
		}
		if got := unix.ByteSliceToString(u.Nodename[:]); got != "pod-a.example" {
			t.Errorf("hostname in the pod = %q, want pod-a.example", got)
		}
		if got := readTrimmed(t, "/proc/sys/kernel/shmmni"); got != podShmmni {
			t.Errorf("kernel.shmmni in the pod = %s, want %s", got, podShmmni)
		}
		if got := readTrimmed(t, "/proc/sys/fs/mqueue/msg_max"); got != podMsgMax {
			t.Errorf("fs.mqueue.msg_max in the pod = %s, want %s", got, podMsgMax)
		}
		return nil
	})

	if h, _ := os.Hostname(); h != hostHostname {
		t.Errorf("host hostname changed from %q to %q", hostHostname, h)
	}
	if got := readTrimmed(t, "/proc/sys/kernel/shmmni"); got != hostShmmni {
		t.Errorf("host kernel.shmmni changed from %s to %s", hostShmmni, got)
	}
	if got := readTrimmed(t, "/proc/sys/fs/mqueue/msg_max"); got != hostMsgMax {
		t.Errorf("host fs.mqueue.msg_max changed from %s to %s", hostMsgMax, got)
	}

	// A second pod in the same directory must not share the pins.
	if _, err := CreatePinnedNamespaces(dir, NamespaceOptions{IPC: true, UTS: true, Hostname: "b"}); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("pinning over existing pins: %v, want AlreadyExists", err)
	}

	if err := RemovePinnedNamespaces(p); err != nil {
		t.Fatal(err)
	}
	assertNothingIn(t, dir)
	if err := RemovePinnedNamespaces(p); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	// After a crash that lost the Pinned, the paths derived from dir clean
	// up just as well, including when nothing is there.
	if err := RemovePinnedNamespaces(PinPaths(dir)); err != nil {
		t.Fatal(err)
	}
}

func TestCreatePinnedNamespacesHostOnly(t *testing.T) {
	podNSRequireRoot(t)
	dir := t.TempDir()
	p, err := CreatePinnedNamespaces(dir, NamespaceOptions{Hostname: "ignored-without-uts"})
	if err != nil || p != (Pinned{}) {
		t.Fatalf("host namespaces only: %+v, %v; want nothing pinned", p, err)
	}
	assertNothingIn(t, dir)

	// A host-network pod with its own IPC namespace: the hostname is the
	// host's and only IPC is pinned.
	p, err = CreatePinnedNamespaces(dir, NamespaceOptions{IPC: true, Hostname: "ignored"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = RemovePinnedNamespaces(p) })
	if p.IPC == "" || p.UTS != "" {
		t.Fatalf("Pinned = %+v, want only IPC", p)
	}
	if _, err := os.Stat(PinPaths(dir).UTS); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("UTS pin exists for a host-UTS pod: %v", err)
	}
	if err := RemovePinnedNamespaces(p); err != nil {
		t.Fatal(err)
	}
	assertNothingIn(t, dir)
}

func TestCreatePinnedNamespacesInvalid(t *testing.T) {
	podNSRequireRoot(t)
	for _, tc := range []struct {
		name string
		opts NamespaceOptions
		want string // in the error message
	}{
		{"hostname with underscore", NamespaceOptions{UTS: true, Hostname: "bad_name"}, "bad_name"},
		{"hostname with leading hyphen", NamespaceOptions{UTS: true, Hostname: "-pod"}, "-pod"},
		{"hostname with empty label", NamespaceOptions{UTS: true, Hostname: "a..b"}, "a..b"},
		{"hostname too long", NamespaceOptions{UTS: true, Hostname: strings.Repeat("a", 40) + "." + strings.Repeat("b", 24)}, "longer than 64"},
		{"hostname with newline", NamespaceOptions{UTS: true, IPC: true, Hostname: "a\nb"}, "a\\nb"},
		{"net sysctl", NamespaceOptions{IPC: true, IPCSysctls: map[string]string{"net.ipv4.ip_forward": "1"}}, "net.ipv4.ip_forward"},
		{"host sysctl", NamespaceOptions{IPC: true, IPCSysctls: map[string]string{"vm.swappiness": "1"}}, "vm.swappiness"},
		{"IPC sysctl on host IPC", NamespaceOptions{UTS: true, Hostname: "a", IPCSysctls: map[string]string{"kernel.shmmni": "1"}}, "would change the host"},
		// These two fail inside the new namespace, after the pins exist.
		{"unknown IPC sysctl", NamespaceOptions{IPC: true, UTS: true, Hostname: "a", IPCSysctls: map[string]string{"kernel.shm_no_such": "1"}}, "does not exist"},
		{"value the kernel refuses", NamespaceOptions{IPC: true, UTS: true, Hostname: "a", IPCSysctls: map[string]string{"kernel.shmmni": "lots"}}, "lots"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p, err := CreatePinnedNamespaces(dir, tc.opts)
			if !errdefs.IsInvalidArgument(err) {
				_ = RemovePinnedNamespaces(p)
				t.Fatalf("got %+v, %v; want InvalidArgument", p, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
			assertNothingIn(t, dir)
		})
	}
}

func TestCreatePinnedNamespacesKeepsForeignPin(t *testing.T) {
	podNSRequireRoot(t)
	dir := t.TempDir()
	// A UTS pin left by someone else: the call fails and must remove only
	// the IPC pin it made itself.
	foreign := PinPaths(dir).UTS
	if err := os.WriteFile(foreign, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	_, err := CreatePinnedNamespaces(dir, NamespaceOptions{IPC: true, UTS: true, Hostname: "a"})
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("got %v, want AlreadyExists", err)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Fatalf("the existing pin was removed: %v", err)
	}
	if _, err := os.Stat(PinPaths(dir).IPC); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the IPC pin made by the failed call is left: %v", err)
	}
}

// TestDisposableThreadSparesMainThread guards the one thread the runtime
// cannot retire: were namespace work done on it, the main thread would stay
// in the pod's namespaces and /proc/self/ns would report them.
