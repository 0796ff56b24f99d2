package conformance

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// execSync runs cmd in a container with the given timeout in seconds.
func (e *ctrEnv) execSync(t testing.TB, id string, timeout int64, cmd ...string) (*runtimeapi.ExecSyncResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return e.tg.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: timeout})
}

// mustExecSync runs cmd and fails the test unless it exits 0.
func (e *ctrEnv) mustExecSync(t testing.TB, id string, cmd ...string) string {
	t.Helper()
	resp, err := e.execSync(t, id, 0, cmd...)
	if err != nil {
		t.Fatalf("ExecSync(%q): %v", cmd, err)
	}
	if resp.ExitCode != 0 {
		t.Fatalf("ExecSync(%q) exited %d; stdout %q stderr %q", cmd, resp.ExitCode, resp.Stdout, resp.Stderr)
	}
	return string(resp.Stdout)
}

// stop stops a container at once.
func (e *ctrEnv) stop(t testing.TB, id string) {
	t.Helper()
	if _, err := e.tg.Runtime.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StopContainer(%s): %v", id, err)
	}
}

// sleeper runs a container that sleeps until stopped.
func (e *ctrEnv) sleeper(t testing.TB, name string, mutate ...func(*runtimeapi.ContainerConfig)) (podID, id string) {
	t.Helper()
	podID, podCfg := e.pod(t, name)
	cfg := e.ctrConfig(name, "sleep", "3600")
	for _, m := range mutate {
		m(cfg)
	}
	return podID, e.run(t, podID, podCfg, cfg)
}

func TestExecSyncOutputAndExitCode(t *testing.T) {
	e := newCtrEnv(t)
	_, id := e.sleeper(t, "exec-basic")
	resp, err := e.execSync(t, id, 10, "sh", "-c", "echo out; echo err >&2; exit 3")
	if err != nil {
		t.Fatalf("ExecSync: %v", err)
	}
	if string(resp.Stdout) != "out\n" || string(resp.Stderr) != "err\n" || resp.ExitCode != 3 {
		t.Fatalf("ExecSync = stdout %q stderr %q exit %d, want out, err, 3", resp.Stdout, resp.Stderr, resp.ExitCode)
	}
	// A signal is 128+n, as a shell reports it.
	resp, err = e.execSync(t, id, 10, "sh", "-c", "kill -TERM $$")
	if err != nil || resp.ExitCode != 143 {
		t.Fatalf("ExecSync(kill self) = %v, %v; want exit 143", resp, err)
	}
}

// The exec'd process has the container's user, groups, environment,
// working directory, capabilities, seccomp filter and namespaces.
func TestExecSyncRunsAsTheContainer(t *testing.T) {
	e := newCtrEnv(t)
	_, id := e.sleeper(t, "exec-identity", func(c *runtimeapi.ContainerConfig) {
		c.Envs = []*runtimeapi.KeyValue{{Key: "GREETING", Value: []byte("hello")}}
		c.WorkingDir = "/tmp"
		c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
			RunAsUser:          &runtimeapi.Int64Value{Value: 1234},
			RunAsGroup:         &runtimeapi.Int64Value{Value: 2345},
			SupplementalGroups: []int64{3456},
			Capabilities:       &runtimeapi.Capability{DropCapabilities: []string{"CHOWN"}},
			Seccomp:            &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
			NamespaceOptions:   &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}
	})
	got := e.mustExecSync(t, id, "sh", "-c", "id -u; id -g; id -G; echo $GREETING; pwd")
	if want := "1234\n2345\n2345 3456\nhello\n/tmp\n"; got != want {
		t.Fatalf("exec identity = %q, want %q", got, want)
	}
	self := e.mustExecSync(t, id, "cat", "/proc/self/status")
	main := e.mustExecSync(t, id, "cat", "/proc/1/status")
	for _, field := range []string{"CapEff", "CapBnd", "CapPrm", "NoNewPrivs", "Seccomp"} {
		if a, b := statusField(self, field), statusField(main, field); a != b || a == "" {
			t.Errorf("%s: exec has %q, the container's main process %q", field, a, b)
		}
	}
	if statusField(self, "Seccomp") != "2" {
		t.Errorf("exec's seccomp mode = %q, want 2 (filter)", statusField(self, "Seccomp"))
	}
	// PID namespace: the sleep is pid 1 as the exec sees it.
	if comm := strings.TrimSpace(e.mustExecSync(t, id, "cat", "/proc/1/comm")); comm != "sleep" {
		t.Errorf("pid 1 in the exec's namespace is %q, want sleep", comm)
	}
}

