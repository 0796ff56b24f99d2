package monitor_test

// Container output in the CRI log, end to end.

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
)

// logLine is one parsed CRI log line.
type logLine struct {
	ts      time.Time
	stream  string
	tag     string
	content string
}

// parseLog parses CRI log lines, failing on any malformed one.
func parseLog(t *testing.T, b []byte) []logLine {
	t.Helper()
	var out []logLine
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		if l[len(l)-1] != '\n' {
			t.Fatalf("log line without newline: %q", l)
		}
		f := strings.SplitN(string(l[:len(l)-1]), " ", 4)
		if len(f) != 4 {
			t.Fatalf("malformed log line %q", l)
		}
		ts, err := time.Parse(time.RFC3339Nano, f[0])
		if err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if (f[1] != "stdout" && f[1] != "stderr") || (f[2] != "F" && f[2] != "P") {
			t.Fatalf("malformed log line %q", l)
		}
		out = append(out, logLine{ts, f[1], f[2], f[3]})
	}
	return out
}

func readLog(t *testing.T, path string) []logLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseLog(t, b)
}

func TestLogFormat(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	script := `echo out1; echo err1 >&2; head -c 40000 /dev/zero | tr '\0' x; echo; echo err2 >&2; printf 'a\r\n'; printf tail`
	p.run("fmt", []string{"sh", "-c", script}, ctrOpts{})
	st := p.waitStatus("fmt", monitorapi.StatusStopped)
	if st.Exit.Code != 0 {
		t.Fatalf("exit %+v", *st.Exit)
	}
	var stdout, stderr []logLine
	for _, l := range readLog(t, p.logFile("fmt")) {
		if l.stream == "stdout" {
			stdout = append(stdout, l)
		} else {
			stderr = append(stderr, l)
		}
	}
	x := strings.Repeat("x", 16384)
	want := []logLine{
		{stream: "stdout", tag: "F", content: "out1"},
		{stream: "stdout", tag: "P", content: x},
		{stream: "stdout", tag: "P", content: x},
		{stream: "stdout", tag: "F", content: strings.Repeat("x", 40000-2*16384)},
		{stream: "stdout", tag: "F", content: "a"},
		{stream: "stdout", tag: "P", content: "tail"},
	}
	if len(stdout) != len(want) {
		t.Fatalf("stdout: %d lines, want %d: %v", len(stdout), len(want), summarize(stdout))
	}
	for i := range want {
		if stdout[i].tag != want[i].tag || stdout[i].content != want[i].content {
			t.Errorf("stdout line %d: %v, want %v", i, summarize(stdout[i:i+1]), summarize(want[i:i+1]))
		}
	}
	if len(stderr) != 2 || stderr[0].content != "err1" || stderr[1].content != "err2" || stderr[0].tag != "F" {
		t.Errorf("stderr: %v", summarize(stderr))
	}
}

func summarize(ls []logLine) []string {
	var out []string
	for _, l := range ls {
		c := l.content
		if len(c) > 20 {
			c = fmt.Sprintf("%s...(%d bytes)", c[:20], len(c))
		}
		out = append(out, l.stream+" "+l.tag+" "+c)
	}
	return out
}

func TestReopenLog(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	ctx := testCtx(t)
	const n = 300
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo $i; i=$((i+1)); sleep 0.01; done`, n)
	p.run("seq", []string{"sh", "-c", script}, ctrOpts{})
	path := p.logFile("seq")
	var rotated []string
	for r := 1; r <= 6; r++ {
		// Wait for a few new lines, then rotate as kubelet does.
		waitFor(t, 10*time.Second, func() bool {
			fi, err := os.Stat(path)
			return err == nil && fi.Size() > 200
		}, func() string { return "log lines" })
		to := fmt.Sprintf("%s.%d", path, r)
		if err := os.Rename(path, to); err != nil {
			t.Fatal(err)
		}
		rotated = append(rotated, to)
		if err := p.client.ReopenLog(ctx, "seq"); err != nil {
			t.Fatal(err)
		}
	}
	st := p.waitStatus("seq", monitorapi.StatusStopped)
	if st.Exit.Code != 0 {
		t.Fatalf("exit %+v", *st.Exit)
	}
	if err := p.client.ReopenLog(ctx, "seq"); err == nil {
		t.Fatal("reopen-log of a stopped container succeeded")
	}
	var all []byte
	for _, f := range append(rotated, path) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	lines := parseLog(t, all)
	if len(lines) != n {
		t.Fatalf("%d lines across %d files, want %d", len(lines), len(rotated)+1, n)
	}
	for i, l := range lines {
		if l.content != strconv.Itoa(i) || l.tag != "F" {
			t.Fatalf("line %d is %q (%s)", i, l.content, l.tag)
		}
		if i > 0 && l.ts.Before(lines[i-1].ts) {
			t.Fatalf("line %d goes back in time", i)
		}
	}
}

func TestTTYLog(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	p.run("tty", []string{"sh", "-c", "echo hello from a tty; echo and stderr >&2"}, ctrOpts{tty: true})
	p.waitStatus("tty", monitorapi.StatusStopped)
	lines := readLog(t, p.logFile("tty"))
	if len(lines) != 2 || lines[0].content != "hello from a tty" || lines[1].content != "and stderr" {
		t.Fatalf("log: %v", summarize(lines))
	}
	for _, l := range lines {
		if l.stream != "stdout" || l.tag != "F" {
			t.Fatalf("tty output logged as %s %s", l.stream, l.tag)
		}
	}
}

func TestLogsWithoutClients(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	events := p.subscribe()
	p.run("talk", []string{"sh", "-c", "i=0; while [ $i -lt 50 ]; do echo line $i; i=$((i+1)); sleep 0.02; done"}, ctrOpts{})
	events.waitEvent(t, monitorapi.EventStarted, "talk")
	// The daemon goes away: no client is connected any more.
	events.cancel()
	<-events.done
	path := p.logFile("talk")
	waitFor(t, 20*time.Second, func() bool {
		b, _ := os.ReadFile(path)
		return bytes.Contains(b, []byte(" stdout F line 49\n"))
	}, func() string { return "the last line in the log" })
	if got := len(readLog(t, path)); got != 50 {
		t.Fatalf("%d lines, want 50", got)
	}
	st := p.waitStatus("talk", monitorapi.StatusStopped)
	if st.Exit.Code != 0 {
		t.Fatalf("exit %+v", *st.Exit)
	}
}
