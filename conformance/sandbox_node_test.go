package conformance

// Sandbox cases that look at the node itself: they need a berth started by
// the suite (its state dir, its network's IP store).

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/conformance/framework"
)

func ownPodDaemon(t *testing.T) *framework.Daemon {
	t.Helper()
	framework.SkipIfExternal(t)
	return framework.StartDaemon(t, framework.DaemonOptions{Network: true})
}

func sandboxDir(d *framework.Daemon, id string) string {
	return filepath.Join(d.State, "sandboxes", id)
}

func TestPodsReachEachOther(t *testing.T) {
	d := ownPodDaemon(t)
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Daemon: d}
	a := runPod(t, tg, podConfig("reach-a"))
	b := runPod(t, tg, podConfig("reach-b"))
	ipA := podStatus(t, tg, a).GetNetwork().GetIp()

	var lis net.Listener
	err := ns.WithNetNSPath(filepath.Join(sandboxDir(d, a), "netns"), func(ns.NetNS) error {
		var err error
		lis, err = net.Listen("tcp", net.JoinHostPort(ipA, "0"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		if c, err := lis.Accept(); err == nil {
			c.Write([]byte("hello from a"))
			c.Close()
		}
	}()
	var got []byte
	err = ns.WithNetNSPath(filepath.Join(sandboxDir(d, b), "netns"), func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp", lis.Addr().String(), 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		got = buf[:n]
		return nil
	})
	if err != nil || string(got) != "hello from a" {
		t.Fatalf("pod b to pod a at %s: %q %v", lis.Addr(), got, err)
	}
}

func TestPodFilesAndNamespaces(t *testing.T) {
	d := ownPodDaemon(t)
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Daemon: d}
	cfg := podConfig("files")
	cfg.Hostname = "files-host"
	cfg.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"conformance.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}}
	cfg.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "80", "kernel.shm_rmid_forced": "1"}
	id := runPod(t, tg, cfg)
	ip := podStatus(t, tg, id).GetNetwork().GetIp()
	dir := sandboxDir(d, id)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read("resolv.conf"); !strings.Contains(got, "nameserver 10.96.0.10") ||
		!strings.Contains(got, "search conformance.svc.cluster.local svc.cluster.local") || !strings.Contains(got, "options ndots:5") {
		t.Errorf("resolv.conf:\n%s", got)
	}
	if got := read("hostname"); got != "files-host\n" {
		t.Errorf("hostname file %q", got)
	}
	if got := read("hosts"); !strings.Contains(got, ip+"\tfiles-host") && !strings.Contains(got, ip+" files-host") {
		t.Errorf("hosts file lacks %s files-host:\n%s", ip, got)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Join(dir, "shm"), &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Errorf("pod /dev/shm is not a tmpfs: %v", err)
	}
	// The net sysctl is set in the pod's netns, not on the host.
	var inPod string
	err := ns.WithNetNSPath(filepath.Join(dir, "netns"), func(ns.NetNS) error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
		inPod = strings.TrimSpace(string(b))
		return err
	})
	if err != nil || inPod != "80" {
		t.Errorf("sysctl in the pod netns = %q, %v", inPod, err)
	}
	if host, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); strings.TrimSpace(string(host)) == "80" {
		t.Errorf("the pod's sysctl changed the host")
	}
	// Removal leaves no mount under the daemon's state dir.
	if _, err := d.Runtime.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if mounts, _ := framework.MountsUnder(d.State); len(mounts) != 0 {
		t.Fatalf("mounts left after RemovePodSandbox: %v", mounts)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatalf("sandbox dir %s left behind", dir)
	}
}

// CNI DEL runs even when the netns pin vanished behind berth's back, so
// the IP is not leaked.
func TestStopReleasesIPWithoutNetns(t *testing.T) {
	d := ownPodDaemon(t)
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Daemon: d}
	id := runPod(t, tg, podConfig("lost-netns"))
	pin := filepath.Join(sandboxDir(d, id), "netns")
	if err := unix.Unmount(pin, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(pin); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Runtime.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("StopPodSandbox without its netns: %v", err)
	}
	if ips := d.Network.AllocatedIPs(t); len(ips) != 0 {
		t.Fatalf("IP leaked: %v", ips)
	}
}