func TestExecSyncTimeoutKillsTheProcess(t *testing.T) {
	e := newCtrEnv(t)
	_, id := e.sleeper(t, "exec-timeout", func(c *runtimeapi.ContainerConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}
	})
	before, _ := daemonHolds(t, e)
	_, err := e.execSync(t, id, 1, "sleep", "577")
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("ExecSync past its timeout = %v, want DeadlineExceeded saying it timed out", err)
	}
	if ps := e.mustExecSync(t, id, "ps", "-o", "args"); strings.Contains(ps, "sleep 577") {
		t.Fatalf("the timed out process still runs:\n%s", ps)
	}
	expectNoLeak(t, e, before)
}

func TestExecSyncErrors(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "exec-errors")
	created := e.create(t, podID, podCfg, e.ctrConfig("created", "sleep", "3600"))
	for name, c := range map[string]struct {
		req  *runtimeapi.ExecSyncRequest
		want codes.Code
	}{
		"no container id":  {&runtimeapi.ExecSyncRequest{Cmd: []string{"true"}}, codes.InvalidArgument},
		"no command":       {&runtimeapi.ExecSyncRequest{ContainerId: created}, codes.InvalidArgument},
		"negative timeout": {&runtimeapi.ExecSyncRequest{ContainerId: created, Cmd: []string{"true"}, Timeout: -1}, codes.InvalidArgument},
		"missing":          {&runtimeapi.ExecSyncRequest{ContainerId: "f00dfeed", Cmd: []string{"true"}}, codes.NotFound},
		"not started":      {&runtimeapi.ExecSyncRequest{ContainerId: created, Cmd: []string{"true"}}, codes.FailedPrecondition},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.tg.Runtime.ExecSync(context.Background(), c.req)
			if status.Code(err) != c.want {
				t.Fatalf("ExecSync = %v, want %v", err, c.want)
			}
		})
	}
	e.start(t, created)
	_, err := e.execSync(t, created, 10, "/no/such/binary")
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "/no/such/binary") {
		t.Fatalf("ExecSync of a missing binary = %v, want InvalidArgument naming it", err)
	}
	e.stop(t, created)
	if _, err := e.execSync(t, created, 10, "true"); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("ExecSync in an exited container = %v, want FailedPrecondition", err)
	}
}

// Output past the cap is dropped and the response says so; a background
// process holding the output open does not hold the response.
func TestExecSyncOutputLimits(t *testing.T) {
	e := newCtrEnv(t)
	_, id := e.sleeper(t, "exec-limits")
	resp, err := e.execSync(t, id, 60, "head", "-c", "9000000", "/dev/zero")
	if err != nil {
		t.Fatalf("ExecSync: %v", err)
	}
	if len(resp.Stdout) != 7<<20 || !strings.Contains(string(resp.Stderr), "stdout truncated") {
		t.Fatalf("9000000 bytes of output gave %d bytes and stderr %q, want %d and a truncation note", len(resp.Stdout), resp.Stderr, 7<<20)
	}
	resp, err = e.execSync(t, id, 60, "sh", "-c", "sleep 600 & echo started")
	if err != nil || string(resp.Stdout) != "started\n" || resp.ExitCode != 0 {
		t.Fatalf("ExecSync with a background process = %v, %v", resp, err)
	}
}

// A container stopped during an exec ends the exec.
func TestExecSyncEndsWhenTheContainerStops(t *testing.T) {
	e := newCtrEnv(t)
	_, id := e.sleeper(t, "exec-stop")
	var wg sync.WaitGroup
	var resp *runtimeapi.ExecSyncResponse
	var err error
	wg.Go(func() { resp, err = e.execSync(t, id, 0, "sleep", "600") })
	waitFor(t, func() bool {
		return strings.Contains(e.mustExecSync(t, id, "ps", "-o", "args"), "sleep 600")
	})
	before, _ := daemonHolds(t, e)
	e.stop(t, id)
	wg.Wait()
	expectNoLeak(t, e, before)
	if err == nil && resp.ExitCode == 0 {
		t.Fatalf("an exec whose container was stopped ended with exit 0")
	}
}
