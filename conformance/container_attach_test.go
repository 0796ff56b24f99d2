package conformance

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/tools/remotecommand"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// attachStream attaches with opts until ctx ends or the output does.
func (e *ctrEnv) attachStream(ctx context.Context, t *testing.T, client executor, req *runtimeapi.AttachRequest, opts remotecommand.StreamOptions) <-chan error {
	t.Helper()
	u := e.attachURL(t, req)
	done := make(chan error, 1)
	go func() { done <- client(t, u).StreamWithContext(ctx, opts) }()
	return done
}

// kubectl attach: the output from now on, on the right stream, for every
// attacher; detaching leaves the container running and its log whole.
func TestAttachOutput(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "attach-out")
	script := `i=0; while true; do i=$((i+1)); echo "tick $i"; echo "oops $i" >&2; sleep 0.02; done`
	id := e.run(t, podID, podCfg, e.ctrConfig("ticker", "sh", "-c", script))
	before, _ := daemonHolds(t, e)
	for name, client := range executors {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			outA, errA, outB := newSyncBuffer(), newSyncBuffer(), newSyncBuffer()
			req := &runtimeapi.AttachRequest{ContainerId: id, Stdout: true, Stderr: true}
			a := e.attachStream(ctx, t, client, req, remotecommand.StreamOptions{Stdout: outA, Stderr: errA})
			b := e.attachStream(ctx, t, client, &runtimeapi.AttachRequest{ContainerId: id, Stdout: true}, remotecommand.StreamOptions{Stdout: outB})
			waitFor(t, func() bool {
				return strings.Count(outA.String(), "tick") > 3 && strings.Count(errA.String(), "oops") > 3 && strings.Count(outB.String(), "tick") > 3
			})
			if strings.Contains(outA.String(), "oops") || strings.Contains(errA.String(), "tick") {
				t.Fatalf("streams mixed: stdout %q stderr %q", outA.String(), errA.String())
			}
			cancel()
			<-a
			<-b
		})
	}
	if st := e.status(t, id); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after detaching the container is %v", st.State)
	}
	// The log kept everything while attachers came and went.
	n := len(readLog(t, e.status(t, id).LogPath))
	waitFor(t, func() bool { return len(readLog(t, e.status(t, id).LogPath)) > n+4 })
	expectNoLeak(t, e, before)
}

// kubectl run -i: stdin reaches the process; with stdin_once the end of
// the attacher's input closes the container's stdin, and the attach ends
// with the container.
func TestAttachStdinOnce(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "attach-stdin")
	cfg := e.ctrConfig("reader", "sh", "-c", `while read line; do echo "got:$line"; done; echo eof`)
	cfg.Stdin, cfg.StdinOnce = true, true
	id := e.run(t, podID, podCfg, cfg)
	out := newSyncBuffer()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := e.attachStream(ctx, t, executors["spdy"], &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true},
		remotecommand.StreamOptions{Stdin: strings.NewReader("hello\nworld\n"), Stdout: out})
	if err := <-done; err != nil {
		t.Fatalf("attach: %v", err)
	}
	if got := out.String(); got != "got:hello\ngot:world\neof\n" {
		t.Fatalf("attach output %q", got)
	}
	st := e.waitState(t, id, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
	if st.ExitCode != 0 {
		t.Fatalf("exit code %d", st.ExitCode)
	}
}

// A container without a log path (crictl run without --log-path does
// that) still gets its output to an attacher; only the log is skipped.
// critest's attach spec found it discarded.
func TestAttachWithoutLogPath(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "attach-nolog")
	cfg := e.ctrConfig("unlogged", "sh", "-c", `read line; echo "got:$line"; echo "err:$line" >&2`)
	cfg.Stdin, cfg.StdinOnce, cfg.LogPath = true, true, ""
	id := e.run(t, podID, podCfg, cfg)
	out, errOut := newSyncBuffer(), newSyncBuffer()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := e.attachStream(ctx, t, executors["spdy"], &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Stderr: true},
		remotecommand.StreamOptions{Stdin: strings.NewReader("hello\n"), Stdout: out, Stderr: errOut})
	if err := <-done; err != nil {
		t.Fatalf("attach: %v", err)
	}
	if got, gotErr := out.String(), errOut.String(); got != "got:hello\n" || gotErr != "err:hello\n" {
		t.Fatalf("attach stdout %q, stderr %q", got, gotErr)
	}
	if st := e.waitState(t, id, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second); st.ExitCode != 0 || st.LogPath != "" {
		t.Fatalf("exit code %d, log path %q", st.ExitCode, st.LogPath)
	}
}

// kubectl attach -it to a container with a terminal: resize, type, exit.
func TestAttachTTY(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "attach-tty")
	cfg := e.ctrConfig("shell", "sh")
	cfg.Stdin, cfg.Tty = true, true
	id := e.run(t, podID, podCfg, cfg)
	inR, inW := io.Pipe()
	defer inW.Close()
	out := newSyncBuffer()
	sized := make(chan struct{})
	defer close(sized)
	done := e.attachStream(context.Background(), t, executors["spdy"], &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Tty: true},
		remotecommand.StreamOptions{Stdin: inR, Stdout: out, Tty: true,
			TerminalSizeQueue: &fixedSize{size: remotecommand.TerminalSize{Width: 100, Height: 40}, done: sized}})
	// The resize is asynchronous: ask until the shell sees it.
	waitFor(t, func() bool {
		if _, err := io.WriteString(inW, "stty size\n"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		return strings.Contains(out.String(), "40 100")
	})
	if _, err := io.WriteString(inW, "exit 5\n"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("attach ended with %v", err)
	}
	if st := e.waitState(t, id, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second); st.ExitCode != 5 {
		t.Fatalf("exit code %d, want 5", st.ExitCode)
	}
}

func TestAttachErrors(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "attach-errors")
	st, _ := e.runToExit(t, podID, podCfg, e.ctrConfig("done", "true"))
	for name, c := range map[string]struct {
		req  *runtimeapi.AttachRequest
		want codes.Code
	}{
		"no container id": {&runtimeapi.AttachRequest{Stdout: true}, codes.InvalidArgument},
		"missing":         {&runtimeapi.AttachRequest{ContainerId: "f00dfeed", Stdout: true}, codes.NotFound},
		"exited":          {&runtimeapi.AttachRequest{ContainerId: st.Id, Stdout: true}, codes.FailedPrecondition},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := e.tg.Runtime.Attach(context.Background(), c.req); status.Code(err) != c.want {
				t.Fatalf("Attach = %v, want %v", err, c.want)
			}
		})
	}
}

// A container stopped during an attach ends the attach, and nothing of it
// stays in the daemon.
func TestAttachEndsWhenTheContainerStops(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "attach-stop")
	id := e.run(t, podID, podCfg, e.ctrConfig("sleeper", "sh", "-c", "while true; do echo .; sleep 0.05; done"))
	before, _ := daemonHolds(t, e)
	out := newSyncBuffer()
	done := e.attachStream(context.Background(), t, executors["spdy"], &runtimeapi.AttachRequest{ContainerId: id, Stdout: true},
		remotecommand.StreamOptions{Stdout: out})
	waitFor(t, func() bool { return strings.Contains(out.String(), ".") })
	e.stop(t, id)
	if err := <-done; err != nil {
		t.Fatalf("attach ended with %v", err)
	}
	expectNoLeak(t, e, before)
}