// A RunPodSandbox cut off by a crash (its record still says "creating") is
// rolled back at the next start: nothing listed, IP released, no mounts.
func TestInterruptedRunPodSandboxIsRolledBack(t *testing.T) {
	d := ownPodDaemon(t)
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Daemon: d}
	id := runPod(t, tg, podConfig("interrupted"))
	if err := d.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.Wait(30 * time.Second)
	// Put the record back in the state a crash during creation leaves.
	recPath := filepath.Join(d.Root, "sandboxes", id+".json")
	b, err := os.ReadFile(recPath)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	rec["state"] = "creating"
	// And as a crash before the monitor, started beside the network, was
	// recorded: the rollback must find it by its --dir.
	mon, _ := rec["monitor"].(map[string]any)
	if pid, _ := mon["pid"].(float64); pid == 0 || !slices.Contains(podProcesses(t, d.State), int(pid)) {
		t.Fatalf("test setup: the monitor recorded (%v) is not running (%v)", rec["monitor"], podProcesses(t, d.State))
	}
	delete(rec, "monitor")
	b, _ = json.Marshal(rec)
	if err := os.WriteFile(recPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if len(d.Network.AllocatedIPs(t)) == 0 {
		t.Fatal("test setup: the pod had no IP")
	}
	restarted := framework.StartDaemon(t, framework.DaemonOptions{Socket: d.Socket, Root: d.Root, State: d.State, CNIBinDir: d.CNIBinDir})
	// The restarted daemon must find the network config the pod used.
	resp, err := restarted.Runtime.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(resp.Items) != 0 {
		t.Fatalf("after restart: %v %v", resp.GetItems(), err)
	}
	if ips := d.Network.AllocatedIPs(t); len(ips) != 0 {
		t.Fatalf("IP of the interrupted sandbox leaked: %v", ips)
	}
	if mounts, _ := framework.MountsUnder(d.State); len(mounts) != 0 {
		t.Fatalf("mounts left: %v", mounts)
	}
	if procs := podProcesses(t, d.State); len(procs) != 0 {
		t.Fatalf("the interrupted sandbox's monitor still runs: %v", procs)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.State, "sandboxes")); len(entries) != 0 {
		t.Fatalf("pod directories left: %v", entries)
	}
}

// A pod with one PID namespace (pid: POD) gets a holder process as its
// PID 1, from berth's own binary; stopping the pod ends it.
func TestSharedPIDNamespaceHolder(t *testing.T) {
	d := ownPodDaemon(t)
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Daemon: d}
	cfg := hostNetwork(podConfig("shared-pid"))
	cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	id := runPod(t, tg, cfg)
	if got := podStatus(t, tg, id).GetLinux().GetNamespaces().GetOptions().GetPid(); got != runtimeapi.NamespaceMode_POD {
		t.Fatalf("pid mode %v", got)
	}
	resp, err := d.Runtime.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		PIDHolder struct{ PID int } `json:"pid_holder"`
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil || info.PIDHolder.PID == 0 {
		t.Fatalf("no holder in %s (%v)", resp.Info["info"], err)
	}
	pid := info.PIDHolder.PID
	// It is PID 1 of its own namespace.
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil || !strings.Contains(string(status), "NSpid:\t"+strconv.Itoa(pid)+"\t1\n") {
		t.Fatalf("holder %d is not PID 1 of a pod namespace:\n%s", pid, status)
	}
	if _, err := d.Runtime.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		return err != nil || strings.Contains(string(b), ") Z ")
	})
	// Default pods (pid: CONTAINER) get no holder.
	plain := hostNetwork(podConfig("container-pid"))
	plain.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_CONTAINER
	id2 := runPod(t, tg, plain)
	if got := podStatus(t, tg, id2).GetLinux().GetNamespaces().GetOptions().GetPid(); got != runtimeapi.NamespaceMode_CONTAINER {
		t.Fatalf("pid mode %v", got)
	}
}

// Pods outlive a daemon crash: after SIGKILL and restart they are listed
// READY with the same IPs, and stop and remove cleanly.
func TestSandboxesSurviveDaemonRestart(t *testing.T) {
	d := ownPodDaemon(t)
	tg := &framework.Target{Conn: d.Conn, Runtime: d.Runtime, Daemon: d}
	cfg := podConfig("survivor")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD},
	}
	id := runPod(t, tg, cfg)
	before := podStatus(t, tg, id)
	if err := d.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.Wait(30 * time.Second)

	restarted := framework.StartDaemon(t, framework.DaemonOptions{Socket: d.Socket, Root: d.Root, State: d.State, CNIBinDir: d.CNIBinDir})
	tg2 := &framework.Target{Conn: restarted.Conn, Runtime: restarted.Runtime, Daemon: restarted}
	after := podStatus(t, tg2, id)
	if after.State != runtimeapi.PodSandboxState_SANDBOX_READY || after.GetNetwork().GetIp() != before.GetNetwork().GetIp() {
		t.Fatalf("after restart: state %v ip %q, before ip %q", after.State, after.GetNetwork().GetIp(), before.GetNetwork().GetIp())
	}
	// A kubelet retry of the same RunPodSandbox still gets the same pod.
	if again := runPod(t, tg2, cfg); again != id {
		t.Fatalf("retry after restart made %s, want %s", again, id)
	}
	if _, err := restarted.Runtime.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("remove after restart: %v", err)
	}
	if ips := d.Network.AllocatedIPs(t); len(ips) != 0 {
		t.Fatalf("IP leaked: %v", ips)
	}
	if mounts, _ := framework.MountsUnder(d.State); len(mounts) != 0 {
		t.Fatalf("mounts left: %v", mounts)
	}
}
