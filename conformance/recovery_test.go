package conformance

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

// recoveryEnv is a daemon of the test's own with a pod network and the
// busybox image pulled, and the means to kill and restart it.
type recoveryEnv struct {
	*ctrEnv
	d *framework.Daemon
}

func newRecoveryEnv(t *testing.T) *recoveryEnv {
	t.Helper()
	d := ownPodDaemon(t)
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Images: d.Images, Daemon: d}
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	e := &ctrEnv{tg: tg, reg: reg, logs: t.TempDir()}
	e.image = e.pushAndPull(t, "conformance/busybox:recovery", framework.ImageSpec{})
	return &recoveryEnv{ctrEnv: e, d: d}
}

// crash SIGKILLs the daemon.
func (r *recoveryEnv) crash(t *testing.T) {
	t.Helper()
	if err := r.d.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = r.d.Wait(30 * time.Second)
}

// restart starts a daemon on the crashed one's socket, root and state.
func (r *recoveryEnv) restart(t *testing.T) *framework.Daemon {
	t.Helper()
	d := framework.StartDaemon(t, framework.DaemonOptions{Socket: r.d.Socket, Root: r.d.Root, State: r.d.State, CNIBinDir: r.d.CNIBinDir})
	r.tg = &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Images: d.Images, Daemon: d}
	return d
}

// podProcesses are the pids of monitors and holders whose --dir is under
// state.
func podProcesses(t *testing.T, state string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if i := slices.Index(args, "--dir"); i >= 0 && i+1 < len(args) && strings.HasPrefix(args[i+1], state+"/") {
			out = append(out, pid)
		}
	}
	return out
}

// nothingLeft checks that no mount, pod process, berth pod cgroup or IP
// of the daemon remains.
func nothingLeft(t *testing.T, d *framework.Daemon, net *framework.PodNetwork) {
	t.Helper()
	waitFor(t, func() bool { return len(podProcesses(t, d.State)) == 0 })
	for _, dir := range []string{d.State, d.Root} {
		if mounts, _ := framework.MountsUnder(dir); len(mounts) != 0 {
			t.Fatalf("mounts left under %s: %v", dir, mounts)
		}
	}
	if ips := net.AllocatedIPs(t); len(ips) != 0 {
		t.Fatalf("IPs still allocated: %v", ips)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.State, "sandboxes")); len(entries) != 0 {
		t.Fatalf("pod directories left: %v", entries)
	}
}

// What a crash leaves without a record — a pod whose sandbox and container
// records are lost, with its monitor, running container, mounts, pins,
// snapshot, cgroup and IP — is found and removed at the next start.
func TestStartupReconciliationRemovesLeftovers(t *testing.T) {
	r := newRecoveryEnv(t)
	net := r.d.Network
	podID, podCfg := r.pod(t, "orphan", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD},
		}
	})
	ctrID := r.run(t, podID, podCfg, r.ctrConfig("orphan", "sleep", "3617"))
	if len(net.AllocatedIPs(t)) != 1 || len(podProcesses(t, r.d.State)) != 2 {
		t.Fatalf("setup: IPs %v, pod processes %v", net.AllocatedIPs(t), podProcesses(t, r.d.State))
	}
	r.crash(t)
	for _, rec := range []string{filepath.Join(r.d.Root, "sandboxes", podID+".json"), filepath.Join(r.d.Root, "containers", ctrID+".json")} {
		if err := os.Remove(rec); err != nil {
			t.Fatalf("drop the record: %v", err)
		}
	}
	d := r.restart(t)
	resp, err := d.Runtime.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(resp.Items) != 0 {
		t.Fatalf("after restart: %v %v", resp.GetItems(), err)
	}
	nothingLeft(t, r.d, net)
	if hostUIDOf(t, "sleep\x003617\x00") != "" {
		t.Fatal("the unknown pod's container still runs")
	}
	if entries, _ := os.ReadDir(filepath.Join(r.d.State, "containers")); len(entries) != 0 {
		t.Fatalf("container bundles left: %v", entries)
	}
	// (The bundle's cleanup takes the snapshot, the pod directory's the
	// network: no leftovers of those kinds remain for later steps.)
	for _, kind := range []string{"monitor", "holder", "container bundle", "pod directory"} {
		if !strings.Contains(d.Logs(), `kind="`+kind+`"`) && !strings.Contains(d.Logs(), "kind="+kind) {
			t.Errorf("the restart did not report removing a %s:\n%s", kind, d.Logs())
		}
	}
}

