package nsthread

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestDisposableThreadSparesMainThread(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("BERTH_INTEGRATION") == "1" {
			t.Fatal("BERTH_INTEGRATION=1 but not running as root")
		}
		t.Skip("needs root")
	}
	before := nsInode(t, "/proc/self/ns/uts")
	for range 50 {
		err := RunDisposable(func(tid int) error {
			if tid == os.Getpid() {
				return errors.New("ran on the main thread")
			}
			return unix.Unshare(unix.CLONE_NEWUTS)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if after := nsInode(t, "/proc/self/ns/uts"); after != before {
		t.Fatalf("/proc/self/ns/uts changed from %d to %d", before, after)
	}
}
