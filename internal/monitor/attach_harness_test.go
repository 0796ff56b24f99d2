package monitor

// The in-process harness of attach_internal_test.go: a monitor serving a
// fake container whose stdio are pipes the test holds.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
)

// fakePod is an in-process monitor serving one running container "ctr".
type fakePod struct {
	t       *testing.T
	m       *monitor
	c       *container
	client  *monitorapi.Client
	stdin   *os.File // what the container reads
	stdout  *os.File // what it writes
	stderr  *os.File
	logPath string
	served  chan struct{}
}

func newFakePod(t *testing.T, stdinOnce bool) *fakePod {
	t.Helper()
	dir := t.TempDir()
	m := newMonitorState(options{dir: dir, pod: "fake", helper: "/bin/false"})
	m.idle = newIdler(nil) // never renews (that would exec the test)
	m.idle.delay = time.Hour
	ln, err := monitorapi.Listen(m.sockPath)
	if err != nil {
		t.Fatal(err)
	}
	m.ln = ln
	cio, child, err := setupIO(true, false)
	if err != nil {
		t.Fatal(err)
	}
	cio.stdinOnce = stdinOnce
	f := &fakePod{t: t, m: m, client: monitorapi.NewClient(m.sockPath), served: make(chan struct{}),
		stdin: child[0], stdout: child[1], stderr: child[2], logPath: filepath.Join(dir, "ctr.log")}
	log, err := newCRILog(f.logPath)
	if err != nil {
		t.Fatal(err)
	}
	f.c = &container{id: "ctr", pidfd: -1, io: cio, log: log, reaped: make(chan struct{}), done: make(chan struct{}),
		st: monitorapi.State{ID: "ctr", Status: monitorapi.StatusRunning, CreatedAt: time.Now()}}
	m.containers["ctr"] = f.c
	cio.startCopiers(log, "ctr")
	go func() { m.serve(); close(f.served) }()
	t.Cleanup(f.shutdown)
	return f
}

// exit does what the exit handler does once the container's processes
// are gone.
func (f *fakePod) exit() {
	_ = f.stdout.Close()
	_ = f.stderr.Close()
	_ = f.stdin.Close()
	f.c.io.drain(10 * time.Second)
	f.c.log.close()
	f.c.io.endAttach()
	f.m.mu.Lock()
	f.c.st.Status = monitorapi.StatusStopped
	f.m.mu.Unlock()
}

// shutdown deletes the container and stops the monitor, as a daemon does.
func (f *fakePod) shutdown() {
	select {
	case <-f.served:
		return
	default:
	}
	f.c.io.closeAll()
	f.c.log.close()
	for _, c := range []*os.File{f.stdin, f.stdout, f.stderr} {
		_ = c.Close()
	}
	f.m.mu.Lock()
	delete(f.m.containers, "ctr")
	f.m.mu.Unlock()
	f.m.stop("test")
	<-f.served
}

func (f *fakePod) attach(r monitorapi.AttachRequest) *monitorapi.Attachment {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := f.client.Attach(ctx, "ctr", r)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { a.Close() })
	return a
}

// waitAttachers waits until the monitor holds n attachments.
func (f *fakePod) waitAttachers(n int32) {
	f.t.Helper()
	waitUntil(f.t, func() bool { return f.m.attachers.Load() == n && f.c.io.att.count.Load() == n })
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("condition not reached\n%s", buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// leakCheck returns a check that the process's goroutines and descriptors
// are back to what they are now.
func leakCheck(t *testing.T) func() {
	fds := func() int {
		ents, _ := os.ReadDir("/proc/self/fd")
		return len(ents)
	}
	g0, fd0 := runtime.NumGoroutine(), fds()
	return func() {
		t.Helper()
		waitUntil(t, func() bool { return runtime.NumGoroutine() <= g0 && fds() <= fd0 })
	}
}

// collect copies an attachment's output until it ends.
type collect struct {
	stdout, stderr lockedBuffer
	err            chan error
}

func collectOutput(a *monitorapi.Attachment) *collect {
	c := &collect{err: make(chan error, 1)}
	go func() { c.err <- a.CopyOutput(&c.stdout, &c.stderr) }()
	return c
}

// rawAttach attaches over a bare connection; pre are bytes sent in the
// same write as the request.
func rawAttach(t *testing.T, f *fakePod, pre []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("unix", f.m.sockPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req, _ := json.Marshal(monitorapi.Request{Op: monitorapi.OpAttach, ID: "ctr",
		Attach: &monitorapi.AttachRequest{Stdin: true, Stdout: true}})
	if _, err := conn.Write(append(append(req, '\n'), pre...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadBytes('\n')
	var resp monitorapi.Response
	if err != nil || json.Unmarshal(line, &resp) != nil || resp.State == nil {
		t.Fatalf("answer %q, %v", line, err)
	}
	return conn, br
}

// lockedBuffer is a bytes.Buffer written and read concurrently.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}
