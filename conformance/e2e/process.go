package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Process is a cluster component run by the suite, in a process group of
// its own, its output in a log file.
type Process struct {
	Name    string
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit status, valid once done is closed
}

// StartProcess starts bin with args, output to <logDir>/<name>.log, and
// registers its Stop with tb.Cleanup.
func StartProcess(tb testing.TB, name, logDir, bin string, args ...string) *Process {
	tb.Helper()
	p := &Process{Name: name, LogPath: filepath.Join(logDir, name+".log"), done: make(chan struct{})}
	logFile, err := os.Create(p.LogPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "+ %s %s\n", bin, strings.Join(args, " "))
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	// A group of its own: Stop reaches whatever it forked, and a Ctrl-C on
	// the test run does not reach it before the cleanup does.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(p.Stop)
	return p
}

// Pid is the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the process group, and SIGKILL if it has not ended
// 20 seconds later. Only this process's group is signalled, by its ID.
func (p *Process) Stop() {
	if done, _ := p.Exited(); done {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Whatever the leader left in its group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string { return tailFile(p.LogPath, n) }

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// FreePort returns a TCP port of 127.0.0.1 that nothing listens on now.
// Another process may take it before the component does; on this test
// machine that is rare enough.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// MustFreePort is FreePort failing tb.
func MustFreePort(tb testing.TB) int {
	tb.Helper()
	port, err := FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

// errCondition is how Poll reports a condition that ended the wait.
var errCondition = errors.New("condition failed")

// Poll calls cond every interval until it returns true, returns an error,
// ctx ends or timeout passes; the error then says what the condition last
// reported (its message), so a timeout explains itself.
func Poll(ctx context.Context, timeout, interval time.Duration, cond func() (done bool, msg string, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "never checked"
	for {
		done, msg, err := cond()
		if err != nil {
			return fmt.Errorf("%w: %v", errCondition, err)
		}
		if done {
			return nil
		}
		if msg != "" {
			last = msg
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %v: %s", timeout, last)
		case <-time.After(interval):
		}
	}
}
