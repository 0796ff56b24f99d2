package monitor_test

// The monitor as a subreaper with helper processes: orphans, inits that end
// before their helper, kill of every process, helper failures.

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// logContent returns the content of the container's log lines so far.
func logContent(t *testing.T, p *pod, id string) []string {
	t.Helper()
	b, err := os.ReadFile(p.logFile(id))
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range parseLog(t, b) {
		out = append(out, l.content)
	}
	return out
}

// waitLogLine waits for a log line satisfying ok and returns it.
func waitLogLine(t *testing.T, p *pod, id string, ok func(string) bool) string {
	t.Helper()
	var found string
	waitFor(t, 20*time.Second, func() bool {
		for _, l := range logContent(t, p, id) {
			if ok(l) {
				found = l
				return true
			}
		}
		return false
	}, func() string { return "a log line of " + id + ", have " + strings.Join(logContent(t, p, id), "|") })
	return found
}

func TestOrphanReaped(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	monPid := p.cmd.Process.Pid
	// In the host's PID namespace, the grandchild the subshell leaves
	// behind is reparented to the nearest subreaper: the monitor.
	p.run("orphans", []string{"sh", "-c", "(sleep 2 & echo orphan $!); sleep 1000"}, ctrOpts{hostPID: true})
	line := waitLogLine(t, p, "orphans", func(l string) bool { return strings.HasPrefix(l, "orphan ") })
	pid, err := strconv.Atoi(strings.TrimPrefix(line, "orphan "))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool {
		st, ok := readProcStat(pid)
		return ok && st.ppid == monPid
	}, func() string { return "the orphan " + strconv.Itoa(pid) + " to be the monitor's child" })
	// It ends, and the monitor reaps it: no zombie is left.
	waitFor(t, 10*time.Second, func() bool {
		_, err := os.Stat("/proc/" + strconv.Itoa(pid))
		return os.IsNotExist(err)
	}, func() string { st, _ := readProcStat(pid); return "the orphan to be reaped, now " + string(st.state) })
	if z := zombieChildren(monPid); len(z) > 0 {
		t.Fatalf("zombie children of the monitor: %v", z)
	}
	// The container is not confused with it.
	if st, err := p.client.State(testCtx(t), "orphans"); err != nil || st.Status != monitorapi.StatusRunning {
		t.Fatalf("container after its orphan ended: %+v, %v", st, err)
	}
}

func TestInitEndsBeforeHelper(t *testing.T) {
	integration(t)
	// Every helper stays a while after its work: the inits, started at
	// once after create, end while their create helper still lives, and
	// reach the monitor as reparented zombies.
	const linger = time.Second
	p := newPodWith(t, makeRootfs(t), "", []string{helperLingerEnv + "=" + linger.String()})
	events := p.subscribe()
	for _, c := range []struct {
		id   string
		args []string
		code int
	}{{"true", []string{"true"}, 0}, {"seven", []string{"sh", "-c", "exit 7"}, 7}} {
		created := time.Now()
		p.run(c.id, c.args, ctrOpts{})
		if took := time.Since(created); took >= linger {
			t.Fatalf("create+start of %s took %s: it waited for the helper", c.id, took)
		}
		ev := events.waitEvent(t, monitorapi.EventExited, c.id)
		x := ev.State.Exit
		if x == nil || x.Code != c.code || x.Signal != 0 {
			t.Fatalf("%s: exit %+v, want code %d", c.id, x, c.code)
		}
		if d := x.FinishedAt.Sub(created); d < linger {
			t.Errorf("%s: reaped %s after its create, before its helper ended", c.id, d)
		}
	}
}

