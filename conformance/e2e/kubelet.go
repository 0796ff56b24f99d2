package e2e

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-runtime/berth/conformance/framework"
	"golang.org/x/sys/unix"
)

// Kubelet is the node's kubelet, with berth as its container runtime.
type Kubelet struct {
	*Process
	NodeName string
	// RootDir is its --root-dir (pods' volumes are mounted below it).
	RootDir string
	// StaticPodDir is its staticPodPath: a manifest written there runs.
	StaticPodDir string
	// PodLogsDir holds the containers' CRI logs.
	PodLogsDir string
	// Port serves the kubelet API on 127.0.0.1 (logs, exec for the apiserver).
	Port, HealthzPort int
	// CgroupRoot is its cgroupRoot (below which it makes kubepods).
	CgroupRoot string
}

// The kubelet's container log rotation settings.
const (
	ContainerLogMaxSize         = "40Ki"
	ContainerLogMaxFiles        = 3
	ContainerLogMonitorInterval = 3 * time.Second // the kubelet refuses less
)

// kubeletConfig is what StartKubelet needs from the cluster.
type kubeletConfig struct {
	BinDir, Dir, LogDir string
	PKI                 *PKI
	Server              string // the apiserver
	NodeName            string
	RuntimeEndpoint     string // berth's unix:// socket
	CgroupRoot          string // made by PrepareCgroupRoot
}

// kubeletSysctls are the host settings the kubelet changes at start (it
// does unless protectKernelDefaults, which refuses to start when they
// differ): the suite puts them back afterwards.
func kubeletSysctls() []string {
	return []string{
		"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
		"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
	}
}

