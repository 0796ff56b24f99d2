package monitor_test

// Container lifecycle through the monitor: create, start, exit codes, OOM,
// exit.json, kill, delete, shutdown, update.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCreateStartEcho(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	ctx := testCtx(t)

	h, err := p.client.Hello(ctx)
	if err != nil || h.Pid != p.cmd.Process.Pid || h.Version != monitorapi.Version {
		t.Fatalf("hello: %+v, %v", h, err)
	}
	st, err := p.client.Create(ctx, "echo", p.bundle("echo", []string{"echo", "hello"}, ctrOpts{}))
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != monitorapi.StatusCreated || st.Pid <= 0 || st.CreatedAt.IsZero() {
		t.Fatalf("after create: %+v", st)
	}
	if _, err := p.client.Create(ctx, "echo", p.bundle("echo", []string{"true"}, ctrOpts{})); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second create: %v, want already-exists", err)
	}
	st, err = p.client.Start(ctx, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != monitorapi.StatusRunning || st.StartedAt.IsZero() {
		t.Fatalf("after start: %+v", st)
	}
	st = p.waitStatus("echo", monitorapi.StatusStopped)
	if st.Exit == nil || st.Exit.Code != 0 || st.Exit.Signal != 0 || st.Exit.OOMKilled || st.Exit.FinishedAt.Before(st.StartedAt) {
		t.Fatalf("exit: %+v", st.Exit)
	}
	if _, err := p.client.Start(ctx, "echo"); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("start of a stopped container: %v, want failed-precondition", err)
	}
	lines := readLog(t, p.logFile("echo"))
	if len(lines) != 1 || lines[0].stream != "stdout" || lines[0].tag != "F" || lines[0].content != "hello" {
		t.Fatalf("log: %+v", lines)
	}
	states, err := p.client.List(ctx)
	if err != nil || len(states) != 1 || states[0].ID != "echo" {
		t.Fatalf("list: %+v, %v", states, err)
	}
}

