package monitorapi

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// serve answers each connection's request with answer(req).
func serve(t *testing.T, path string, answer func(Request) Response) {
	t.Helper()
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); os.Remove(path) })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			var req Request
			if json.NewDecoder(bufio.NewReader(conn)).Decode(&req) == nil {
				_ = json.NewEncoder(conn).Encode(answer(req))
			}
			conn.Close()
		}
	}()
}

func TestLongSocketPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, SocketName)
	if len(path) <= maxSocketPath {
		t.Fatalf("path %d bytes long: not long enough to test", len(path))
	}
	serve(t, path, func(Request) Response { return Response{Hello: &Hello{Version: Version, Pid: 42}} })
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("socket not at its long path: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := NewClient(path).Hello(ctx)
	if err != nil || h.Pid != 42 {
		t.Fatalf("Hello over a %d-byte path = %+v, %v", len(path), h, err)
	}
}

func TestErrorAnswersKeepTheirClass(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	serve(t, path, func(r Request) Response {
		switch r.ID {
		case "missing":
			return Response{Error: "no container missing", Code: CodeNotFound}
		case "running":
			return Response{Error: "container running is running", Code: CodeFailedPrecondition}
		}
		return Response{Error: "boom"}
	})
	c := NewClient(path)
	ctx := context.Background()
	if err := c.Delete(ctx, "missing"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "no container missing") {
		t.Errorf("not found answer: %v", err)
	}
	if err := c.Delete(ctx, "running"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("precondition answer: %v", err)
	}
	if err := c.Delete(ctx, "other"); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("unclassified answer: %v", err)
	}
	if got := CodeOf(errdefs.ErrNotFound); got != CodeNotFound {
		t.Errorf("CodeOf(NotFound) = %q", got)
	}
}

func TestUnreachableMonitorIsUnavailable(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), SocketName))
	if _, err := c.Hello(context.Background()); !errdefs.IsUnavailable(err) {
		t.Fatalf("Hello to no monitor = %v, want Unavailable", err)
	}
}

func TestHelloRefusesAnotherProtocolVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	serve(t, path, func(Request) Response { return Response{Hello: &Hello{Version: Version + 1}} })
	if _, err := NewClient(path).Hello(context.Background()); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("Hello from a newer monitor = %v, want FailedPrecondition", err)
	}
}
