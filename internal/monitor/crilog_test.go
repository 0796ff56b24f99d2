package monitor

// Unit tests of the CRI log writer (no containers, no root).

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// wantLines is the model: what containerd's CRI logger writes for data
// (without timestamps).
func wantLines(stream, data string) []string {
	var out []string
	chunks := func(line string, lastTag string) {
		for len(line) > maxLineLen {
			out = append(out, stream+" P "+line[:maxLineLen])
			line = line[maxLineLen:]
		}
		out = append(out, stream+" "+lastTag+" "+line)
	}
	for {
		i := strings.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		chunks(strings.TrimSuffix(data[:i], "\r"), "F")
		data = data[i+1:]
	}
	if data != "" {
		chunks(data, "P")
	}
	return out
}

// gotLines strips and checks the timestamps of written lines.
func gotLines(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		ts, rest, ok := strings.Cut(string(l), " ")
		if !ok || !strings.HasSuffix(rest, "\n") {
			t.Fatalf("malformed line %q", l)
		}
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, strings.TrimSuffix(rest, "\n"))
	}
	return out
}

// randReader returns data in reads of random sizes.
type randReader struct {
	data []byte
	rnd  *rand.Rand
}

func (r *randReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), 1+r.rnd.IntN(3*maxLineLen))
	n = copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func TestLineWriter(t *testing.T) {
	x := func(n int) string { return strings.Repeat("x", n) }
	cases := map[string]string{
		"empty":              "",
		"one line":           "hello\n",
		"empty lines":        "\n\n\n",
		"crlf":               "a\r\nb\r\n\r\n",
		"lone cr":            "a\rb\n\r",
		"no final newline":   "a\nb",
		"exactly max":        x(maxLineLen) + "\n",
		"max plus one":       x(maxLineLen+1) + "\n",
		"max with crlf":      x(maxLineLen) + "\r\n",
		"max plus one crlf":  x(maxLineLen+1) + "\r\n",
		"max then cr":        x(maxLineLen) + "\ry\n",
		"twice max":          x(2*maxLineLen) + "\n",
		"long unterminated":  x(2*maxLineLen + 5),
		"max unterminated":   x(maxLineLen),
		"40000 then more":    x(40000) + "\nend\n",
		"mixed":              "a\n" + x(5000) + "\n" + x(17000) + "\r\nz",
		"initial buffer":     x(initialContent) + "\n" + x(initialContent-1) + "\n",
		"initial plus cr":    x(initialContent-1) + "\r\n",
		"cr at end of input": "abc\r",
	}
	readers := map[string]func([]byte) io.Reader{
		"whole":    func(b []byte) io.Reader { return bytes.NewReader(b) },
		"one byte": func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"half":     func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
		"random":   func(b []byte) io.Reader { return &randReader{data: b, rnd: rand.New(rand.NewPCG(1, 2))} },
	}
	for name, data := range cases {
		for rname, mk := range readers {
			t.Run(name+"/"+rname, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "log")
				l, err := newCRILog(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := newLineWriter(l, "stdout").copyFrom(mk([]byte(data))); err != nil {
					t.Fatal(err)
				}
				l.close()
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				got, want := gotLines(t, b), wantLines("stdout", data)
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Fatalf("got %d lines %.200q\nwant %d lines %.200q", len(got), got, len(want), want)
				}
			})
		}
	}
}

// TestLineWriterAllocs: formatting a line allocates nothing.
func TestLineWriterAllocs(t *testing.T) {
	l, err := newCRILog(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	w := newLineWriter(l, "stderr")
	data := []byte(strings.Repeat("some output line\n", 50))
	r := bytes.NewReader(data)
	_ = w.copyFrom(r) // allocates the buffer once
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(data)
		_ = w.copyFrom(r)
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per 50 lines", allocs)
	}
}

// TestReopenConcurrent: two streams write while the log is rotated again
// and again; every line lands whole in exactly one file, in order.
func TestReopenConcurrent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	l, err := newCRILog(path)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	var wg sync.WaitGroup
	for _, stream := range []string{"stdout", "stderr"} {
		pr, pw := io.Pipe()
		wg.Add(2)
		go func() {
			defer wg.Done()
			_ = newLineWriter(l, stream).copyFrom(pr)
		}()
		go func() {
			defer wg.Done()
			for i := range n {
				fmt.Fprintf(pw, "%s %d %s\n", stream, i, strings.Repeat("y", i%300))
			}
			pw.Close()
		}()
	}
	done := make(chan struct{})
	var files []string
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-time.After(time.Millisecond):
			}
			to := path + "." + strconv.Itoa(i)
			if err := os.Rename(path, to); err != nil {
				t.Error(err)
				return
			}
			files = append(files, to)
			if err := l.reopen(); err != nil {
				t.Error(err)
				return
			}
			if i >= 20 {
				return
			}
		}
	}()
	wg.Wait()
	<-done
	l.close()
	var all []byte
	for _, f := range append(files, path) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	next := map[string]int{}
	for _, line := range gotLines(t, all) {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != f[2] || f[1] != "F" {
			t.Fatalf("bad line %q", line)
		}
		i, _ := strconv.Atoi(f[3])
		if i != next[f[0]] {
			t.Fatalf("%s: line %d after %d", f[0], i, next[f[0]]-1)
		}
		next[f[0]]++
	}
	if next["stdout"] != n || next["stderr"] != n {
		t.Fatalf("lines: %v, want %d each", next, n)
	}
}

func TestReopenFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "log")
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := newCRILog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	// The directory goes away: the new file cannot be created.
	if err := os.Rename(filepath.Dir(path), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := l.reopen(); err == nil {
		t.Fatal("reopen into a missing directory succeeded")
	}
	l.writeLine([]byte("still here\n"))
	b, _ := os.ReadFile(filepath.Join(dir, "moved", "log"))
	if string(b) != "still here\n" {
		t.Fatalf("old file holds %q", b)
	}
}
