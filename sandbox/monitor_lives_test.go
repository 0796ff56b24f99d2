package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"golang.org/x/sys/unix"
)

// zombie starts a process that exits at once and is not reaped until the
// test ends: its pid shows as a zombie, as a renewing monitor's does for a
// moment.
func zombie(t *testing.T) *Monitor {
	t.Helper()
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Wait() })
	pid := cmd.Process.Pid
	start, err := processStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	mon := &Monitor{PID: pid, StartTime: start, Socket: filepath.Join(t.TempDir(), monitorapi.SocketName)}
	// Wait for the exit without reaping it.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	return mon
}

// answerHello serves Hello on path as a monitor with the given pid would.
func answerHello(t *testing.T, path string, pid int) {
	t.Helper()
	l, err := monitorapi.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			var req monitorapi.Request
			if json.NewDecoder(bufio.NewReader(conn)).Decode(&req) == nil {
				_ = json.NewEncoder(conn).Encode(monitorapi.Response{Hello: &monitorapi.Hello{Version: monitorapi.Version, Pid: pid}})
			}
			conn.Close()
		}
	}()
}

// A pid that looks like a zombie is a live monitor if it answers as that
// pid (it is renewing itself), a dead one if its socket refuses.
func TestMonitorLivesAsksAZombie(t *testing.T) {
	ctx := context.Background()

	renewing := zombie(t)
	answerHello(t, renewing.Socket, renewing.PID)
	if !monitorLives(ctx, renewing, monitorapi.NewClient(renewing.Socket)) {
		t.Error("a zombie pid that answers Hello was taken for a dead monitor")
	}

	dead := zombie(t)
	if monitorLives(ctx, dead, monitorapi.NewClient(dead.Socket)) {
		t.Error("a zombie pid with no socket was taken for a live monitor")
	}

	impostor := zombie(t)
	answerHello(t, impostor.Socket, os.Getpid())
	if monitorLives(ctx, impostor, monitorapi.NewClient(impostor.Socket)) {
		t.Error("a zombie pid was taken for live because another process answered on its socket")
	}

	self, err := processStartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	running := &Monitor{PID: os.Getpid(), StartTime: self, Socket: filepath.Join(t.TempDir(), monitorapi.SocketName)}
	if !monitorLives(ctx, running, monitorapi.NewClient(running.Socket)) {
		t.Error("a running process was taken for a dead monitor")
	}
	if monitorLives(ctx, &Monitor{PID: os.Getpid(), StartTime: self + 1}, monitorapi.NewClient(running.Socket)) {
		t.Error("a pid reused by another process was taken for the monitor")
	}
}

// An exec that failed to start is the caller's precondition when the
// container ended meanwhile: reported exited, or its init gone or a zombie,
// before its monitor said so.
func TestContainerEnded(t *testing.T) {
	running := newContainerEntry(&Container{State: ContainerRunning}, "c")
	if containerEnded(running, os.Getpid()) {
		t.Error("a container whose init runs was taken for ended")
	}
	if !containerEnded(running, zombie(t).PID) {
		t.Error("a container whose init is a zombie was not taken for ended")
	}
	gone := exec.Command("/bin/true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	if !containerEnded(running, gone.Process.Pid) {
		t.Error("a container whose init is gone was not taken for ended")
	}
	reported := newContainerEntry(&Container{State: ContainerExited}, "c")
	if !containerEnded(reported, os.Getpid()) {
		t.Error("a container reported exited was not taken for ended")
	}
}
