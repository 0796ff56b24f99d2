package conformance

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// Limits reach the container's cgroup; UpdateContainerResources changes
// them live and ContainerStatus reports what is in force.
func TestContainerResourcesAndUpdate(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "resources")
	cfg := e.ctrConfig("limited", "sleep", "1000")
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000}
	id := e.run(t, podID, podCfg, cfg)
	st := e.status(t, id)
	if r := st.GetResources().GetLinux(); r.GetMemoryLimitInBytes() != 64<<20 || r.GetCpuShares() != 512 || r.GetCpuQuota() != 50000 {
		t.Fatalf("status resources %+v", r)
	}
	cg := containerCgroupFiles(t, e, id)
	if got := cg("memory", "memory.limit_in_bytes", "memory.max"); got != "67108864" {
		t.Fatalf("memory limit in the cgroup %q", got)
	}
	if _, err := e.tg.Runtime.UpdateContainerResources(context.Background(), &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: id,
		Linux:       &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20, CpuShares: 256, CpuQuota: 20000, CpuPeriod: 100000},
	}); err != nil {
		t.Fatalf("UpdateContainerResources: %v", err)
	}
	if got := cg("memory", "memory.limit_in_bytes", "memory.max"); got != "134217728" {
		t.Fatalf("memory limit after update %q", got)
	}
	if r := e.status(t, id).GetResources().GetLinux(); r.GetMemoryLimitInBytes() != 128<<20 || r.GetCpuShares() != 256 {
		t.Fatalf("status resources after update %+v", r)
	}
}

// containerCgroupFiles reads a file of the container's cgroup from inside
// nothing: it finds the cgroup from the runtime's verbose status.
func containerCgroupFiles(t *testing.T, e *ctrEnv, id string) func(controller, v1file, v2file string) string {
	t.Helper()
	resp, err := e.tg.Runtime.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	path := jsonField(t, resp.Info["info"], "cgroup", "path")
	return func(controller, v1file, v2file string) string {
		t.Helper()
		if b, err := osReadFile("/sys/fs/cgroup/" + controller + path + "/" + v1file); err == nil {
			return strings.TrimSpace(string(b))
		}
		b, err := osReadFile("/sys/fs/cgroup" + path + "/" + v2file)
		if err != nil {
			t.Fatalf("container cgroup %s: %v", path, err)
		}
		return strings.TrimSpace(string(b))
	}
}

// Stats report CPU, memory and the writable layer of running containers,
// filtered by ID, pod and label.
func TestContainerStats(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "ctrstats")
	id := e.run(t, podID, podCfg, e.ctrConfig("busy", "sh", "-c", "head -c 3000000 /dev/zero > /blob; echo written; while :; do :; done"))
	waitLog(t, e.status(t, id).LogPath, "written")
	resp, err := e.tg.Runtime.ContainerStats(context.Background(), &runtimeapi.ContainerStatsRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStats: %v", err)
	}
	s := resp.Stats
	if s.GetAttributes().GetId() != id || s.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 ||
		s.GetMemory().GetWorkingSetBytes().GetValue() == 0 {
		t.Fatalf("stats %+v", s)
	}
	if w := s.GetWritableLayer(); w.GetUsedBytes().GetValue() < 3000000 || w.GetInodesUsed().GetValue() == 0 || w.GetFsId().GetMountpoint() == "" {
		t.Fatalf("writable layer %+v, want at least the 3 MB written", w)
	}
	list, err := e.tg.Runtime.ListContainerStats(context.Background(), &runtimeapi.ListContainerStatsRequest{
		Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: podID, LabelSelector: map[string]string{"container": "busy"}},
	})
	if err != nil || len(list.Stats) != 1 || list.Stats[0].Attributes.Id != id {
		t.Fatalf("ListContainerStats = %v, %v", list, err)
	}
	list, err = e.tg.Runtime.ListContainerStats(context.Background(), &runtimeapi.ListContainerStatsRequest{
		Filter: &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"container": "other"}},
	})
	if err != nil || len(list.Stats) != 0 {
		t.Fatalf("ListContainerStats with a non-matching label = %v, %v", list, err)
	}
}

// GetContainerEvents streams created, started, stopped and deleted events
// with the pod status attached.
func TestContainerEvents(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "events")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := e.tg.Runtime.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The stream is live once it delivers: make an event and wait for it.
	id := e.create(t, podID, podCfg, e.ctrConfig("evented", "true"))
	want := []runtimeapi.ContainerEventType{
		runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
	}
	var got []runtimeapi.ContainerEventType
	for len(got) < len(want) {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("events so far %v: %v", got, err)
		}
		if ev.ContainerId != id {
			continue
		}
		got = append(got, ev.ContainerEventType)
		if ev.ContainerEventType != runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT &&
			(ev.PodSandboxStatus.GetId() != podID || len(ev.ContainersStatuses) == 0) {
			t.Fatalf("event %v without pod status: %+v", ev.ContainerEventType, ev)
		}
		switch ev.ContainerEventType {
		case runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT:
			e.start(t, id)
		case runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT:
			if _, err := e.tg.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
}

