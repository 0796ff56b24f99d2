package conformance

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// A container goes created → running → exited → removed, and each state is
// reported by ContainerStatus and ListContainers as kubelet expects.
func TestContainerLifecycle(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "lifecycle")
	cfg := e.ctrConfig("sleeper", "sh", "-c", `trap "" TERM; sleep 1000`)
	cfg.Annotations = map[string]string{"note": "kept"}
	id := e.create(t, podID, podCfg, cfg)

	st := e.status(t, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_CREATED || st.CreatedAt == 0 || st.StartedAt != 0 {
		t.Fatalf("after create: %+v", st)
	}
	if st.Metadata.GetName() != "sleeper" || st.Labels["container"] != "sleeper" || st.Annotations["note"] != "kept" {
		t.Errorf("metadata, labels or annotations not kept: %+v", st)
	}
	if st.ImageRef == "" || !strings.HasPrefix(st.ImageId, "sha256:") || st.GetImage().GetImage() == "" {
		t.Errorf("image fields: image %q ref %q id %q", st.GetImage().GetImage(), st.ImageRef, st.ImageId)
	}
	if want := e.logs + "/sleeper/0.log"; st.LogPath != want {
		t.Errorf("log path %q, want %q", st.LogPath, want)
	}
	if u := st.GetUser().GetLinux(); u == nil || u.Uid != 0 || u.Gid != 0 {
		t.Errorf("user %+v, want root", st.GetUser())
	}

	e.start(t, id)
	st = e.status(t, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING || st.StartedAt < st.CreatedAt {
		t.Fatalf("after start: %+v", st)
	}
	list, err := e.tg.Runtime.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID},
	})
	if err != nil || len(list.Containers) != 1 || list.Containers[0].Id != id ||
		list.Containers[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("ListContainers = %v, %v", list, err)
	}
	// A second start is refused and changes nothing.
	if _, err := e.tg.Runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second StartContainer = %v, want FailedPrecondition", err)
	}

	// The container ignores SIGTERM: the stop ends with SIGKILL after 1 s.
	if _, err := e.tg.Runtime.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	st = e.status(t, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 || st.Reason != "Error" || st.FinishedAt < st.StartedAt {
		t.Fatalf("after stop: state %v exit %d reason %q", st.State, st.ExitCode, st.Reason)
	}
	// Stop and remove are idempotent.
	for i := 0; i < 2; i++ {
		if _, err := e.tg.Runtime.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("StopContainer of a stopped container: %v", err)
		}
		if _, err := e.tg.Runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("RemoveContainer: %v", err)
		}
	}
	if _, err := e.tg.Runtime.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id}); status.Code(err) != codes.NotFound {
		t.Fatalf("ContainerStatus after remove = %v, want NotFound", err)
	}
	if d := e.tg.Daemon; d != nil {
		if mounts, _ := framework.MountsUnder(d.State + "/containers"); len(mounts) != 0 {
			t.Fatalf("rootfs mounts left after remove: %v", mounts)
		}
	}
}

// Exit codes and reasons as kubelet shows them: Completed for 0, Error
// otherwise, 128+n for a signal.
func TestContainerExitCodes(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "exits")
	for _, tc := range []struct {
		name   string
		cmd    []string
		code   int32
		reason string
	}{
		{"zero", []string{"true"}, 0, "Completed"},
		{"three", []string{"sh", "-c", "exit 3"}, 3, "Error"},
		{"killed", []string{"sh", "-c", "kill -9 $$"}, 137, "Error"},
		{"missing-binary", []string{"/no/such/binary"}, -1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.ctrConfig(tc.name, tc.cmd...)
			if tc.code < 0 {
				// runc refuses to start what it cannot exec: CreateContainer
				// or StartContainer fails, as with containerd.
				id, err := e.tryCreate(podID, podCfg, cfg)
				if err == nil {
					defer e.tg.Runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: id})
					_, err = e.tg.Runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
				}
				if err == nil || !strings.Contains(err.Error(), "/no/such/binary") {
					t.Fatalf("a missing binary: %v, want an error naming it", err)
				}
				return
			}
			st, _ := e.runToExit(t, podID, podCfg, cfg)
			if st.ExitCode != tc.code || st.Reason != tc.reason {
				t.Fatalf("exit %d reason %q, want %d %q (message %q)", st.ExitCode, st.Reason, tc.code, tc.reason, st.Message)
			}
		})
	}
}

