package conformance

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	utilexec "k8s.io/utils/exec"

	"github.com/berth-runtime/berth/conformance/framework"
)

// kubectl exec without a terminal: both outputs, and the exit code.
func TestExecStreamOutputAndExitCode(t *testing.T) {
	e := newCtrEnv(t)
	_, id := e.sleeper(t, "exec-stream", func(c *runtimeapi.ContainerConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: 1234}}
	})
	for name, client := range executors {
		t.Run(name, func(t *testing.T) {
			before, _ := daemonHolds(t, e)
			u := e.execURL(t, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "id -u; echo err >&2; exit 7"}, Stdout: true, Stderr: true})
			var stdout, stderr bytes.Buffer
			err := client(t, u).StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
			var exit utilexec.ExitError
			if !errors.As(err, &exit) || exit.ExitStatus() != 7 {
				t.Fatalf("exec = %v, want exit status 7", err)
			}
			if stdout.String() != "1234\n" || stderr.String() != "err\n" {
				t.Fatalf("stdout %q stderr %q, want the container's uid 1234 and err", stdout.String(), stderr.String())
			}
			// The URL was single-use.
			if err := client(t, u).StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
				t.Fatal("a second use of an exec URL succeeded")
			}
			expectNoLeak(t, e, before)
		})
	}
}

// Stdin reaches the process and its end closes the process's stdin.
func TestExecStreamStdin(t *testing.T) {
	e := newCtrEnv(t)
	_, id := e.sleeper(t, "exec-stdin")
	u := e.execURL(t, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"cat"}, Stdin: true, Stdout: true})
	var stdout bytes.Buffer
	in := strings.Repeat("a line of input\n", 10000)
	err := executors["spdy"](t, u).StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdin: strings.NewReader(in), Stdout: &stdout})
	if err != nil {
		t.Fatalf("exec cat: %v", err)
	}
	if stdout.String() != in {
		t.Fatalf("cat echoed %d bytes, want the %d sent", stdout.Len(), len(in))
	}
}

// kubectl exec -it: a terminal of the client's size, resized live, and an
// interactive shell.
func TestExecStreamTTY(t *testing.T) {
	e := newCtrEnv(t)
	_, id := e.sleeper(t, "exec-tty")
	for name, client := range executors {
		t.Run(name, func(t *testing.T) {
			// The shell waits until the resize arrived.
			script := `until [ "$(stty size)" = "40 100" ]; do sleep 0.05; done; echo resized; tty`
			u := e.execURL(t, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", script}, Tty: true, Stdout: true})
			done := make(chan struct{})
			defer close(done)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out bytes.Buffer
			err := client(t, u).StreamWithContext(ctx, remotecommand.StreamOptions{
				Stdout: &out, Tty: true,
				TerminalSizeQueue: &fixedSize{size: remotecommand.TerminalSize{Width: 100, Height: 40}, done: done},
			})
			if err != nil {
				t.Fatalf("exec -t: %v", err)
			}
			if got := out.String(); !strings.Contains(got, "resized\r\n/dev/pts/") {
				t.Fatalf("terminal output %q, want resized and a /dev/pts terminal", got)
			}
		})
	}
	// Interactive: what is typed runs, and exit ends the session.
	u := e.execURL(t, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh"}, Tty: true, Stdin: true, Stdout: true})
	inR, inW := io.Pipe()
	out := newSyncBuffer()
	errc := make(chan error, 1)
	go func() {
		errc <- executors["spdy"](t, u).StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdin: inR, Stdout: out, Tty: true})
	}()
	if _, err := io.WriteString(inW, "echo $((6*7))\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(out.String(), "42\r\n") })
	if _, err := io.WriteString(inW, "exit 3\n"); err != nil {
		t.Fatal(err)
	}
	var exit utilexec.ExitError
	if err := <-errc; !errors.As(err, &exit) || exit.ExitStatus() != 3 {
		t.Fatalf("interactive shell ended with %v, want exit status 3", err)
	}
	_ = inW.Close()
}

// A client that goes away ends the exec: the process is killed and the
// daemon keeps no descriptor or child of it.
func TestExecStreamClientGone(t *testing.T) {
	e := newCtrEnv(t)
	_, id := e.sleeper(t, "exec-gone", func(c *runtimeapi.ContainerConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}
	})
	before, _ := daemonHolds(t, e)
	// The process prints every 10 ms, so a client that is gone is noticed.
	u := e.execURL(t, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "while true; do echo tick; sleep 0.01; done"}, Stdout: true})
	ctx, cancel := context.WithCancel(context.Background())
	out := newSyncBuffer()
	errc := make(chan error, 1)
	go func() {
		errc <- executors["spdy"](t, u).StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: out})
	}()
	waitFor(t, func() bool { return strings.Contains(out.String(), "tick") })
	cancel()
	<-errc
	waitFor(t, func() bool {
		return !strings.Contains(e.mustExecSync(t, id, "ps", "-o", "args"), "while true")
	})
	expectNoLeak(t, e, before)
}

func TestExecStreamErrors(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "exec-stream-errors")
	created := e.create(t, podID, podCfg, e.ctrConfig("created", "sleep", "3600"))
	for name, c := range map[string]struct {
		req  *runtimeapi.ExecRequest
		want codes.Code
	}{
		"no container id": {&runtimeapi.ExecRequest{Cmd: []string{"true"}, Stdout: true}, codes.InvalidArgument},
		"no command":      {&runtimeapi.ExecRequest{ContainerId: created, Stdout: true}, codes.InvalidArgument},
		"missing":         {&runtimeapi.ExecRequest{ContainerId: "f00dfeed", Cmd: []string{"true"}, Stdout: true}, codes.NotFound},
		"not running":     {&runtimeapi.ExecRequest{ContainerId: created, Cmd: []string{"true"}, Stdout: true}, codes.FailedPrecondition},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := e.tg.Runtime.Exec(context.Background(), c.req); status.Code(err) != c.want {
				t.Fatalf("Exec = %v, want %v", err, c.want)
			}
		})
	}
	e.start(t, created)
	for name, req := range map[string]*runtimeapi.ExecRequest{
		"tty and stderr": {ContainerId: created, Cmd: []string{"true"}, Tty: true, Stdout: true, Stderr: true},
		"no stream":      {ContainerId: created, Cmd: []string{"true"}},
	} {
		if _, err := e.tg.Runtime.Exec(context.Background(), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Exec(%s) = %v, want InvalidArgument", name, err)
		}
	}
}

// With enable_tls the URLs are https, served with a self-signed
// certificate (kubelet does not verify it).
func TestExecStreamTLS(t *testing.T) {
	if framework.NewTargetIfExternal(t) != nil {
		t.Skip("needs a daemon of its own configuration")
	}
	d := framework.StartDaemon(t, framework.DaemonOptions{Network: true, ConfigTOML: "version = 1\n[streaming]\nenable_tls = true\n"})
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Images: d.Images, Daemon: d}
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	e := &ctrEnv{tg: tg, reg: reg, logs: t.TempDir()}
	e.image = e.pushAndPull(t, "conformance/busybox:tls", framework.ImageSpec{})
	_, id := e.sleeper(t, "exec-tls")
	u := e.execURL(t, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"echo", "over-tls"}, Stdout: true})
	if !strings.HasPrefix(u, "https://") {
		t.Fatalf("exec URL %q is not https", u)
	}
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := remotecommand.NewSPDYExecutor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{Insecure: true}}, http.MethodPost, parsed)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := ex.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &out}); err != nil || out.String() != "over-tls\n" {
		t.Fatalf("exec over TLS = %q, %v", out.String(), err)
	}
}
