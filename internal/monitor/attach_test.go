package monitor_test

// Attach to real containers: output, stdin, terminals, several attachers,
// detach, exits, errors, slow attachers, renewal, and no leaks.

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/containerd/errdefs"
)

// syncBuffer collects output written and read concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// attached is an attachment whose output is being collected.
type attached struct {
	*monitorapi.Attachment
	stdout, stderr syncBuffer
	done           chan struct{}
	err            error // CopyOutput's, once done is closed
}

func (p *pod) attach(id string, r monitorapi.AttachRequest) *attached {
	p.tb.Helper()
	a, err := p.client.Attach(testCtx(p.tb), id, r)
	if err != nil {
		p.tb.Fatalf("attach %s: %v", id, err)
	}
	at := &attached{Attachment: a, done: make(chan struct{})}
	go func() { defer close(at.done); at.err = at.CopyOutput(&at.stdout, &at.stderr) }()
	p.tb.Cleanup(func() { a.Close(); <-at.done })
	return at
}

// waitEnd waits for the output to end and checks that it ended cleanly.
func (at *attached) waitEnd(t *testing.T) {
	t.Helper()
	select {
	case <-at.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the attachment's output did not end")
	}
	if at.err != nil {
		t.Fatalf("CopyOutput: %v", at.err)
	}
}

func (at *attached) waitOutput(t *testing.T, want string) {
	t.Helper()
	waitFor(t, 20*time.Second, func() bool { return strings.Contains(at.stdout.String(), want) },
		func() string { return fmt.Sprintf("%q in the output (have %q)", want, at.stdout.String()) })
}

// leakCheck returns a check that the monitor's descriptors and this
// process's goroutines are back to what they are now.
func (p *pod) leakCheck(t *testing.T) func() {
	fds := func() int {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
		return len(ents)
	}
	fd0, g0 := fds(), runtime.NumGoroutine()
	return func() {
		t.Helper()
		waitFor(t, 20*time.Second, func() bool { return fds() <= fd0 && runtime.NumGoroutine() <= g0 },
			func() string {
				return fmt.Sprintf("no leak: monitor fds %d (had %d), goroutines %d (had %d)", fds(), fd0, runtime.NumGoroutine(), g0)
			})
	}
}

// logText rebuilds a stream's raw output from the CRI log, as far as it
// is written (a line being written is left out).
func logText(t *testing.T, path, stream string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw = raw[:bytes.LastIndexByte(raw, '\n')+1]
	var b strings.Builder
	for _, l := range parseLog(t, raw) {
		if l.stream == stream {
			b.WriteString(l.content)
			if l.tag == "F" {
				b.WriteByte('\n')
			}
		}
	}
	return b.String()
}

func TestAttachOutput(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	ctx := testCtx(t)
	script := `echo out1; echo err1 >&2; i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done
head -c 100000 /dev/zero | tr '\0' z; echo; echo err2 >&2; printf end`
	if _, err := p.client.Create(ctx, "out", p.bundle("out", []string{"sh", "-c", script}, ctrOpts{})); err != nil {
		t.Fatal(err)
	}
	leaks := p.leakCheck(t)
	// Created containers may be attached: nothing is missed.
	both := monitorapi.AttachRequest{Stdout: true, Stderr: true}
	a1, a2 := p.attach("out", both), p.attach("out", both)
	errOnly := p.attach("out", monitorapi.AttachRequest{Stderr: true})
	if _, err := p.client.Start(ctx, "out"); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	want.WriteString("out1\n")
	for i := range 200 {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	want.WriteString(strings.Repeat("z", 100000) + "\nend")
	for _, a := range []*attached{a1, a2, errOnly} {
		a.waitEnd(t) // the container exited: the output ends
	}
	for i, a := range []*attached{a1, a2} {
		if a.stdout.String() != want.String() || a.stderr.String() != "err1\nerr2\n" {
			t.Errorf("attacher %d: stdout %d bytes (want %d), stderr %q", i, len(a.stdout.String()), want.Len(), a.stderr.String())
		}
	}
	if errOnly.stdout.String() != "" || errOnly.stderr.String() != "err1\nerr2\n" {
		t.Errorf("stderr-only attacher: %q, %q", errOnly.stdout.String(), errOnly.stderr.String())
	}
	p.waitStatus("out", monitorapi.StatusStopped)
	if got := logText(t, p.logFile("out"), "stdout"); got != want.String() {
		t.Errorf("the log's stdout: %d bytes, want %d", len(got), want.Len())
	}
	if got := logText(t, p.logFile("out"), "stderr"); got != "err1\nerr2\n" {
		t.Errorf("the log's stderr: %q", got)
	}
	for _, a := range []*attached{a1, a2, errOnly} {
		a.Close()
	}
	leaks()

	// Stopped and unknown containers cannot be attached.
	if _, err := p.client.Attach(ctx, "out", both); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "not running") {
		t.Errorf("attach to an exited container: %v, want failed-precondition", err)
	}
	if _, err := p.client.Attach(ctx, "nope", both); !errdefs.IsNotFound(err) {
		t.Errorf("attach to an unknown container: %v, want not-found", err)
	}
}

