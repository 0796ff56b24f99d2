package conformance

// Clients of the streaming server as kubectl and kubelet use them:
// client-go's remotecommand executors (SPDY and WebSocket) and port
// forwarder, pointed at the URLs the CRI hands out.

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// executor makes a client for a streaming URL over one protocol family.
type executor func(t testing.TB, u string) remotecommand.Executor

// executors are the client protocols a streaming URL must serve: SPDY
// (v4 down to v1, kubelet's and crictl's) and WebSocket (v4 channels).
var executors = map[string]executor{
	"spdy": func(t testing.TB, u string) remotecommand.Executor {
		t.Helper()
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatalf("streaming URL %q: %v", u, err)
		}
		ex, err := remotecommand.NewSPDYExecutor(&rest.Config{}, http.MethodPost, parsed)
		if err != nil {
			t.Fatalf("SPDY executor: %v", err)
		}
		return ex
	},
	"websocket": func(t testing.TB, u string) remotecommand.Executor {
		t.Helper()
		ex, err := remotecommand.NewWebSocketExecutorForProtocols(&rest.Config{}, http.MethodGet, u, "v4.channel.k8s.io")
		if err != nil {
			t.Fatalf("WebSocket executor: %v", err)
		}
		return ex
	},
}

// execURL asks the CRI for an exec URL.
func (e *ctrEnv) execURL(t testing.TB, req *runtimeapi.ExecRequest) string {
	t.Helper()
	resp, err := e.tg.Runtime.Exec(context.Background(), req)
	if err != nil {
		t.Fatalf("Exec(%q): %v", req.Cmd, err)
	}
	return resp.Url
}

// attachURL asks the CRI for an attach URL.
func (e *ctrEnv) attachURL(t testing.TB, req *runtimeapi.AttachRequest) string {
	t.Helper()
	resp, err := e.tg.Runtime.Attach(context.Background(), req)
	if err != nil {
		t.Fatalf("Attach(%s): %v", req.ContainerId, err)
	}
	return resp.Url
}

// fixedSize is a terminal size queue that reports one size, then waits
// for the stream's end.
type fixedSize struct {
	size remotecommand.TerminalSize
	sent bool
	done <-chan struct{}
}

func (f *fixedSize) Next() *remotecommand.TerminalSize {
	if !f.sent {
		f.sent = true
		return &f.size
	}
	<-f.done
	return nil
}

// syncBuffer is a bytes buffer safe for a writer and a polling reader.
type syncBuffer struct {
	mu  chan struct{}
	buf []byte
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{mu: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	b.buf = append(b.buf, p...)
	<-b.mu
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return string(b.buf)
}

// daemonResources are what a daemon holds that a finished stream must
// give back: open descriptors and child processes.
type daemonResources struct{ fds, children int }

func daemonHolds(t testing.TB, e *ctrEnv) (daemonResources, bool) {
	t.Helper()
	if e.tg.Daemon == nil {
		return daemonResources{}, false
	}
	pid := strconv.Itoa(e.tg.Daemon.Pid())
	fds, err := os.ReadDir(filepath.Join("/proc", pid, "fd"))
	if err != nil {
		t.Fatalf("daemon's descriptors: %v", err)
	}
	var children int
	tasks, _ := filepath.Glob(filepath.Join("/proc", pid, "task", "*", "children"))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		children += len(strings.Fields(string(b)))
	}
	return daemonResources{fds: len(fds), children: children}, true
}

// expectNoLeak waits until the daemon holds no more than before.
func expectNoLeak(t *testing.T, e *ctrEnv, before daemonResources) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		now, ok := daemonHolds(t, e)
		if !ok || (now.fds <= before.fds && now.children <= before.children) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon holds %d descriptors and %d children, before the stream %d and %d", now.fds, now.children, before.fds, before.children)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
