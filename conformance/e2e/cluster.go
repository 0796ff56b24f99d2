package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-runtime/berth/conformance/framework"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// k8sBinaries are the programs BERTH_K8S_BIN must hold.
func k8sBinaries() []string {
	return []string{"kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubeadm"}
}

// Cluster is a one-node Kubernetes cluster whose node runs berth.
type Cluster struct {
	Dir, LogDir, BinDir string
	PKI                 *PKI
	ControlPlane        *ControlPlane
	Berth               *framework.Daemon
	Kubelet             *Kubelet
	// Registry serves the pods' images (plain HTTP on 127.0.0.1, which
	// berth's resolver uses for loopback registries without configuration).
	Registry *framework.Registry
	// Images are the image references the scenarios use, by tag.
	Images map[string]string
	Client kubernetes.Interface
}

// ImageTags are the tags of the scenarios' busybox image; each has
// /etc/e2e-release holding its tag, so a running pod shows which one it got.
func ImageTags() []string { return []string{"1", "2"} }

// NewCluster returns a cluster to start with its state and logs in dir.
func NewCluster(dir string) *Cluster {
	return &Cluster{Dir: dir, LogDir: filepath.Join(dir, "logs"), BinDir: os.Getenv(K8sBinEnv), Images: map[string]string{}}
}

// Start brings the cluster up and registers its teardown with tb.Cleanup.
func (c *Cluster) Start(tb testing.TB) {
	tb.Helper()
	start := time.Now()
	if os.Geteuid() != 0 {
		tb.Fatal("the e2e suite runs a kubelet and containers: run it as root")
	}
	if c.BinDir == "" {
		tb.Fatalf("%s is not set: it names the directory of %v (conformance/e2e/build-k8s.sh)", K8sBinEnv, k8sBinaries())
	}
	for _, b := range k8sBinaries() {
		if _, err := os.Stat(filepath.Join(c.BinDir, b)); err != nil {
			tb.Fatalf("%s: %v (run conformance/e2e/build-k8s.sh)", K8sBinEnv, err)
		}
	}
	dir := c.Dir
	if err := os.MkdirAll(c.LogDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	nodeName := nodeName(tb)
	// Runs last: nothing of the cluster may outlive it.
	tb.Cleanup(func() { c.checkNothingLeft(tb) })

	c.Registry = framework.StartRegistry(tb, framework.RegistryOptions{})
	for _, tag := range ImageTags() {
		img := framework.MustBuildImage(tb, framework.ImageSpec{
			Files: []framework.File{{Path: "/etc/e2e-release", Content: []byte(tag + "\n")}},
		})
		c.Images[tag], _ = c.Registry.Push(tb, "e2e/busybox:"+tag, img)
	}

	pki, err := NewPKI(filepath.Join(dir, "pki"))
	if err != nil {
		tb.Fatal(err)
	}
	c.PKI = pki
	c.ControlPlane = StartControlPlane(tb, controlPlaneConfig{BinDir: c.BinDir, Dir: dir, LogDir: c.LogDir, PKI: pki, NodeName: nodeName})
	tb.Logf("e2e: control plane up at %s after %v", c.ControlPlane.Server, time.Since(start).Round(time.Millisecond))

	b := make([]byte, 4)
	_, _ = rand.Read(b)
	cgroupRoot := PrepareCgroupRoot(tb, "berth-e2e-"+hex.EncodeToString(b))
	kubeletRoot := filepath.Join(dir, "kubelet")
	if os.Getenv("BERTH_BINARY") == "" {
		// The framework builds berth from the checkout into a temporary
		// directory of its own (framework.Main would remove it).
		bin := framework.BerthBinary(tb)
		tb.Cleanup(func() { os.RemoveAll(filepath.Dir(bin)) })
	}
	c.Berth = framework.StartDaemon(tb, framework.DaemonOptions{
		Network: true, // bridge + host-local + portmap, plugins from BERTH_CNI_PLUGINS
		// Localhost seccomp profiles are relative to the kubelet's root.
		ConfigTOML: fmt.Sprintf("version = 1\n[runtime]\nseccomp_profile_root = %q\n", filepath.Join(kubeletRoot, "seccomp")),
	})
	c.Kubelet = StartKubelet(tb, kubeletConfig{
		BinDir: c.BinDir, Dir: dir, LogDir: c.LogDir, PKI: pki, Server: c.ControlPlane.Server,
		NodeName: nodeName, RuntimeEndpoint: c.Berth.Endpoint(), CgroupRoot: cgroupRoot,
	})

	c.Client, err = kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.waitUsable(tb.Context()); err != nil {
		tb.Fatalf("cluster not usable: %v", err) // TestMain prints the logs
	}
	tb.Logf("e2e: node %s Ready after %v (logs in %s)", nodeName, time.Since(start).Round(time.Millisecond), c.LogDir)
}

// nodeName is this machine's hostname, which must resolve to loopback: it
// is how the apiserver reaches the kubelet.
func nodeName(tb testing.TB) string {
	tb.Helper()
	host, err := os.Hostname()
	if err != nil {
		tb.Fatal(err)
	}
	host = strings.ToLower(host)
	addrs, err := net.LookupHost(host)
	if err != nil || len(addrs) == 0 || !net.ParseIP(addrs[0]).IsLoopback() {
		tb.Fatalf("hostname %q must resolve to 127.0.0.1 (it is how the apiserver reaches the kubelet): %v %v", host, addrs, err)
	}
	return host
}

// RESTConfig is an admin (system:masters) client configuration.
func (c *Cluster) RESTConfig() *rest.Config {
	return &rest.Config{
		Host: c.ControlPlane.Server,
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: c.PKI.CAFile, CertFile: c.ControlPlane.Admin.Cert, KeyFile: c.ControlPlane.Admin.Key,
		},
		QPS: 50, Burst: 100,
	}
}