// StartKubelet starts the kubelet. Its cleanup stops it, unmounts what it
// mounted under its root dir, removes the log symlinks it made in
// /var/log/containers, and restores the kernel settings, iptables chains
// and host directories it changed or made; the pods it ran are berth's to
// remove, and its cgroups PrepareCgroupRoot's.
func StartKubelet(tb testing.TB, cfg kubeletConfig) *Kubelet {
	tb.Helper()
	k := &Kubelet{
		NodeName:     cfg.NodeName,
		RootDir:      filepath.Join(cfg.Dir, "kubelet"),
		StaticPodDir: filepath.Join(cfg.Dir, "manifests"),
		PodLogsDir:   filepath.Join(cfg.Dir, "pod-logs"),
		Port:         MustFreePort(tb),
		HealthzPort:  MustFreePort(tb),
		CgroupRoot:   cfg.CgroupRoot,
	}
	for _, d := range []string{k.RootDir, k.StaticPodDir, k.PodLogsDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	serving := mustIssue(tb, cfg.PKI, CertRequest{Name: "kubelet-serving", CN: cfg.NodeName, Server: true,
		DNS: []string{cfg.NodeName, "localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	client := mustIssue(tb, cfg.PKI, CertRequest{Name: "kubelet-client", CN: "system:node:" + cfg.NodeName,
		Orgs: []string{"system:nodes"}, Client: true})
	kubeconfig := mustKubeconfig(tb, cfg.Dir, "kubelet", cfg.Server, cfg.PKI, client)

	conf := map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1",
		"kind":       "KubeletConfiguration",
		// The API on loopback only: the apiserver reaches it as the node's
		// Hostname, which resolves to 127.0.0.1.
		"address":            "127.0.0.1",
		"port":               k.Port,
		"readOnlyPort":       0,
		"healthzBindAddress": "127.0.0.1",
		"healthzPort":        k.HealthzPort,
		"tlsCertFile":        serving.Cert,
		"tlsPrivateKeyFile":  serving.Key,
		"authentication": map[string]any{
			"x509":      map[string]any{"clientCAFile": cfg.PKI.CAFile},
			"webhook":   map[string]any{"enabled": true},
			"anonymous": map[string]any{"enabled": false},
		},
		"authorization":            map[string]any{"mode": "Webhook"},
		"containerRuntimeEndpoint": cfg.RuntimeEndpoint,
		"cgroupDriver":             "cgroupfs",
		"cgroupsPerQOS":            true,
		"cgroupRoot":               cfg.CgroupRoot,
		// This machine is cgroup v1 (hybrid), which kubelet 1.35+ refuses
		// unless told otherwise; it has no swap.
		"failCgroupV1": false,
		"failSwapOn":   false,
		// root here lacks CAP_SYS_RESOURCE: it cannot lower its own
		// oom_score_adj to the default -999.
		"oomScoreAdj":   0,
		"staticPodPath": k.StaticPodDir,
		// Static pod manifests are picked up within a second or two.
		"fileCheckFrequency": "1s",
		"syncFrequency":      "10s",
		"podLogsDir":         k.PodLogsDir,
		"volumePluginDir":    filepath.Join(k.RootDir, "volume-plugins"),
		"clusterDNS":         []string{ClusterDNS},
		"clusterDomain":      "cluster.local",
		"resolvConf":         "/etc/resolv.conf",
		// The VM's disk is what it is: neither image GC nor eviction should
		// act on a shared test machine.
		"imageGCHighThresholdPercent":  100,
		"imageGCLowThresholdPercent":   99,
		"mergeDefaultEvictionSettings": false,
		"evictionHard": map[string]string{
			"memory.available": "1Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%",
			"imagefs.available": "1%", "imagefs.inodesFree": "1%",
		},
		"protectKernelDefaults": false,
		"serializeImagePulls":   false,
		"registerNode":          true,
		// Small enough that a chatty container's log rotates within seconds
		// (the log rotation scenario); the interval is the smallest the
		// kubelet accepts.
		"containerLogMaxSize":         ContainerLogMaxSize,
		"containerLogMaxFiles":        ContainerLogMaxFiles,
		"containerLogMonitorInterval": ContainerLogMonitorInterval.String(),
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	confPath := filepath.Join(cfg.Dir, "kubelet-config.yaml") // JSON is YAML
	if err := os.WriteFile(confPath, b, 0o644); err != nil {
		tb.Fatal(err)
	}

	saved, host := readSysctls(), snapshotHost()
	// Registered before the process starts, so it runs after it stopped.
	tb.Cleanup(func() {
		unmountTree(tb, k.RootDir)
		removeLogSymlinks(tb, k.PodLogsDir)
		restoreSysctls(tb, saved)
		restoreHost(tb, host)
	})
	k.Process = StartProcess(tb, "kubelet", cfg.LogDir, filepath.Join(cfg.BinDir, "kubelet"),
		"--config="+confPath, "--kubeconfig="+kubeconfig, "--root-dir="+k.RootDir,
		"--cert-dir="+filepath.Join(k.RootDir, "pki"), "--hostname-override="+cfg.NodeName, "--v=2",
	)
	return k
}

// readSysctls reads kubeletSysctls ("" for one that cannot be read).
func readSysctls() map[string]string {
	out := map[string]string{}
	for _, name := range kubeletSysctls() {
		b, err := os.ReadFile("/proc/sys/" + name)
		if err == nil {
			out[name] = strings.TrimSpace(string(b))
		}
	}
	return out
}

// restoreSysctls writes back the values the kubelet changed.
func restoreSysctls(tb testing.TB, saved map[string]string) {
	now := readSysctls()
	for name, v := range saved {
		if now[name] == v {
			continue
		}
		if err := os.WriteFile("/proc/sys/"+name, []byte(v), 0o644); err != nil {
			tb.Errorf("restore sysctl %s=%s: %v", name, v, err)
		}
	}
}

// unmountTree detaches every mount at or below dir, deepest first.
func unmountTree(tb testing.TB, dir string) {
	mounts, err := framework.MountsUnder(dir)
	if err != nil {
		tb.Errorf("read mounts: %v", err)
		return
	}
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			tb.Errorf("unmount %s: %v", m, err)
		}
	}
}

// removeLogSymlinks removes the /var/log/containers links into podLogsDir,
// which the kubelet makes for log collectors and would have removed with
// the containers.
func removeLogSymlinks(tb testing.TB, podLogsDir string) {
	links, _ := filepath.Glob("/var/log/containers/*.log")
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, podLogsDir+"/") {
			if err := os.Remove(l); err != nil {
				tb.Errorf("remove %s: %v", l, err)
			}
		}
	}
}

// healthzURL is the kubelet's health endpoint (plain HTTP on loopback).
func (k *Kubelet) healthzURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(k.HealthzPort) + "/healthz"
}