// StopContainer sends the image's STOPSIGNAL (SIGTERM by default) and the
// container ends on it before the timeout.
func TestContainerStopSignal(t *testing.T) {
	e := newCtrEnv(t)
	usr1 := e.pushAndPull(t, "conformance/busybox:usr1", framework.ImageSpec{StopSignal: "SIGUSR1"})
	podID, podCfg := e.pod(t, "stopsignal")
	script := `trap "echo got TERM; exit 42" TERM; trap "echo got USR1; exit 43" USR1; echo ready; while :; do sleep 0.05; done`
	for _, tc := range []struct {
		name, image, want string
		code              int32
	}{
		{"default", e.image, "got TERM", 42},
		{"image-stopsignal", usr1, "got USR1", 43},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.ctrConfig(tc.name, "sh", "-c", script)
			cfg.Image.Image = tc.image
			id := e.run(t, podID, podCfg, cfg)
			waitLog(t, e.status(t, id).LogPath, "ready")
			start := time.Now()
			if _, err := e.tg.Runtime.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 30}); err != nil {
				t.Fatal(err)
			}
			st := e.status(t, id)
			if st.ExitCode != tc.code || time.Since(start) > 20*time.Second {
				t.Fatalf("exit %d after %s, want %d on the stop signal", st.ExitCode, time.Since(start), tc.code)
			}
			if out := output(readLog(t, st.LogPath)); !strings.Contains(out, tc.want) {
				t.Fatalf("log %q lacks %q", out, tc.want)
			}
		})
	}
}

// waitLog waits until a container's log contains text.
func waitLog(t testing.TB, path, text string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if strings.Contains(output(readLogIfExists(t, path)), text) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %s never showed %q", path, text)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readLogIfExists(t testing.TB, path string) []logLine {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	return readLog(t, path)
}

// A container that exceeds its memory limit is OOMKilled.
func TestContainerOOMKilled(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "oom")
	cfg := e.ctrConfig("hog", "sh", "-c", "echo start; tail /dev/zero")
	// Room for the container's init (the monitor binary, bigger when built
	// with -race), which the cgroup charges before the limit is applied.
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 48 << 20}
	st, _ := e.runToExit(t, podID, podCfg, cfg)
	if st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Fatalf("exit %d reason %q, want 137 OOMKilled", st.ExitCode, st.Reason)
	}
}

// RemoveContainer of a running container kills it first; a failed create
// leaves nothing behind and frees the name for a retry.
func TestContainerRemoveRunningAndFailedCreate(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "remove")
	id := e.run(t, podID, podCfg, e.ctrConfig("running", "sleep", "1000"))
	if _, err := e.tg.Runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("RemoveContainer of a running container: %v", err)
	}
	if _, err := e.tg.Runtime.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id}); status.Code(err) != codes.NotFound {
		t.Fatalf("status after remove: %v", err)
	}

	bad := e.ctrConfig("retry", "id")
	bad.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "ghost"}
	if _, err := e.tryCreate(podID, podCfg, bad); err == nil {
		t.Fatal("create as an unknown user succeeded")
	}
	list, err := e.tg.Runtime.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{})
	if err != nil || len(list.Containers) != 0 {
		t.Fatalf("after a failed create: %v, %v", list, err)
	}
	if d := e.tg.Daemon; d != nil {
		if mounts, _ := framework.MountsUnder(d.State + "/containers"); len(mounts) != 0 {
			t.Fatalf("rootfs mounts left by a failed create: %v", mounts)
		}
	}
	// The same name works once the request is right; a second create with
	// it is AlreadyExists.
	good := e.ctrConfig("retry", "id")
	e.create(t, podID, podCfg, good)
	if _, err := e.tryCreate(podID, podCfg, good); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second create with the same name = %v, want AlreadyExists", err)
	}
}

// pid: TARGET joins another container's PID namespace (ephemeral debug
// containers).
func TestContainerTargetPIDNamespace(t *testing.T) {
	e := newCtrEnv(t)
	ns := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
	podID, podCfg := e.pod(t, "target", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns}
	})
	target := e.ctrConfig("target", "sleep", "1000")
	target.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: ns}
	targetID := e.run(t, podID, podCfg, target)
	debug := e.ctrConfig("debug", "ps", "-o", "pid,args")
	debug.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: targetID},
	}
	_, lines := e.runToExit(t, podID, podCfg, debug)
	if out := output(lines); !strings.Contains(out, "1 sleep 1000") {
		t.Fatalf("the debug container does not see its target as PID 1:\n%s", out)
	}
}
