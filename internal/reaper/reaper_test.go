package reaper

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// gone says whether pid no longer exists, not even as a zombie.
func gone(pid int) bool {
	return unix.Kill(pid, 0) == unix.ESRCH
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			t.Fatalf("child %d was not reaped: %s", pid, b)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := strings.CutPrefix(string(line), "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads: in /proc/self/status")
	return 0
}

func TestReapExitedChild(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	Reap(cmd.Process)
	waitGone(t, pid)
}

// A child that lives on must not cost a thread; it is reaped when killed.
func TestReapLongLivedChildrenWithoutThreads(t *testing.T) {
	const n = 40
	before := threads(t)
	pids := make([]int, 0, n)
	t.Cleanup(func() {
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	})
	for range n {
		cmd := exec.Command("sleep", "600")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, cmd.Process.Pid)
		Reap(cmd.Process)
	}
	// Give any goroutine that would block in wait(2) the time to do so.
	time.Sleep(200 * time.Millisecond)
	if after := threads(t); after-before >= n/2 {
		t.Fatalf("%d waiting children took %d threads (%d → %d)", n, after-before, before, after)
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	for _, pid := range pids {
		waitGone(t, pid)
	}
}