// After a host reboot (the state directory empty, processes and mounts
// gone, the root kept) the pod is listed NOTREADY and its container EXITED
// with a reason, and both are removed cleanly, releasing the pod's IP.
func TestRecoveryAfterReboot(t *testing.T) {
	r := newRecoveryEnv(t)
	net := r.d.Network
	podID, podCfg := r.pod(t, "rebooted")
	ctrID := r.run(t, podID, podCfg, r.ctrConfig("rebooted", "sleep", "3619"))
	r.crash(t)
	// The reboot: every process of the pod ends, every mount goes, the
	// state directory (a tmpfs on a node) is empty again.
	for _, pid := range podProcesses(t, r.d.State) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	waitFor(t, func() bool { return len(podProcesses(t, r.d.State)) == 0 })
	// (Its PID namespace's holder took the container with it.)
	waitFor(t, func() bool { return hostUIDOf(t, "sleep\x003619\x00") == "" })
	mounts, _ := framework.MountsUnder(r.d.State)
	slices.Reverse(mounts)
	for _, m := range mounts {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	entries, _ := os.ReadDir(r.d.State)
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(r.d.State, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	d := r.restart(t)
	if st := podStatus(t, r.tg, podID); st.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("pod after reboot: %v, want NOTREADY", st.State)
	}
	st := r.status(t, ctrID)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Reason == "" || st.FinishedAt == 0 {
		t.Fatalf("container after reboot: %v reason %q finished %d", st.State, st.Reason, st.FinishedAt)
	}
	ctx := context.Background()
	if _, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctrID}); err != nil {
		t.Fatalf("RemoveContainer after reboot: %v", err)
	}
	if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox after reboot: %v", err)
	}
	if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox after reboot: %v", err)
	}
	nothingLeft(t, r.d, net)
}

// The monitor starts with the pod, so the first CreateContainer need not
// wait for it; one that dies before the pod had a container cost nothing
// and is replaced by the next CreateContainer.
func TestMonitorStartsWithPodAndIsReplacedIfItDiesEmpty(t *testing.T) {
	r := newRecoveryEnv(t)
	podID, podCfg := r.pod(t, "early-monitor")
	first, _ := strconv.Atoi(jsonNumberOfPod(t, r.ctrEnv, podID))
	if procs := podProcesses(t, r.d.State); first == 0 || !slices.Contains(procs, first) {
		t.Fatalf("recorded monitor %d after RunPodSandbox, pod processes %v", first, procs)
	}
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Reaped by the daemon, not left a zombie.
	waitFor(t, func() bool { return syscall.Kill(first, 0) == syscall.ESRCH })
	ctrID := r.run(t, podID, podCfg, r.ctrConfig("after", "sleep", "3619"))
	if st := r.status(t, ctrID); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container %s after a new monitor: %v", ctrID, st.State)
	}
	second, _ := strconv.Atoi(jsonNumberOfPod(t, r.ctrEnv, podID))
	if second == first || second == 0 {
		t.Fatalf("monitor %d after the first (%d) died", second, first)
	}
	if procs := podProcesses(t, r.d.State); slices.Contains(procs, first) || !slices.Contains(procs, second) {
		t.Fatalf("pod processes %v, want the new monitor %d and not the dead %d", procs, second, first)
	}
	if !strings.Contains(r.d.Logs(), "starting another") {
		t.Errorf("the replacement is not logged:\n%s", r.d.Logs())
	}
}