func TestBadSpec(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	ctx := testCtx(t)

	r := p.bundle("bad", []string{"true"}, ctrOpts{})
	if err := os.WriteFile(filepath.Join(r.Bundle, "config.json"), []byte(`{"process": {"args": []}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := p.client.Create(ctx, "bad", r)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "root.path") {
		t.Fatalf("create with a bad spec: %v, want invalid-argument about root.path", err)
	}
	r = p.bundle("missing", []string{"/bin/no-such-binary"}, ctrOpts{})
	if _, err := p.client.Create(ctx, "missing", r); err == nil {
		t.Fatal("create of a missing binary succeeded")
	}
	if _, err := p.client.State(ctx, "missing"); !errdefs.IsNotFound(err) {
		t.Fatalf("state after a failed create: %v, want not-found", err)
	}
	// Nothing is left: no libcontainer state, no cgroup.
	if left, _ := os.ReadDir(filepath.Join(p.dir, "runc")); len(left) != 0 {
		t.Fatalf("libcontainer state left: %v", left)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", p.cgParent, "missing")); !os.IsNotExist(err) {
		t.Fatalf("cgroup left: %v", err)
	}
}

func TestExitCodes(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	ctx := testCtx(t)

	p.run("zero", []string{"true"}, ctrOpts{})
	p.run("three", []string{"sh", "-c", "exit 3"}, ctrOpts{})
	p.run("killed", []string{"sleep", "1000"}, ctrOpts{})
	// As a PID namespace's init, sleep would not get SIGTERM at all.
	p.run("termed", []string{"sleep", "1000"}, ctrOpts{hostPID: true})
	// sh is the init and ignores SIGTERM; with all its children get it,
	// and sh ends when they did.
	p.run("all", []string{"sh", "-c", "sleep 1000 & sleep 1000 & wait $!"}, ctrOpts{})

	if err := p.client.Kill(ctx, "killed", 9, false); err != nil {
		t.Fatal(err)
	}
	if err := p.client.Kill(ctx, "termed", 15, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return len(pidsOf(p.cgParent+"/all")) == 3 },
		func() string { return "the sleeps of container all" })
	if err := p.client.Kill(ctx, "all", 15, true); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id           string
		code, signal int
	}{{"zero", 0, 0}, {"three", 3, 0}, {"killed", 137, 9}, {"termed", 143, 15}, {"all", 143, 0}} {
		st := p.waitStatus(c.id, monitorapi.StatusStopped)
		if st.Exit.Code != c.code || st.Exit.Signal != c.signal || st.Exit.OOMKilled {
			t.Errorf("%s: exit %+v, want code %d signal %d", c.id, *st.Exit, c.code, c.signal)
		}
		// exit.json holds exactly what was reported.
		b, err := os.ReadFile(filepath.Join(p.dir, "bundles", c.id, monitorapi.ExitFile))
		if err != nil {
			t.Fatal(err)
		}
		var x monitorapi.Exit
		if err := json.Unmarshal(b, &x); err != nil {
			t.Fatal(err)
		}
		if x.Code != st.Exit.Code || x.Signal != st.Exit.Signal || !x.FinishedAt.Equal(st.Exit.FinishedAt) || x.OOMKilled != st.Exit.OOMKilled {
			t.Errorf("%s: exit.json %+v, reported %+v", c.id, x, *st.Exit)
		}
	}
	// Killing a stopped container succeeds.
	if err := p.client.Kill(ctx, "zero", 9, false); err != nil {
		t.Fatalf("kill of a stopped container: %v", err)
	}
}

func TestOOMKilled(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	// tail keeps the last lines of an endless line in memory. The limit
	// leaves room for the init of a race-enabled test binary.
	p.run("oom", []string{"tail", "/dev/zero"}, ctrOpts{memoryLimit: 48 << 20})
	st := p.waitStatus("oom", monitorapi.StatusStopped)
	if !st.Exit.OOMKilled || st.Exit.Code != 137 {
		t.Fatalf("exit: %+v, want OOM killed, code 137", *st.Exit)
	}
	p.run("fine", []string{"true"}, ctrOpts{memoryLimit: 48 << 20})
	if st := p.waitStatus("fine", monitorapi.StatusStopped); st.Exit.OOMKilled {
		t.Fatalf("exit of a container that was not OOM killed: %+v", *st.Exit)
	}
}

func TestDeleteAndShutdown(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	ctx := testCtx(t)

	p.run("run", []string{"sleep", "1000"}, ctrOpts{})
	if err := p.client.Delete(ctx, "run"); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("delete of a running container: %v, want failed-precondition", err)
	}
	if err := p.client.Shutdown(ctx); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "run") {
		t.Fatalf("shutdown with a container: %v, want failed-precondition naming it", err)
	}
	if err := p.client.Kill(ctx, "run", 9, false); err != nil {
		t.Fatal(err)
	}
	p.waitStatus("run", monitorapi.StatusStopped)
	if err := p.client.Delete(ctx, "run"); err != nil {
		t.Fatalf("delete of a stopped container: %v", err)
	}
	if err := p.client.Delete(ctx, "run"); !errdefs.IsNotFound(err) {
		t.Fatalf("second delete: %v, want not-found", err)
	}
	if _, err := p.client.State(ctx, "run"); !errdefs.IsNotFound(err) {
		t.Fatalf("state after delete: %v, want not-found", err)
	}

	// A created, never started container can be deleted too; its cgroup
	// and state go.
	if _, err := p.client.Create(ctx, "created", p.bundle("created", []string{"true"}, ctrOpts{})); err != nil {
		t.Fatal(err)
	}
	if err := p.client.Delete(ctx, "created"); err != nil {
		t.Fatalf("delete of a created container: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/pids", p.cgParent, "created")); !os.IsNotExist(err) {
		t.Fatalf("cgroup of a deleted container: %v", err)
	}
	if left, _ := os.ReadDir(filepath.Join(p.dir, "runc")); len(left) != 0 {
		t.Fatalf("libcontainer state left: %v", left)
	}

	if err := p.client.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the monitor did not exit after shutdown")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("monitor exit status %d", code)
	}
	if _, err := os.Stat(p.client.Socket()); !os.IsNotExist(err) {
		t.Fatalf("socket after shutdown: %v", err)
	}
}

func TestUpdate(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	ctx := testCtx(t)

	p.run("upd", []string{"sleep", "1000"}, ctrOpts{memoryLimit: 64 << 20, pidsLimit: 100})
	cg := p.cgParent + "/upd"
	if got := cgroupFile(t, "pids", cg, "pids.max"); got != "100" {
		t.Fatalf("pids.max before: %s", got)
	}
	pids, mem := int64(50), int64(32<<20)
	if err := p.client.Update(ctx, "upd", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &pids}, Memory: &specs.LinuxMemory{Limit: &mem}}); err != nil {
		t.Fatal(err)
	}
	if got := cgroupFile(t, "pids", cg, "pids.max"); got != "50" {
		t.Errorf("pids.max: %s, want 50", got)
	}
	if got := cgroupFile(t, "memory", cg, "memory.limit_in_bytes"); got != strconv.Itoa(32<<20) {
		t.Errorf("memory.limit_in_bytes: %s, want %d", got, 32<<20)
	}
	// A refused update leaves the limits as they were.
	bad := int64(1) // far below usage: the kernel refuses
	if err := p.client.Update(ctx, "upd", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &bad}}); err == nil {
		t.Log("a 1-byte memory limit was accepted")
	}
	if err := p.client.Kill(ctx, "upd", 9, false); err != nil {
		t.Fatal(err)
	}
	p.waitStatus("upd", monitorapi.StatusStopped)
	if err := p.client.Update(ctx, "upd", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &pids}}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("update of a stopped container: %v, want failed-precondition", err)
	}
}

func TestStdin(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	// cat on /dev/null ends at once; on a held stdin pipe it waits.
	p.run("nostdin", []string{"cat"}, ctrOpts{})
	p.run("stdin", []string{"cat"}, ctrOpts{stdin: true})
	p.waitStatus("nostdin", monitorapi.StatusStopped)
	if st, err := p.client.State(testCtx(t), "stdin"); err != nil || st.Status != monitorapi.StatusRunning {
		t.Fatalf("cat with stdin: %+v, %v", st, err)
	}
}

// cgroupFile reads a file of a v1 controller's cgroup.
func cgroupFile(t *testing.T, controller, cg, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, cg, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// pidsOf lists the processes of a cgroup (v1 pids hierarchy).
func pidsOf(cg string) []string {
	b, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup/pids", cg, "cgroup.procs"))
	return strings.Fields(string(b))
}