// waitUsable waits until the node is Ready and the controllers made the
// default service account (without which no pod of "default" is admitted).
func (c *Cluster) waitUsable(ctx context.Context) error {
	err := Poll(ctx, 3*time.Minute, 500*time.Millisecond, func() (bool, string, error) {
		if err := c.componentsAlive(); err != nil {
			return false, "", err
		}
		node, err := c.Client.CoreV1().Nodes().Get(ctx, c.Kubelet.NodeName, metav1.GetOptions{})
		if err != nil {
			return false, "node: " + err.Error(), nil
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue, fmt.Sprintf("node Ready=%s: %s: %s", cond.Status, cond.Reason, cond.Message), nil
			}
		}
		return false, "node has no Ready condition yet", nil
	})
	if err != nil {
		return err
	}
	return Poll(ctx, time.Minute, 500*time.Millisecond, func() (bool, string, error) {
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, "no default service account yet", nil
		}
		return err == nil, fmt.Sprint(err), nil
	})
}

// componentsAlive fails when a component has exited.
func (c *Cluster) componentsAlive() error {
	cp := c.ControlPlane
	for _, p := range []*Process{cp.Etcd, cp.APIServer, cp.ControllerManager, cp.Scheduler, c.Kubelet.Process} {
		if done, err := p.Exited(); done {
			return fmt.Errorf("%s exited: %v (log: %s)", p.Name, err, p.LogPath)
		}
	}
	if c.Berth.Exited() {
		return fmt.Errorf("berth exited")
	}
	return nil
}

// LogTails returns the last n lines of every component's log.
func (c *Cluster) LogTails(n int) string {
	var b strings.Builder
	var procs []*Process
	if cp := c.ControlPlane; cp != nil {
		procs = append(procs, cp.Etcd, cp.APIServer, cp.ControllerManager, cp.Scheduler)
	}
	if c.Kubelet != nil {
		procs = append(procs, c.Kubelet.Process)
	}
	for _, p := range procs {
		if p != nil {
			fmt.Fprintf(&b, "--- %s (%s) ---\n%s\n", p.Name, p.LogPath, p.Tail(n))
		}
	}
	if c.Berth != nil {
		fmt.Fprintf(&b, "--- berth (%s) ---\n%s\n", c.Berth.LogPath, tailFile(c.Berth.LogPath, n))
	}
	return b.String()
}

// LogOnFailure prints the components' log tails when t fails.
func (c *Cluster) LogOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster logs (full logs in %s):\n%s", c.LogDir, c.LogTails(80))
		}
	})
}

// Kubectl runs kubectl as the cluster admin and returns its combined output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "kubectl"), append([]string{"--kubeconfig=" + c.ControlPlane.AdminKubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// checkNothingLeft reports what the teardown failed to remove: mounts
// below the cluster's directory and processes naming it.
func (c *Cluster) checkNothingLeft(tb testing.TB) {
	mounts, err := framework.MountsUnder(c.Dir)
	if err != nil {
		tb.Errorf("read mounts: %v", err)
	}
	for _, m := range mounts {
		tb.Errorf("mount left behind: %s", m)
	}
	if pids := processesNaming(c.Dir); len(pids) > 0 {
		tb.Errorf("processes left behind: %v", pids)
	}
}

// processesNaming lists processes whose command line contains s.
func processesNaming(s string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' || e.Name() == fmt.Sprint(os.Getpid()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}