func TestKillAllSharedPIDNamespace(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	ctx := testCtx(t)
	// The init survives SIGTERM (it traps it); its two sleeps do not, and
	// only a signal to every process reaches them.
	script := `trap "echo got-term" TERM
sleep 1000 & a=$!
sleep 1000 & b=$!
echo ready
wait $a; wait $b
echo sleeps-gone
sleep 1000 & exec sleep 1000`
	p.run("shared", []string{"sh", "-c", script}, ctrOpts{hostPID: true})
	cg := p.cgParent + "/shared"
	waitLogLine(t, p, "shared", func(l string) bool { return l == "ready" })
	if n := len(pidsOf(cg)); n != 3 {
		t.Fatalf("%d processes before the kill, want 3", n)
	}
	// A forked sleep holds the shell's TERM trap until it resets its
	// signals (busybox runs the applet in the forked child): a SIGTERM in
	// that window is caught, and the sleep lives on. Kill only once both
	// sleeps take SIGTERM's default.
	waitFor(t, 10*time.Second, func() bool { return catchingTERM(cg) == 1 },
		func() string { return "only the init to catch SIGTERM" })
	if err := p.client.Kill(ctx, "shared", 15, true); err != nil {
		t.Fatal(err)
	}
	waitLogLine(t, p, "shared", func(l string) bool { return l == "sleeps-gone" })
	if !strings.Contains(strings.Join(logContent(t, p, "shared"), "\n"), "got-term") {
		t.Fatal("the init did not get SIGTERM")
	}
	waitFor(t, 10*time.Second, func() bool { return len(pidsOf(cg)) == 2 },
		func() string { return "the init and its last sleep" })
	if st, err := p.client.State(ctx, "shared"); err != nil || st.Status != monitorapi.StatusRunning {
		t.Fatalf("after SIGTERM to all: %+v, %v", st, err)
	}

	// SIGKILL to all: the init alone would leave its child behind.
	if err := p.client.Kill(ctx, "shared", 9, true); err != nil {
		t.Fatal(err)
	}
	st := p.waitStatus("shared", monitorapi.StatusStopped)
	if st.Exit.Code != 137 || st.Exit.Signal != 9 {
		t.Fatalf("exit %+v, want SIGKILL", *st.Exit)
	}
	if n := len(pidsOf(cg)); n != 0 {
		t.Fatalf("%d processes left", n)
	}
	// Both went through the kill helper; a SIGKILL to every process of a
	// container with its own PID namespace does not need it.
	p.run("own", []string{"sleep", "1000"}, ctrOpts{})
	if err := p.client.Kill(ctx, "own", 9, true); err != nil {
		t.Fatal(err)
	}
	p.waitStatus("own", monitorapi.StatusStopped)
	log := p.monitorLog()
	if n := strings.Count(log, "op=kill id=shared "); n != 2 {
		t.Errorf("%d kill helpers for shared, want 2", n)
	}
	if strings.Contains(log, "op=kill id=own ") {
		t.Error("a kill helper ran for a SIGKILL of a private PID namespace")
	}
}

func TestHelperFailures(t *testing.T) {
	integration(t)
	rootfs := makeRootfs(t)
	p := newPod(t, rootfs)
	ctx := testCtx(t)

	// libcontainer state left where the container would go: the helper
	// refuses with its own message and class.
	stale := filepath.Join(p.dir, "runc", "stale")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := p.client.Create(ctx, "stale", p.bundle("stale", []string{"true"}, ctrOpts{}))
	if !errdefs.IsAlreadyExists(err) || !strings.Contains(err.Error(), "has libcontainer state in") {
		t.Fatalf("create over stale state: %v, want already-exists from the helper", err)
	}
	if err := os.Remove(stale); err != nil {
		t.Fatal(err)
	}
	p.run("stale", []string{"true"}, ctrOpts{})
	p.waitStatus("stale", monitorapi.StatusStopped)

	// A refused update: the kernel's reason comes back.
	p.run("upd", []string{"sleep", "1000"}, ctrOpts{})
	err = p.client.Update(ctx, "upd", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "100000"}})
	if err == nil || !strings.Contains(err.Error(), "update container upd") || !errdefs.IsInternal(err) {
		t.Fatalf("update with a bad cpuset: %v, want the helper's internal error", err)
	}
	if err := p.client.Kill(ctx, "upd", 9, false); err != nil {
		t.Fatal(err)
	}
	p.waitStatus("upd", monitorapi.StatusStopped)

	// A helper that is none: its exit status is the message.
	q := newPodWith(t, rootfs, "/bin/false", nil)
	_, err = q.client.Create(ctx, "x", q.bundle("x", []string{"true"}, ctrOpts{}))
	if err == nil || !errdefs.IsInternal(err) || !strings.Contains(err.Error(), "container helper create x: exit status 1") {
		t.Fatalf("create with a broken helper: %v", err)
	}
	if _, err := q.client.State(ctx, "x"); !errdefs.IsNotFound(err) {
		t.Fatalf("state after a failed create: %v, want not-found", err)
	}
	if _, err := q.client.Hello(ctx); err != nil {
		t.Fatalf("monitor after a broken helper: %v", err)
	}
}

// catchingTERM counts the processes of cgroup cg (pids hierarchy) that
// catch SIGTERM (SigCgt in /proc/<pid>/status).
func catchingTERM(cg string) int {
	n := 0
	for _, pid := range pidsOf(cg) {
		b, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
				mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				if err == nil && mask&(1<<(15-1)) != 0 {
					n++
				}
			}
		}
	}
	return n
}
