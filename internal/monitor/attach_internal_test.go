package monitor

// Attach served in-process, with a fake container whose stdio are pipes
// the test holds: the monitor's own goroutines and descriptors can be
// counted here (the integration tests in attach_test.go run the monitor as
// a separate process).

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/containerd/errdefs"
)

func TestAttachFanOutDetachAndEnd(t *testing.T) {
	base := leakCheck(t)
	f := newFakePod(t, false)
	idle := leakCheck(t)
	both := monitorapi.AttachRequest{Stdout: true, Stderr: true}
	a1, a2 := f.attach(both), f.attach(both)
	out := f.attach(monitorapi.AttachRequest{Stdout: true})
	c1, c2, c3 := collectOutput(a1), collectOutput(a2), collectOutput(out)
	f.waitAttachers(3)
	waitUntil(t, func() bool { return f.m.busy.Load() == 0 }) // the requests were answered
	if err := f.m.renew(); !errors.Is(err, errNotQuiet) || !strings.Contains(err.Error(), "attached") {
		t.Fatalf("renew while attached: %v", err)
	}
	_, _ = f.stdout.WriteString("out 1\n")
	_, _ = f.stderr.WriteString("err 1\n")
	waitUntil(t, func() bool { return c2.stdout.String() == "out 1\n" && c2.stderr.String() == "err 1\n" })

	// A detach ends only that attachment.
	a1.Close()
	if err := <-c1.err; err == nil {
		t.Error("CopyOutput of a closed attachment returned nil")
	}
	f.waitAttachers(2)
	_, _ = f.stdout.WriteString("out 2 without newline")
	_, _ = f.stderr.WriteString("err 2\n")
	f.exit()
	for _, c := range []*collect{c2, c3} {
		if err := <-c.err; err != nil {
			t.Fatalf("CopyOutput at the end of the output: %v", err)
		}
	}
	if got := c2.stdout.String(); got != "out 1\nout 2 without newline" {
		t.Errorf("stdout %q", got)
	}
	if got := c2.stderr.String(); got != "err 1\nerr 2\n" {
		t.Errorf("stderr %q", got)
	}
	if c3.stdout.String() != c2.stdout.String() || c3.stderr.String() != "" {
		t.Errorf("stdout-only attacher got %q and %q", c3.stdout.String(), c3.stderr.String())
	}
	log, _ := os.ReadFile(f.logPath)
	for _, want := range []string{" stdout F out 1\n", " stderr F err 1\n", " stderr F err 2\n", " stdout P out 2 without newline\n"} {
		if !bytes.Contains(log, []byte(want)) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// The output ended: the clients close, the monitor lets go.
	a2.Close()
	out.Close()
	f.waitAttachers(0)
	if _, err := f.client.Attach(context.Background(), "ctr", both); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("attach to a stopped container: %v", err)
	}
	if _, err := f.client.Attach(context.Background(), "nope", both); !errdefs.IsNotFound(err) {
		t.Errorf("attach to an unknown container: %v", err)
	}
	idle()
	f.shutdown()
	base()
}

func TestAttachStdin(t *testing.T) {
	for _, once := range []bool{false, true} {
		f := newFakePod(t, once)
		idle := leakCheck(t)
		a := f.attach(monitorapi.AttachRequest{Stdin: true})
		read := func(want string) {
			t.Helper()
			buf := make([]byte, len(want))
			if _, err := io.ReadFull(f.stdin, buf); err != nil || string(buf) != want {
				t.Fatalf("container read %q, %v; want %q", buf, err, want)
			}
		}
		_, _ = a.Stdin().Write([]byte("hello\n"))
		read("hello\n")
		// Discarded: the attach did not ask for stdin.
		outOnly := f.attach(monitorapi.AttachRequest{Stdout: true})
		_, _ = outOnly.Stdin().Write([]byte("ignored"))
		if err := a.CloseStdin(); err != nil {
			t.Fatal(err)
		}
		// Discarded: this attacher closed its stdin.
		_, _ = a.Stdin().Write([]byte("after close"))
		if once {
			waitUntil(t, func() bool {
				f.c.io.att.mu.Lock()
				defer f.c.io.att.mu.Unlock()
				return f.c.io.stdin == nil
			})
		}
		second := f.attach(monitorapi.AttachRequest{Stdin: true})
		_, _ = second.Stdin().Write([]byte("second\n"))
		if !once {
			read("second\n")
		}
		for _, at := range []*monitorapi.Attachment{a, second, outOnly} {
			at.Close()
		}
		f.waitAttachers(0)
		f.c.io.closeAll() // the container's stdin, if still open
		// Nothing else reached the container.
		if rest, err := io.ReadAll(f.stdin); err != nil || len(rest) != 0 {
			t.Fatalf("container read %q, %v; want EOF", rest, err)
		}
		f.shutdown()
		idle()
	}
}

func TestAttachStdinOnceDisconnect(t *testing.T) {
	f := newFakePod(t, true)
	a := f.attach(monitorapi.AttachRequest{Stdin: true, Stdout: true})
	_, _ = a.Stdin().Write([]byte("x"))
	a.Close() // no FrameStdinClosed
	buf, err := io.ReadAll(f.stdin)
	if err != nil || string(buf) != "x" {
		t.Fatalf("container read %q, %v; want x then EOF", buf, err)
	}
}

