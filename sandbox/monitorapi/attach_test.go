package monitorapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestFramesRoundTrip(t *testing.T) {
	var stream []byte
	sizes := []int{0, 1, 100, MaxFramePayload, MaxFramePayload + 1, 3*MaxFramePayload + 7}
	var want [][]byte
	for i, n := range sizes {
		p := bytes.Repeat([]byte{byte('a' + i)}, n)
		before := len(stream)
		stream = AppendFrames(stream, FrameStdout, p)
		if got := len(stream) - before; got != FramedSize(n) {
			t.Errorf("%d bytes framed into %d, FramedSize says %d", n, got, FramedSize(n))
		}
		want = append(want, p)
	}
	fr := NewFrameReader(bytes.NewReader(stream))
	for i, p := range want {
		var got []byte
		frames := 0
		for {
			kind, payload, err := fr.Next()
			if err != nil || kind != FrameStdout {
				t.Fatalf("payload %d: kind %d, %v", i, kind, err)
			}
			if len(payload) > MaxFramePayload {
				t.Fatalf("payload %d: a frame of %d bytes", i, len(payload))
			}
			frames++
			got = append(got, payload...)
			if len(got) >= len(p) {
				break
			}
		}
		if !bytes.Equal(got, p) || frames != max(1, (len(p)+MaxFramePayload-1)/MaxFramePayload) {
			t.Fatalf("payload %d: %d bytes in %d frames, want %d bytes", i, len(got), frames, len(p))
		}
	}
	if _, _, err := fr.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
}

func TestFrameReaderErrors(t *testing.T) {
	header := func(kind FrameKind, n uint32) []byte {
		return binary.BigEndian.AppendUint32([]byte{byte(kind)}, n)
	}
	full := append(header(FrameStdin, MaxFramePayload), make([]byte, MaxFramePayload)...)
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"oversize", append(header(FrameStdin, MaxFramePayload+1), make([]byte, MaxFramePayload+1)...), ErrFrameTooLarge},
		{"huge", header(FrameStdout, 0xffffffff), ErrFrameTooLarge},
		{"truncated header", header(FrameStdin, 3)[:3], io.ErrUnexpectedEOF},
		{"truncated payload", append(header(FrameStdin, 10), "abc"...), io.ErrUnexpectedEOF},
		{"missing payload", header(FrameStdin, 10), io.ErrUnexpectedEOF},
		{"full size", full, nil},
	} {
		_, p, err := NewFrameReader(bytes.NewReader(tc.in)).Next()
		if !errors.Is(err, tc.want) || (tc.want == nil && len(p) != MaxFramePayload) {
			t.Errorf("%s: %d bytes, %v; want %v", tc.name, len(p), err, tc.want)
		}
	}
}

func TestResizePayload(t *testing.T) {
	p := ResizePayload(132, 43)
	if w, h, err := ParseResize(p[:]); err != nil || w != 132 || h != 43 {
		t.Fatalf("ParseResize(%v) = %d, %d, %v", p, w, h, err)
	}
	if !bytes.Equal(p[:], []byte{0, 132, 0, 43}) {
		t.Fatalf("payload %v: not big-endian width then height", p)
	}
	if _, _, err := ParseResize(p[:3]); err == nil {
		t.Fatal("a 3-byte resize payload parsed")
	}
}

// attachServer serves each connection with fn once it read the request
// line; the connection is closed when fn returns.
func attachServer(t *testing.T, fn func(req Request, conn net.Conn, r *bufio.Reader)) *Client {
	t.Helper()
	path := filepath.Join(t.TempDir(), SocketName)
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				br := bufio.NewReader(conn)
				line, err := br.ReadBytes('\n')
				var req Request
				if err == nil && json.Unmarshal(line, &req) == nil {
					fn(req, conn, br)
				}
			}()
		}
	}()
	return NewClient(path)
}

// answer writes resp's line followed at once by extra (frames that must
// not be lost to the client's reading of the answer).
func answer(t *testing.T, conn net.Conn, resp Response, extra []byte) {
	b, err := json.Marshal(resp)
	if err != nil {
		t.Error(err)
		return
	}
	if _, err := conn.Write(append(append(b, '\n'), extra...)); err != nil {
		t.Error(err)
	}
}

type frame struct {
	kind FrameKind
	data string
}