// A running container and its log go on while berth is killed and
// restarted; afterwards it is still running and stops as usual.
func TestContainerSurvivesDaemonRestart(t *testing.T) {
	d := ownPodDaemon(t)
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Images: d.Images, Daemon: d}
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	e := &ctrEnv{tg: tg, reg: reg, logs: t.TempDir()}
	e.image = e.pushAndPull(t, "conformance/busybox:survivor", framework.ImageSpec{})
	podID, podCfg := e.pod(t, "survivor")
	id := e.run(t, podID, podCfg, e.ctrConfig("counter", "sh", "-c", "i=0; while :; do echo n-$i; i=$((i+1)); sleep 0.01; done"))
	path := e.status(t, id).LogPath
	waitLog(t, path, "n-3")
	if err := d.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.Wait(30 * time.Second)
	before := len(readLog(t, path))
	waitLog(t, path, "n-"+itoa(before+20)) // logging goes on without berth

	restarted := framework.StartDaemon(t, framework.DaemonOptions{Socket: d.Socket, Root: d.Root, State: d.State, CNIBinDir: d.CNIBinDir})
	e.tg = &framework.Target{Conn: restarted.Conn, Runtime: restarted.Runtime, Images: restarted.Images, Daemon: restarted}
	if st := e.status(t, id); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after restart: %v", st.State)
	}
	if _, err := e.tg.Runtime.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("stop after restart: %v", err)
	}
	if st := e.status(t, id); st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Fatalf("after stop: %v", st.State)
	}
	for i, l := range readLog(t, path) {
		if l.text != "n-"+itoa(i) {
			t.Fatalf("log line %d is %q: a gap or duplicate across the restart", i, l.text)
		}
	}
	if _, err := restarted.Runtime.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("remove after restart: %v", err)
	}
	if mounts, _ := framework.MountsUnder(d.State); len(mounts) != 0 {
		t.Fatalf("mounts left: %v", mounts)
	}
}

// oom_score_adj is applied to the container's process, clamped to what the
// host allows (root may lack CAP_SYS_RESOURCE, as here).
func TestContainerOOMScoreAdj(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "oomadj")
	cfg := e.ctrConfig("adj", "cat", "/proc/self/oom_score_adj")
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{OomScoreAdj: 700}
	_, lines := e.runToExit(t, podID, podCfg, cfg)
	if got := strings.TrimSpace(output(lines)); got != "700" {
		t.Fatalf("oom_score_adj %q, want 700", got)
	}
}

// The streaming list RPCs page what the plain ones return.
func TestStreamContainersAndStats(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "streams")
	ids := map[string]bool{}
	for _, name := range []string{"a", "b"} {
		ids[e.run(t, podID, podCfg, e.ctrConfig(name, "sleep", "1000"))] = true
	}
	ctx := context.Background()
	s, err := e.tg.Runtime.StreamContainers(ctx, &runtimeapi.StreamContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for {
		page, err := s.Recv()
		if err != nil {
			break
		}
		for _, c := range page.Containers {
			if !ids[c.Id] {
				t.Fatalf("unexpected container %s", c.Id)
			}
			seen++
		}
	}
	if seen != 2 {
		t.Fatalf("StreamContainers gave %d containers, want 2", seen)
	}
	ss, err := e.tg.Runtime.StreamContainerStats(ctx, &runtimeapi.StreamContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatal(err)
	}
	seen = 0
	for {
		page, err := ss.Recv()
		if err != nil {
			break
		}
		seen += len(page.ContainerStats)
	}
	if seen != 2 {
		t.Fatalf("StreamContainerStats gave %d stats, want 2", seen)
	}
}

// A pod whose monitor dies has its containers reported exited with a
// message saying so, and is removed cleanly: no process, cgroup or mount
// of its containers is left.
func TestContainerMonitorDeath(t *testing.T) {
	d := ownPodDaemon(t)
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Images: d.Images, Daemon: d}
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	e := &ctrEnv{tg: tg, reg: reg, logs: t.TempDir()}
	e.image = e.pushAndPull(t, "conformance/busybox:orphan", framework.ImageSpec{})
	podID, podCfg := e.pod(t, "orphan")
	id := e.run(t, podID, podCfg, e.ctrConfig("orphan", "sleep", "1000"))
	resp, err := tg.Runtime.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	cgroupPath := jsonField(t, resp.Info["info"], "cgroup", "path")
	ctrPid, _ := strconv.Atoi(jsonNumber(t, resp.Info["info"], "pid"))
	monitor, _ := strconv.Atoi(jsonNumberOfPod(t, e, podID))
	if err := syscall.Kill(monitor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := e.waitState(t, id, runtimeapi.ContainerState_CONTAINER_EXITED, 10*time.Second)
	if !strings.Contains(st.Message, "monitor") {
		t.Fatalf("exit message %q does not say the monitor died", st.Message)
	}
	if _, err := tg.Runtime.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox after the monitor died: %v", err)
	}
	if err := syscall.Kill(ctrPid, 0); err == nil {
		t.Fatalf("the container's process %d outlived its removal", ctrPid)
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory" + cgroupPath); err == nil {
		t.Fatalf("the container's cgroup %s outlived its removal", cgroupPath)
	}
	if mounts, _ := framework.MountsUnder(d.State); len(mounts) != 0 {
		t.Fatalf("mounts left: %v", mounts)
	}
}

func jsonNumberOfPod(t *testing.T, e *ctrEnv, podID string) string {
	t.Helper()
	resp, err := e.tg.Runtime.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	return jsonNumber(t, resp.Info["info"], "monitor", "pid")
}