// A container that does not read its stdin blocks only its writer's
// goroutine, until the attacher goes or the container exits.
func TestAttachBlockedStdin(t *testing.T) {
	for _, how := range []string{"detach", "exit"} {
		f := newFakePod(t, false)
		idle := leakCheck(t)
		a := f.attach(monitorapi.AttachRequest{Stdin: true, Stdout: true})
		out := collectOutput(a)
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			_, _ = a.Stdin().Write(make([]byte, 1<<20)) // beyond the pipe's buffer
		}()
		waitUntil(t, func() bool {
			f.c.io.att.mu.Lock()
			defer f.c.io.att.mu.Unlock()
			return f.c.io.att.writing != nil
		})
		// Output and other attachers go on meanwhile.
		other := f.attach(monitorapi.AttachRequest{Stdout: true})
		oc := collectOutput(other)
		_, _ = f.stdout.WriteString("still flowing\n")
		waitUntil(t, func() bool {
			return oc.stdout.String() == "still flowing\n" && out.stdout.String() == "still flowing\n"
		})
		// Another stdin writer waits for the blocked one, and still
		// notices its client going.
		waiting := f.attach(monitorapi.AttachRequest{Stdin: true})
		f.waitAttachers(3)
		_, _ = waiting.Stdin().Write([]byte("queued"))
		waiting.Close()
		f.waitAttachers(2)
		switch how {
		case "detach":
			a.Close()
			<-wrote
			f.waitAttachers(1)
			other.Close()
		case "exit":
			f.exit()
			for _, c := range []*collect{out, oc} {
				if err := <-c.err; err != nil {
					t.Fatalf("CopyOutput: %v", err)
				}
			}
			a.Close()
			other.Close()
			<-wrote
		}
		f.waitAttachers(0)
		idle()
		f.shutdown()
	}
}

func TestAttachSlowAttacherDropped(t *testing.T) {
	f := newFakePod(t, false)
	idle := leakCheck(t)
	slow := f.attach(monitorapi.AttachRequest{Stdout: true}) // never read
	fa := f.attach(monitorapi.AttachRequest{Stdout: true})
	fast := collectOutput(fa)
	f.waitAttachers(2)
	// Paced on the reading attacher (a producer faster than any reader
	// would have it dropped too), 4 times what the monitor queues.
	line := strings.Repeat("y", 999) + "\n"
	const lines, chunk = 4 * monitorapi.MaxAttachBacklog / 1000, 256
	for i := 0; i < lines; i += chunk {
		_, _ = f.stdout.WriteString(strings.Repeat(line, min(chunk, lines-i)))
		waitUntil(t, func() bool { return fast.stdout.Len() == min(i+chunk, lines)*len(line) })
	}
	f.waitAttachers(1) // the slow one was dropped
	// The log has every line.
	waitUntil(t, func() bool {
		b, _ := os.ReadFile(f.logPath)
		return bytes.Count(b, []byte(" stdout F y")) == lines
	})
	// The dropped attachment ends (what was sent, then the end).
	if err := slow.CopyOutput(io.Discard, io.Discard); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Logf("dropped attachment: %v", err)
	}
	slow.Close()
	f.exit()
	if err := <-fast.err; err != nil {
		t.Fatal(err)
	}
	fa.Close()
	f.waitAttachers(0)
	idle()
}

// A monitor that deletes the container and stops while a client is
// attached and does not read lets go of everything.
func TestAttachShutdown(t *testing.T) {
	base := leakCheck(t)
	f := newFakePod(t, true)
	a := f.attach(monitorapi.AttachRequest{Stdin: true, Stdout: true, Stderr: true})
	f.waitAttachers(1)
	_, _ = f.stdout.WriteString("unread\n")
	_, _ = a.Stdin().Write([]byte("x"))
	if _, err := f.client.Attach(context.Background(), "", monitorapi.AttachRequest{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("attach without an id: %v", err)
	}
	f.shutdown()
	f.waitAttachers(0)
	_ = a.CopyOutput(io.Discard, io.Discard) // returns: the connection is gone
	a.Close()
	base()
}

func TestAttachProtocol(t *testing.T) {
	f := newFakePod(t, false)
	idle := leakCheck(t)
	// Frames sent with the request, before the answer, are not lost.
	conn, _ := rawAttach(t, f, monitorapi.AppendFrames(nil, monitorapi.FrameStdin, []byte("early")))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(f.stdin, buf); err != nil || string(buf) != "early" {
		t.Fatalf("container read %q, %v", buf, err)
	}
	conn.Close()
	f.waitAttachers(0)

	// Each of these ends the connection.
	oversize := []byte{byte(monitorapi.FrameStdin), 0, 0, 0x80, 1}
	for name, frame := range map[string][]byte{
		"oversize":    oversize,
		"output kind": monitorapi.AppendFrames(nil, monitorapi.FrameStdout, []byte("bogus")),
		"bad resize":  monitorapi.AppendFrames(nil, monitorapi.FrameResize, []byte{1, 2, 3}),
		"unknown":     monitorapi.AppendFrames(nil, 9, nil),
	} {
		conn, br := rawAttach(t, f, nil)
		f.waitAttachers(1)
		if _, err := conn.Write(frame); err != nil {
			t.Fatal(err)
		}
		if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
			t.Errorf("%s: got %q, %v; want the connection closed", name, rest, err)
		}
		conn.Close()
		f.waitAttachers(0)
	}
	idle()
}
