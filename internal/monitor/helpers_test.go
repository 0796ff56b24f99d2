package monitor_test

// Test scaffolding: the test binary doubles as the monitor, as its
// container helper (container-op) and as the containers' libcontainer
// init; each test gets a busybox rootfs, a pod directory, its own cgroup
// parent and a monitor subprocess, all removed in t.Cleanup.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-runtime/berth/internal/containerops"
	"github.com/berth-runtime/berth/internal/libctinit"
	"github.com/berth-runtime/berth/internal/monitor"
	"github.com/berth-runtime/berth/sandbox/monitorapi"
)

// helperLingerEnv makes the test binary, as a helper, stay alive this long
// (a time.Duration) after its op: a container init can then end while its
// helper still lives.
const helperLingerEnv = "BERTH_TEST_HELPER_LINGER"

func TestMain(m *testing.M) {
	libctinit.RunIfInit()
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "monitor":
			os.Exit(monitor.Main(os.Args[2:]))
		case containerops.Command:
			code := containerops.Main(os.Args[2:])
			if d, err := time.ParseDuration(os.Getenv(helperLingerEnv)); err == nil {
				time.Sleep(d)
			}
			os.Exit(code)
		}
	}
	os.Exit(m.Run())
}

// integration skips unless containers may be run.
func integration(tb testing.TB) {
	tb.Helper()
	if os.Getenv("BERTH_INTEGRATION") != "1" {
		tb.Skip("set BERTH_INTEGRATION=1 (as root) to run real containers")
	}
	if os.Geteuid() != 0 {
		tb.Skip("needs root")
	}
}

// pod is one monitor under test with its directory and cgroup parent.
type pod struct {
	tb       testing.TB
	dir      string
	rootfs   string
	cgParent string // e.g. /berth-monitor-test-1a2b3c4d
	client   *monitorapi.Client
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the monitor process was reaped
	logPath  string        // the monitor's own stderr
	helper   string        // the monitor's --helper
	env      []string      // added to the monitor's environment
}

// newPod starts a monitor for a fresh pod directory.
func newPod(tb testing.TB, rootfs string) *pod {
	tb.Helper()
	return newPodWith(tb, rootfs, "", nil)
}

// newPodWith starts a monitor with the given helper ("": the default) and
// extra environment.
func newPodWith(tb testing.TB, rootfs, helper string, env []string) *pod {
	tb.Helper()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	p := &pod{
		tb:       tb,
		dir:      tb.TempDir(),
		rootfs:   rootfs,
		cgParent: "/berth-monitor-test-" + hex.EncodeToString(rnd[:]),
		helper:   helper,
		env:      env,
	}
	if p.helper == "" {
		p.helper = helperBinary(tb)
	}
	p.logPath = filepath.Join(p.dir, "monitor.log")
	tb.Cleanup(p.cleanup)
	p.startMonitor()
	return p
}

// monitorBinary is the program run as the monitor: this test binary, or
// BERTH_MONITOR_BIN (e.g. a built cmd/berth-monitor) for measurements.
func monitorBinary() (string, []string) {
	if bin := os.Getenv("BERTH_MONITOR_BIN"); bin != "" {
		return bin, nil
	}
	return os.Args[0], []string{"monitor"}
}

// helperBinary is the monitor's --helper: this test binary, or
// BERTH_HELPER_BIN (e.g. a built cmd/berth) for measurements.
func helperBinary(tb testing.TB) string {
	if bin := os.Getenv("BERTH_HELPER_BIN"); bin != "" {
		return bin
	}
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	return exe
}

func (p *pod) startMonitor() {
	tb := p.tb
	tb.Helper()
	logf, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	defer readyR.Close()
	bin, args := monitorBinary()
	level := os.Getenv("BERTH_MONITOR_LOG_LEVEL") // for measurements
	if level == "" {
		level = "debug"
	}
	args = append(args, "--dir", p.dir, "--pod", filepath.Base(p.dir), "--helper", p.helper, "--log-level", level)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), p.env...), monitor.ReadyFDEnv+"=3")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		tb.Fatal(err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(p.exited) }()
	_ = readyR.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, _ := bufio.NewReader(readyR).ReadString('\n')
	if line != "ok\n" {
		tb.Fatalf("monitor not ready: %q\n%s", line, p.monitorLog())
	}
	p.client = monitorapi.NewClient(filepath.Join(p.dir, monitorapi.SocketName))
}