func TestAttachStdinAndDetach(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	ctx := testCtx(t)
	p.run("cat", []string{"cat"}, ctrOpts{stdin: true})
	leaks := p.leakCheck(t)
	rw := monitorapi.AttachRequest{Stdin: true, Stdout: true}
	a := p.attach("cat", rw)
	_, _ = a.Stdin().Write([]byte("hello\n"))
	a.waitOutput(t, "hello\n")
	// Not stdin once: closing this attacher's stdin leaves the
	// container's open, and detaching leaves the container running.
	if err := a.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	a.Close()
	<-a.done
	leaks()
	if st, err := p.client.State(ctx, "cat"); err != nil || st.Status != monitorapi.StatusRunning {
		t.Fatalf("after detach: %+v, %v", st, err)
	}
	b := p.attach("cat", rw)
	_, _ = b.Stdin().Write([]byte("again\n"))
	b.waitOutput(t, "again\n")
	if b.stdout.String() != "again\n" {
		t.Errorf("second attacher got %q: output before its attach, or stdin of the first", b.stdout.String())
	}
	b.Close()
	<-b.done
	leaks()
}

func TestAttachStdinOnce(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	once := ctrOpts{stdin: true, stdinOnce: true}
	p.run("closed", []string{"sh", "-c", "cat; echo done"}, once)
	p.run("gone", []string{"sh", "-c", "cat; echo done"}, once)
	leaks := p.leakCheck(t)
	rw := monitorapi.AttachRequest{Stdin: true, Stdout: true}

	a := p.attach("closed", rw)
	_, _ = a.Stdin().Write([]byte("abc\n"))
	if err := a.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	a.waitEnd(t) // cat read EOF, the shell exited
	if a.stdout.String() != "abc\ndone\n" {
		t.Errorf("output %q", a.stdout.String())
	}
	if st := p.waitStatus("closed", monitorapi.StatusStopped); st.Exit.Code != 0 {
		t.Errorf("exit %+v", *st.Exit)
	}

	// An attacher that goes without closing stdin closes it too.
	b := p.attach("gone", rw)
	_, _ = b.Stdin().Write([]byte("x\n"))
	b.waitOutput(t, "x\n")
	b.Close()
	if st := p.waitStatus("gone", monitorapi.StatusStopped); st.Exit.Code != 0 {
		t.Errorf("exit %+v", *st.Exit)
	}
	if got := logText(t, p.logFile("gone"), "stdout"); got != "x\ndone\n" {
		t.Errorf("log %q", got)
	}
	a.Close()
	leaks()
}

func TestAttachTTY(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	p.run("tty", []string{"sh", "-c", "read x; stty size; echo err >&2; read y; stty size"}, ctrOpts{tty: true, stdin: true})
	leaks := p.leakCheck(t)
	a := p.attach("tty", monitorapi.AttachRequest{Stdin: true, Stdout: true, Stderr: true})
	if err := a.Resize(100, 40); err != nil {
		t.Fatal(err)
	}
	_, _ = a.Stdin().Write([]byte("go\n"))
	a.waitOutput(t, "40 100\r\nerr\r\n")
	// Another attacher gets the output from now on and may resize too
	// (its stdin frame follows its resize: the shell reads after it).
	b := p.attach("tty", monitorapi.AttachRequest{Stdin: true, Stdout: true})
	if err := b.Resize(132, 43); err != nil {
		t.Fatal(err)
	}
	_, _ = b.Stdin().Write([]byte("more\n"))
	a.waitEnd(t)
	b.waitEnd(t)
	if !strings.HasSuffix(a.stdout.String(), "40 100\r\nerr\r\nmore\r\n43 132\r\n") || a.stderr.String() != "" {
		t.Errorf("terminal output %q, stderr %q: all output is stdout", a.stdout.String(), a.stderr.String())
	}
	if b.stdout.String() != "more\r\n43 132\r\n" {
		t.Errorf("second attacher: %q", b.stdout.String())
	}
	a.Close()
	b.Close()
	leaks()
}

