package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// MainTB is the testing.TB of TestMain, which has none: the cluster lives
// longer than any one test, yet the conformance framework's helpers (the
// berth daemon, the registry, image builds) take a testing.TB for their
// failures and their cleanup. Fatal and Skip end the setup with a panic that
// RunSetup turns into an error; Cleanup functions run, last first, in
// RunCleanups.
type MainTB struct {
	testing.TB // nil: a method not overridden here is a bug (nil panic)

	name string
	dir  string // parent of TempDir's directories
	out  io.Writer

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	tmpSeq   int
	ctx      context.Context
	cancel   context.CancelFunc
}

// NewMainTB returns a MainTB whose temporary directories live under dir and
// whose log goes to out.
func NewMainTB(name, dir string, out io.Writer) *MainTB {
	ctx, cancel := context.WithCancel(context.Background())
	return &MainTB{name: name, dir: dir, out: out, ctx: ctx, cancel: cancel}
}

// mainTBAbort is the panic value of Fatal and Skip.
type mainTBAbort struct{ msg string }

// RunSetup calls f and reports a Fatal or Skip inside it as an error.
func (m *MainTB) RunSetup(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			a, ok := r.(mainTBAbort)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("%s", a.msg)
		}
	}()
	f()
	return nil
}

// RunCleanups runs the registered cleanups, last registered first, as the
// testing package does; a Fatal in one does not stop the others.
func (m *MainTB) RunCleanups() {
	m.cancel()
	for {
		m.mu.Lock()
		n := len(m.cleanups)
		if n == 0 {
			m.mu.Unlock()
			return
		}
		f := m.cleanups[n-1]
		m.cleanups = m.cleanups[:n-1]
		m.mu.Unlock()
		_ = m.RunSetup(f)
	}
}

func (m *MainTB) Helper()                  {}
func (m *MainTB) Name() string             { return m.name }
func (m *MainTB) Context() context.Context { return m.ctx }

func (m *MainTB) Cleanup(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cleanups = append(m.cleanups, f)
}

// TempDir returns a new directory under the cluster's directory; it goes
// when that does.
func (m *MainTB) TempDir() string {
	m.mu.Lock()
	m.tmpSeq++
	dir := filepath.Join(m.dir, "tmp"+strconv.Itoa(m.tmpSeq))
	m.mu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		m.Fatal(err)
	}
	return dir
}

func (m *MainTB) Log(args ...any)                 { fmt.Fprintln(m.out, args...) }
func (m *MainTB) Logf(format string, args ...any) { fmt.Fprintf(m.out, format+"\n", args...) }

func (m *MainTB) Fail() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failed = true
}

func (m *MainTB) Failed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failed
}

func (m *MainTB) Error(args ...any)                 { m.Log(args...); m.Fail() }
func (m *MainTB) Errorf(format string, args ...any) { m.Logf(format, args...); m.Fail() }

func (m *MainTB) FailNow() { m.Fail(); panic(mainTBAbort{msg: "FailNow"}) }

func (m *MainTB) Fatal(args ...any) {
	m.Fail()
	panic(mainTBAbort{msg: fmt.Sprint(args...)})
}

func (m *MainTB) Fatalf(format string, args ...any) {
	m.Fail()
	panic(mainTBAbort{msg: fmt.Sprintf(format, args...)})
}

// Skip during the cluster's setup means something it needs is missing:
// that is a failure of the run that asked for the suite.
func (m *MainTB) Skip(args ...any) { m.Fatal(append([]any{"skipped: "}, args...)...) }
func (m *MainTB) Skipf(format string, args ...any) {
	m.Fatalf("skipped: "+format, args...)
}
func (m *MainTB) SkipNow()      { m.Fatal("skipped") }
func (m *MainTB) Skipped() bool { return false }

// Setenv changes the environment for the rest of the process (nothing runs
// in parallel during the setup).
func (m *MainTB) Setenv(key, value string) {
	old, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		m.Fatal(err)
	}
	m.Cleanup(func() {
		if had {
			os.Setenv(key, old)
		} else {
			os.Unsetenv(key)
		}
	})
}