func (p *pod) monitorLog() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// cleanup removes every container (through the monitor while it answers,
// else by killing what is left in the test's cgroups), ends the monitor
// and removes the cgroups.
func (p *pod) cleanup() {
	tb := p.tb
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if p.alive() {
		states, _ := p.client.List(ctx)
		for _, st := range states {
			_ = p.client.Kill(ctx, st.ID, 9, true)
		}
		for _, st := range states {
			p.waitStatus(st.ID, monitorapi.StatusStopped)
			if err := p.client.Delete(ctx, st.ID); err != nil {
				tb.Errorf("cleanup: delete %s: %v", st.ID, err)
			}
		}
		// Every helper, init and orphan was reaped.
		deadline := time.Now().Add(5 * time.Second)
		for z := zombieChildren(p.cmd.Process.Pid); len(z) > 0; z = zombieChildren(p.cmd.Process.Pid) {
			if time.Now().After(deadline) {
				tb.Errorf("cleanup: zombie children of the monitor: %v", z)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := p.client.Shutdown(ctx); err != nil {
			tb.Errorf("cleanup: shutdown: %v", err)
		}
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
		}
	}
	if p.alive() {
		_ = p.cmd.Process.Kill() // by pid: our own child
		<-p.exited
	}
	killCgroupTree(tb, p.cgParent)
	removeCgroupTree(tb, p.cgParent)
	if log := p.monitorLog(); strings.Contains(log, "DATA RACE") || tb.Failed() {
		if strings.Contains(log, "DATA RACE") {
			tb.Error("the monitor reported a data race")
		}
		tb.Logf("monitor log:\n%s", log)
	}
}

func (p *pod) alive() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// bundle writes a container's bundle and returns the create request.
func (p *pod) bundle(id string, args []string, o ctrOpts) monitorapi.CreateRequest {
	tb := p.tb
	tb.Helper()
	dir := filepath.Join(p.dir, "bundles", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	spec := testSpec(p.rootfs, p.cgParent+"/"+id, args, o)
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		tb.Fatal(err)
	}
	r := monitorapi.CreateRequest{Bundle: dir, TTY: o.tty, Stdin: o.stdin, StdinOnce: o.stdinOnce}
	if !o.noLog {
		r.LogPath = p.logFile(id)
	}
	return r
}

func (p *pod) logFile(id string) string {
	d := filepath.Join(p.dir, "logs")
	_ = os.MkdirAll(d, 0o700)
	return filepath.Join(d, id+".log")
}

// run creates and starts a container.
func (p *pod) run(id string, args []string, o ctrOpts) monitorapi.State {
	p.tb.Helper()
	ctx := testCtx(p.tb)
	if _, err := p.client.Create(ctx, id, p.bundle(id, args, o)); err != nil {
		p.tb.Fatalf("create %s: %v", id, err)
	}
	st, err := p.client.Start(ctx, id)
	if err != nil {
		p.tb.Fatalf("start %s: %v", id, err)
	}
	return st
}

// waitStatus polls until container id has the status; stopped also waits
// for the exit to be reported.
func (p *pod) waitStatus(id string, want monitorapi.Status) monitorapi.State {
	p.tb.Helper()
	var st monitorapi.State
	var err error
	waitFor(p.tb, 20*time.Second, func() bool {
		st, err = p.client.State(context.Background(), id)
		return err == nil && st.Status == want
	}, func() string { return fmt.Sprintf("%s to be %s (now %+v, %v)", id, want, st, err) })
	return st
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, cond func() bool, what func() string) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// eventLog collects a subscription's events.
type eventLog struct {
	mu     sync.Mutex
	events []monitorapi.Event
	done   chan struct{} // closed when the subscription ended
	cancel context.CancelFunc
}

func (p *pod) subscribe() *eventLog {
	ctx, cancel := context.WithCancel(context.Background())
	l := &eventLog{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(l.done)
		_ = p.client.Events(ctx, func(ev monitorapi.Event) {
			l.mu.Lock()
			l.events = append(l.events, ev)
			l.mu.Unlock()
		})
	}()
	p.tb.Cleanup(func() { cancel(); <-l.done })
	return l
}

func (l *eventLog) snapshot() []monitorapi.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]monitorapi.Event(nil), l.events...)
}

// waitEvent waits for an event of type t about id and returns it.
func (l *eventLog) waitEvent(tb testing.TB, t monitorapi.EventType, id string) monitorapi.Event {
	tb.Helper()
	var found monitorapi.Event
	waitFor(tb, 20*time.Second, func() bool {
		for _, ev := range l.snapshot() {
			if ev.Type == t && ev.State.ID == id {
				found = ev
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("event %s of %s (have %+v)", t, id, l.snapshot()) })
	return found
}

// procStat is what /proc/<pid>/stat tells of a process.
type procStat struct {
	state byte
	ppid  int
}

func readProcStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	// pid (comm) state ppid ...; comm may hold anything but ends at the
	// last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return procStat{}, false
	}
	var st procStat
	st.state = f[0][0]
	if _, err := fmt.Sscan(f[1], &st.ppid); err != nil {
		return procStat{}, false
	}
	return st, true
}

// zombieChildren lists the children of pid that are zombies.
func zombieChildren(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		var child int
		if _, err := fmt.Sscan(e.Name(), &child); err != nil {
			continue
		}
		if st, ok := readProcStat(child); ok && st.ppid == pid && st.state == 'Z' {
			out = append(out, child)
		}
	}
	return out
}

// execedStatus returns /proc/<pid>/status once the container's init has
// exec'd its command: start returns when the init passed its exec fifo,
// and until the execve the process is runc's init, which ignores signals.
func execedStatus(t *testing.T, pid int, comm string) string {
	t.Helper()
	waitFor(t, 10*time.Second, func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return err == nil && strings.TrimSpace(string(b)) == comm
	}, func() string { return fmt.Sprintf("process %d to exec %s", pid, comm) })
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	return string(status)
}
