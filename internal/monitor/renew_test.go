package monitor_test

// A monitor that renews itself (re-executes with its state) whenever it
// is quiet: nothing it holds may notice.

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
)

// renewals counts the renewals in the monitor's log.
func (p *pod) renewals() int { return strings.Count(p.monitorLog(), `msg="monitor renewed"`) }

// waitRenewal waits until the monitor renewed itself more than n times.
func (p *pod) waitRenewal(t *testing.T, n int) int {
	t.Helper()
	waitFor(t, 20*time.Second, func() bool { return p.renewals() > n },
		func() string { return fmt.Sprintf("a renewal after %d:\n%s", n, p.monitorLog()) })
	return p.renewals()
}

func TestRenewal(t *testing.T) {
	integration(t)
	// Renew after any call, 200 ms later.
	p := newPodWith(t, makeRootfs(t), "", []string{"BERTH_MONITOR_IDLE_DELAY=200ms", "BERTH_MONITOR_RENEW_GROWTH=0"})
	ctx := testCtx(t)
	events := p.subscribe()
	h, err := p.client.Hello(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Output across renewals: numbered lines, then a line whose first
	// half waits in the monitor while it renews.
	const n = 60
	talk := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo line $i; echo err $i >&2; i=$((i+1)); sleep 0.05; done; printf first-; sleep 1.5; echo half`, n)
	p.run("talk", []string{"sh", "-c", talk}, ctrOpts{})
	p.run("tty", []string{"sh", "-c", "sleep 1; echo from a tty; sleep 1000"}, ctrOpts{tty: true})
	p.run("stdin", []string{"cat"}, ctrOpts{stdin: true})
	p.run("sleeper", []string{"sleep", "1000"}, ctrOpts{})
	if _, err := p.client.Create(ctx, "created", p.bundle("created", []string{"echo", "late"}, ctrOpts{})); err != nil {
		t.Fatal(err)
	}
	p.run("done", []string{"sh", "-c", "exit 4"}, ctrOpts{})
	p.waitStatus("done", monitorapi.StatusStopped)

	// Renewals while the output flows: each call brings one.
	seen := p.waitRenewal(t, 0)
	for range 3 {
		if _, err := p.client.List(ctx); err != nil {
			t.Fatal(err)
		}
		seen = p.waitRenewal(t, seen)
	}
	// Then one while "first-" waits in the monitor for the rest of its line.
	waitLogLine(t, p, "talk", func(l string) bool { return l == "line "+strconv.Itoa(n-1) })
	time.Sleep(100 * time.Millisecond)
	if _, err := p.client.List(ctx); err != nil {
		t.Fatal(err)
	}
	p.waitRenewal(t, seen)
	st := p.waitStatus("talk", monitorapi.StatusStopped)
	if st.Exit.Code != 0 {
		t.Fatalf("talk: exit %+v", *st.Exit)
	}
	var outN, errN int
	var last logLine
	for _, l := range readLog(t, p.logFile("talk")) {
		switch {
		case l.stream == "stdout" && l.content == "line "+strconv.Itoa(outN):
			outN++
		case l.stream == "stderr" && l.content == "err "+strconv.Itoa(errN):
			errN++
		default:
			last = l
		}
	}
	if outN != n || errN != n || last.content != "first-half" || last.tag != "F" {
		t.Fatalf("talk's log: %d and %d lines in order, then %+v", outN, errN, last)
	}

	// Everything else carried on.
	if got, err := p.client.Hello(ctx); err != nil || got.Pid != h.Pid {
		t.Fatalf("hello after renewals: %+v, %v (was pid %d)", got, err, h.Pid)
	}
	if st, err := p.client.State(ctx, "done"); err != nil || st.Exit == nil || st.Exit.Code != 4 {
		t.Fatalf("a stopped container after renewals: %+v, %v", st, err)
	}
	for _, id := range []string{"tty", "stdin", "sleeper"} {
		if st, err := p.client.State(ctx, id); err != nil || st.Status != monitorapi.StatusRunning {
			t.Fatalf("%s after renewals: %+v, %v", id, st, err)
		}
	}
	if got := readLog(t, p.logFile("tty")); len(got) != 1 || got[0].content != "from a tty" {
		t.Fatalf("tty log: %v", summarize(got))
	}
	if _, err := p.client.Start(ctx, "created"); err != nil {
		t.Fatalf("start after renewals: %v", err)
	}
	if st := p.waitStatus("created", monitorapi.StatusStopped); st.Exit.Code != 0 {
		t.Fatalf("created: exit %+v", *st.Exit)
	}
	if got := readLog(t, p.logFile("created")); len(got) != 1 || got[0].content != "late" {
		t.Fatalf("created's log: %v", summarize(got))
	}
	if err := p.client.Kill(ctx, "sleeper", 9, false); err != nil {
		t.Fatal(err)
	}
	if ev := events.waitEvent(t, monitorapi.EventExited, "sleeper"); ev.State.Exit.Code != 137 {
		t.Fatalf("sleeper's exit event: %+v", ev)
	}
	// The events connection of before the renewals still delivers, and
	// delivered each event once.
	select {
	case <-events.done:
		t.Fatal("the events subscription ended")
	default:
	}
	count := map[string]int{}
	for _, ev := range events.snapshot() {
		count[string(ev.Type)+" "+ev.State.ID]++
	}
	for k, c := range count {
		if c != 1 {
			t.Errorf("%d events %q", c, k)
		}
	}
	if err := p.client.Delete(ctx, "done"); err != nil {
		t.Fatalf("delete after renewals: %v", err)
	}
	// A renewed monitor caught its signals again: a new container does not
	// inherit them ignored.
	st = p.run("after", []string{"sleep", "1000"}, ctrOpts{})
	status := execedStatus(t, st.Pid, "sleep")
	if !strings.Contains(status, "SigIgn:\t0000000000000000\n") {
		t.Fatalf("a container created after renewals ignores signals:\n%s", status)
	}
	if p.renewals() < 5 {
		t.Fatalf("%d renewals", p.renewals())
	}
}