func TestAttachSlowAttacher(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	ctx := testCtx(t)
	const burst = 3000000 // well past what the monitor queues and the kernel buffers
	script := fmt.Sprintf(`head -c %d /dev/zero | tr '\0' y; echo; i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.02; done`, burst)
	if _, err := p.client.Create(ctx, "loud", p.bundle("loud", []string{"sh", "-c", script}, ctrOpts{})); err != nil {
		t.Fatal(err)
	}
	leaks := p.leakCheck(t)
	slow, err := p.client.Attach(ctx, "loud", monitorapi.AttachRequest{Stdout: true}) // never read
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := p.client.Start(ctx, "loud"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() bool {
		for _, l := range strings.Split(p.monitorLog(), "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "attacher too slow") && strings.Contains(l, " id=loud") {
				return true
			}
		}
		return false
	}, func() string { return "the slow attacher to be dropped" })
	// The log has the whole burst and keeps growing.
	ticks := func() int { return strings.Count(logText(t, p.logFile("loud"), "stdout"), "tick ") }
	waitFor(t, 20*time.Second, func() bool { return ticks() > 0 }, func() string { return "ticks in the log" })
	seen := ticks()
	waitFor(t, 20*time.Second, func() bool { return ticks() > seen }, func() string { return "more ticks in the log" })
	out := logText(t, p.logFile("loud"), "stdout")
	if !strings.HasPrefix(out, strings.Repeat("y", burst)+"\ntick 0\n") {
		t.Errorf("the log lost some of the burst")
	}
	// The dropped attachment ends (with what was sent before).
	_ = slow.CopyOutput(nil, nil)
	slow.Close()
	if err := p.client.Kill(ctx, "loud", 9, false); err != nil {
		t.Fatal(err)
	}
	p.waitStatus("loud", monitorapi.StatusStopped)
	leaks()
}

func TestAttachDefersRenewal(t *testing.T) {
	integration(t)
	// Renew after any call, 200 ms later, when quiet.
	p := newPodWith(t, makeRootfs(t), "", []string{"BERTH_MONITOR_IDLE_DELAY=200ms", "BERTH_MONITOR_RENEW_GROWTH=0"})
	ctx := testCtx(t)
	p.run("cat", []string{"cat"}, ctrOpts{stdin: true})
	p.run("once", []string{"sh", "-c", "cat; echo done"}, ctrOpts{stdin: true, stdinOnce: true})
	seen := p.waitRenewal(t, 0) // the stdin pipes were handed over

	rw := monitorapi.AttachRequest{Stdin: true, Stdout: true}
	a := p.attach("cat", rw)
	_, _ = a.Stdin().Write([]byte("one\n"))
	a.waitOutput(t, "one\n")
	seen = p.renewals()
	if _, err := p.client.List(ctx); err != nil { // asks for a renewal
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() bool { return strings.Contains(p.monitorLog(), "not quiet: attached") },
		func() string { return "a renewal deferred for the attachment" })
	if n := p.renewals(); n != seen {
		t.Fatalf("the monitor renewed itself while attached (%d renewals, had %d)", n, seen)
	}
	_, _ = a.Stdin().Write([]byte("two\n"))
	a.waitOutput(t, "two\n")
	a.Close()
	seen = p.waitRenewal(t, seen) // once detached

	b := p.attach("cat", rw)
	_, _ = b.Stdin().Write([]byte("three\n"))
	b.waitOutput(t, "three\n")
	b.Close()
	c := p.attach("once", rw)
	_, _ = c.Stdin().Write([]byte("x\n"))
	if err := c.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	c.waitEnd(t)
	if c.stdout.String() != "x\ndone\n" {
		t.Errorf("stdin once after a renewal: %q", c.stdout.String())
	}
}