func TestAttachClient(t *testing.T) {
	got := make(chan []frame, 1)
	c := attachServer(t, func(req Request, conn net.Conn, r *bufio.Reader) {
		if req.Op != OpAttach || req.ID != "ctr" || req.Attach == nil || *req.Attach != (AttachRequest{Stdin: true, Stdout: true, Stderr: true}) {
			t.Errorf("request %+v", req)
			return
		}
		out := AppendFrames(nil, FrameStdout, []byte("hello "))
		out = AppendFrames(out, FrameStderr, []byte("oops"))
		answer(t, conn, Response{State: &State{ID: "ctr", Status: StatusRunning}}, out)
		var frames []frame
		fr := NewFrameReader(r)
		for {
			kind, p, err := fr.Next()
			if err != nil {
				t.Errorf("reading the client's frames: %v", err)
				break
			}
			frames = append(frames, frame{kind, string(p)})
			if kind == FrameStdinClosed {
				break
			}
		}
		got <- frames
		_, _ = conn.Write(AppendFrames(nil, FrameStdout, []byte("world")))
	})
	leaks := leakCheck(t)
	a, err := c.Attach(context.Background(), "ctr", AttachRequest{Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.State().Status != StatusRunning {
		t.Errorf("state %+v", a.State())
	}
	var stdout, stderr bytes.Buffer
	copied := make(chan error, 1)
	go func() { copied <- a.CopyOutput(&stdout, &stderr) }()

	big := strings.Repeat("x", 2*MaxFramePayload+100)
	if n, err := a.Stdin().Write([]byte(big)); n != len(big) || err != nil {
		t.Fatalf("stdin write: %d, %v", n, err)
	}
	if err := a.Resize(80, 24); err != nil {
		t.Fatal(err)
	}
	if err := a.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	p := ResizePayload(80, 24)
	want := []frame{
		{FrameStdin, big[:MaxFramePayload]}, {FrameStdin, big[MaxFramePayload : 2*MaxFramePayload]},
		{FrameStdin, big[2*MaxFramePayload:]}, {FrameResize, string(p[:])}, {FrameStdinClosed, ""},
	}
	frames := <-got
	if len(frames) != len(want) {
		t.Fatalf("the server got %d frames, want %d", len(frames), len(want))
	}
	for i := range want {
		if frames[i] != want[i] {
			t.Errorf("frame %d: kind %d, %d bytes; want kind %d, %d bytes", i, frames[i].kind, len(frames[i].data), want[i].kind, len(want[i].data))
		}
	}
	if err := <-copied; err != nil {
		t.Fatalf("CopyOutput: %v, want nil at the end of the output", err)
	}
	if stdout.String() != "hello world" || stderr.String() != "oops" {
		t.Fatalf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	a.Close()
	leaks()
}

func TestAttachErrorAnswers(t *testing.T) {
	c := attachServer(t, func(req Request, conn net.Conn, _ *bufio.Reader) {
		switch req.ID {
		case "missing":
			answer(t, conn, Response{Error: "container missing", Code: CodeNotFound}, nil)
		case "stopped":
			answer(t, conn, Response{Error: "container stopped is not running", Code: CodeFailedPrecondition}, nil)
		case "stateless":
			answer(t, conn, Response{}, nil)
		}
	})
	ctx := context.Background()
	if _, err := c.Attach(ctx, "missing", AttachRequest{Stdout: true}); !errdefs.IsNotFound(err) {
		t.Errorf("unknown container: %v, want not-found", err)
	}
	if _, err := c.Attach(ctx, "stopped", AttachRequest{Stdout: true}); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "not running") {
		t.Errorf("stopped container: %v, want failed-precondition", err)
	}
	if _, err := c.Attach(ctx, "stateless", AttachRequest{}); err == nil {
		t.Error("an answer without a state was accepted")
	}
	if _, err := c.Attach(ctx, "silent", AttachRequest{}); !errdefs.IsUnavailable(err) {
		t.Errorf("a monitor that hung up: %v, want unavailable", err)
	}
	if _, err := NewClient(filepath.Join(t.TempDir(), SocketName)).Attach(ctx, "x", AttachRequest{}); !errdefs.IsUnavailable(err) {
		t.Errorf("no monitor: %v, want unavailable", err)
	}
}

func TestAttachBadOutput(t *testing.T) {
	header := func(kind FrameKind, n uint32) []byte {
		return binary.BigEndian.AppendUint32([]byte{byte(kind)}, n)
	}
	outputs := map[string][]byte{
		"oversize":  header(FrameStdout, MaxFramePayload+1),
		"truncated": append(header(FrameStderr, 100), "short"...),
		"kind":      AppendFrames(nil, FrameStdin, []byte("not from a monitor")),
	}
	c := attachServer(t, func(req Request, conn net.Conn, _ *bufio.Reader) {
		answer(t, conn, Response{State: &State{ID: req.ID}}, outputs[req.ID])
	})
	for name := range outputs {
		a, err := c.Attach(context.Background(), name, AttachRequest{Stdout: true, Stderr: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.CopyOutput(io.Discard, io.Discard); err == nil {
			t.Errorf("%s: CopyOutput returned nil", name)
		}
		a.Close()
	}
}

func TestAttachCloseAndContext(t *testing.T) {
	release := make(chan struct{})
	c := attachServer(t, func(req Request, conn net.Conn, r *bufio.Reader) {
		if req.ID == "slow" {
			<-release // answers only once the client gave up
			return
		}
		answer(t, conn, Response{State: &State{ID: req.ID}}, nil)
		_, _ = io.Copy(io.Discard, r) // until the client closes
	})
	leaks := leakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := c.Attach(ctx, "slow", AttachRequest{})
	cancel()
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("attach past its context: %v, want deadline exceeded", err)
	}

	// The context bounds the answer only.
	ctx, cancel = context.WithCancel(context.Background())
	a, err := c.Attach(ctx, "idle", AttachRequest{Stdin: true, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := a.Stdin().Write([]byte("still attached")); err != nil {
		t.Fatalf("stdin after the context ended: %v", err)
	}
	copied := make(chan error, 1)
	go func() { copied <- a.CopyOutput(nil, nil) }()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = a.Close() }()
	}
	wg.Wait()
	if err := <-copied; err == nil {
		t.Fatal("CopyOutput of a closed attachment returned nil")
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := a.Stdin().Write([]byte("x")); err == nil {
		t.Fatal("stdin write after Close succeeded")
	}
	if a.Resize(1, 1) == nil || a.CloseStdin() == nil {
		t.Fatal("frames sent after Close")
	}
	leaks()
}

// leakCheck returns a check that the goroutines and descriptors of the
// test process are back to what they were.
func leakCheck(t *testing.T) func() {
	t.Helper()
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	g0, fd0 := runtime.NumGoroutine(), fds()
	return func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > g0 || fds() > fd0 {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Fatalf("leak: %d goroutines (had %d), %d fds (had %d)\n%s",
					runtime.NumGoroutine(), g0, fds(), fd0, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
