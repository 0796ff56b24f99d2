package conformance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The log is in kubelet's CRI format: each stream tagged, long lines split
// into partial (P) chunks ending in a full (F) one, a last line without a
// newline still logged, tagged P as containerd 2.x does.
func TestContainerLogFormat(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "logformat")
	script := `echo out1; echo err1 >&2; head -c 40000 /dev/zero | tr '\0' x; echo; printf tail`
	st, lines := e.runToExit(t, podID, podCfg, e.ctrConfig("fmt", "sh", "-c", script))
	if st.ExitCode != 0 {
		t.Fatalf("exit %d", st.ExitCode)
	}
	var stdout, stderr []logLine
	for _, l := range lines {
		if l.stream == "stdout" {
			stdout = append(stdout, l)
		} else {
			stderr = append(stderr, l)
		}
	}
	if len(stderr) != 1 || stderr[0].text != "err1" || !stderr[0].full {
		t.Fatalf("stderr lines %+v", stderr)
	}
	if len(stdout) < 4 || stdout[0].text != "out1" {
		t.Fatalf("stdout lines %+v", stdout)
	}
	// 40000 bytes: 16 KiB P, 16 KiB P, the rest F.
	long := stdout[1 : len(stdout)-1]
	var joined strings.Builder
	for i, l := range long {
		if l.full != (i == len(long)-1) {
			t.Fatalf("long line chunk %d full=%v of %d chunks", i, l.full, len(long))
		}
		if len(l.text) > 16<<10 {
			t.Fatalf("chunk of %d bytes exceeds 16 KiB", len(l.text))
		}
		joined.WriteString(l.text)
	}
	if joined.String() != strings.Repeat("x", 40000) || len(long) != 3 {
		t.Fatalf("long line came back as %d chunks, %d bytes", len(long), joined.Len())
	}
	if last := stdout[len(stdout)-1]; last.text != "tail" || last.full {
		t.Fatalf("last line %+v, want a partial line \"tail\"", last)
	}
	for i := 1; i < len(lines); i++ {
		if lines[i].at.Before(lines[i-1].at) {
			t.Fatalf("timestamps go backwards at line %d", i)
		}
	}
}

// kubelet rotates a log by renaming it and calling ReopenContainerLog:
// with a container writing every 10 ms, every line is in exactly one file,
// in order, across several rotations.
func TestContainerLogRotation(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "logrotate")
	id := e.run(t, podID, podCfg, e.ctrConfig("writer", "sh", "-c", "i=0; while :; do echo line-$i; i=$((i+1)); sleep 0.01; done"))
	path := e.status(t, id).LogPath
	waitLog(t, path, "line-5")
	var rotated []string
	for i := 0; i < 8; i++ {
		old := fmt.Sprintf("%s.%d", path, i)
		if err := os.Rename(path, old); err != nil {
			t.Fatal(err)
		}
		rotated = append(rotated, old)
		if _, err := e.tg.Runtime.ReopenContainerLog(context.Background(), &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); err != nil {
			t.Fatalf("ReopenContainerLog: %v", err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("no new log file after ReopenContainerLog: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // let lines land in the new file: the point of the test
	}
	if _, err := e.tg.Runtime.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	next := 0
	for _, f := range append(rotated, path) {
		for _, l := range readLog(t, f) {
			n, err := strconv.Atoi(strings.TrimPrefix(l.text, "line-"))
			if err != nil || !l.full {
				t.Fatalf("%s: unexpected line %+v", filepath.Base(f), l)
			}
			if n != next {
				t.Fatalf("%s: line-%d where line-%d was due (lost or duplicated across a rotation)", filepath.Base(f), n, next)
			}
			next++
		}
	}
	if next < 20 {
		t.Fatalf("only %d lines logged", next)
	}
	// Reopening the log of a stopped container is refused.
	if _, err := e.tg.Runtime.ReopenContainerLog(context.Background(), &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); err == nil {
		t.Fatal("ReopenContainerLog of an exited container succeeded")
	}
}

// A TTY container's output is logged as stdout, through its terminal.
func TestContainerTTYLog(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "tty")
	cfg := e.ctrConfig("tty", "sh", "-c", `if [ -t 1 ]; then echo terminal; fi; echo to-stderr >&2; echo "TERM=$TERM"`)
	cfg.Tty = true
	_, lines := e.runToExit(t, podID, podCfg, cfg)
	for _, l := range lines {
		if l.stream != "stdout" {
			t.Fatalf("a TTY container logged on %s: %+v", l.stream, l)
		}
	}
	if got := strings.ReplaceAll(strings.TrimSpace(output(lines)), "\n", "|"); got != "terminal|to-stderr|TERM=xterm" {
		t.Fatalf("got %q", got)
	}
}
