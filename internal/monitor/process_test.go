package monitor_test

// The monitor as a process: readiness, signals, a restart over a stale
// socket.

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-runtime/berth/internal/monitor"
	"github.com/berth-runtime/berth/sandbox/monitorapi"
)

func TestReadinessError(t *testing.T) {
	integration(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	bin, args := monitorBinary()
	cmd := exec.Command(bin, append(args, "--dir", "relative/dir", "--pod", "x")...)
	cmd.Env = append(os.Environ(), monitor.ReadyFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	_ = r.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, _ := bufio.NewReader(r).ReadString('\n')
	err = cmd.Wait()
	if !strings.HasPrefix(line, "error: ") || !strings.Contains(line, "--dir") {
		t.Fatalf("readiness line %q", line)
	}
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Fatalf("exit status %d (%v), want 2", code, err)
	}
}

func TestSignals(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	ctx := testCtx(t)
	st := p.run("sleep", []string{"sleep", "1000"}, ctrOpts{})

	// The monitor catches the signals it ignores, so that containers do
	// not inherit them ignored.
	status := execedStatus(t, st.Pid, "sleep")
	if !strings.Contains(status, "SigIgn:\t0000000000000000\n") {
		t.Fatalf("the container process ignores signals:\n%s", status)
	}

	for _, s := range []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE, syscall.SIGTERM} {
		if err := p.cmd.Process.Signal(s); err != nil {
			t.Fatal(err)
		}
	}
	// Still there: SIGTERM is refused while a container is held.
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(p.monitorLog(), "SIGTERM ignored") },
		func() string { return "the monitor to log the refused SIGTERM" })
	if _, err := p.client.Hello(ctx); err != nil {
		t.Fatalf("monitor gone after signals: %v", err)
	}

	if err := p.client.Kill(ctx, "sleep", 9, false); err != nil {
		t.Fatal(err)
	}
	p.waitStatus("sleep", monitorapi.StatusStopped)
	if err := p.client.Delete(ctx, "sleep"); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not end a monitor without containers")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	if _, err := os.Stat(p.client.Socket()); !os.IsNotExist(err) {
		t.Fatalf("socket after SIGTERM: %v", err)
	}
}

func TestStaleSocket(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	// A monitor killed outright leaves its socket behind; the next one
	// replaces it.
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	if _, err := os.Stat(p.client.Socket()); err != nil {
		t.Fatalf("no stale socket: %v", err)
	}
	p.startMonitor()
	if h, err := p.client.Hello(testCtx(t)); err != nil || h.Pid != p.cmd.Process.Pid {
		t.Fatalf("hello: %+v, %v", h, err)
	}
	p.run("after", []string{"true"}, ctrOpts{})
	p.waitStatus("after", monitorapi.StatusStopped)
}
