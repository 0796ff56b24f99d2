package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestPodToPod: a pod fetches a page from another pod's IP (busybox wget
// to busybox httpd across berth's bridge network); the IPs the API shows
// are the ones berth's PodSandboxStatus reports.
func TestPodToPod(t *testing.T) {
	c := getCluster(t)
	ns := newNamespace(t, c, "e2e-p2p")
	page := "pod-b-of-" + ns
	b := createReadyPod(t, c, oneContainerPod(c, ns, "pod-b", "httpd", httpdCommand(8080, page)))
	a := createReadyPod(t, c, oneContainerPod(c, ns, "pod-a", "client", loopCommand("client up")))
	for _, p := range []*corev1.Pod{a, b} {
		if ip := net.ParseIP(p.Status.PodIP); ip == nil || ip.IsLoopback() || p.Status.PodIP == p.Status.HostIP {
			t.Fatalf("pod %s has IP %q (host %s): want one of its own", p.Name, p.Status.PodIP, p.Status.HostIP)
		}
		if got := berthPodIP(t, c, ns, p.Name); got != p.Status.PodIP {
			t.Errorf("pod %s: the API shows IP %s, berth's PodSandboxStatus %s", p.Name, p.Status.PodIP, got)
		}
	}
	if a.Status.PodIP == b.Status.PodIP {
		t.Fatalf("both pods have IP %s", a.Status.PodIP)
	}

	client := berthContainer(t, c, ns, "pod-a", "client")
	url := fmt.Sprintf("http://%s:8080/index.html", b.Status.PodIP)
	var out string
	err := Poll(t.Context(), 30*time.Second, 500*time.Millisecond, func() (bool, string, error) {
		resp, err := c.Berth.Runtime.ExecSync(t.Context(), &runtimeapi.ExecSyncRequest{
			// Not wget -T: Debian's busybox 1.35 (the image's) segfaults on it.
			ContainerId: client, Cmd: []string{"timeout", "10", "wget", "-q", "-O", "-", url}, Timeout: 30})
		if err != nil {
			return false, "", err
		}
		out = strings.TrimSpace(string(resp.Stdout))
		return resp.ExitCode == 0, fmt.Sprintf("wget %s in pod-a: exit %d: %s", url, resp.ExitCode, resp.Stderr), nil
	})
	if err != nil {
		t.Fatalf("pod-a -> pod-b: %v", err)
	}
	if out != page {
		t.Errorf("pod-a fetched %q from pod-b, want %q", out, page)
	}
}

// TestHostPort: a container port with a hostPort (berth passes it to the
// CNI portmap plugin) answers on the node at 127.0.0.1 and at the node's
// InternalIP, and the rules go with the pod.
func TestHostPort(t *testing.T) {
	c := getCluster(t)
	ctx := t.Context()
	ns := newNamespace(t, c, "e2e-hostport")
	hostPort := MustFreePort(t)
	page := "behind-hostport-" + ns
	pod := oneContainerPod(c, ns, "web", "httpd", httpdCommand(8080, page))
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, HostPort: int32(hostPort), Protocol: corev1.ProtocolTCP}}
	createReadyPod(t, c, pod)

	sandbox := berthSandboxID(t, c, ns, "web")
	if rules := natRulesMentioning(t, sandbox); len(rules) == 0 {
		t.Errorf("no nat rule of portmap mentions the sandbox %s", sandbox)
	}

	node, err := c.Client.CoreV1().Nodes().Get(ctx, c.Kubelet.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{"127.0.0.1"}
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP && net.ParseIP(a.Address).To4() != nil && !slices.Contains(hosts, a.Address) {
			hosts = append(hosts, a.Address)
		}
	}
	if len(hosts) < 2 {
		t.Logf("node has no IPv4 InternalIP (%v): only 127.0.0.1 is tried", node.Status.Addresses)
	}
	t.Logf("hostPort %d tried at %v", hostPort, hosts)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, h := range hosts {
		url := "http://" + net.JoinHostPort(h, strconv.Itoa(hostPort)) + "/index.html"
		var body string
		err := Poll(ctx, 30*time.Second, 500*time.Millisecond, func() (bool, string, error) {
			resp, err := client.Get(url)
			if err != nil {
				return false, err.Error(), nil
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			body = strings.TrimSpace(string(b))
			return resp.StatusCode == http.StatusOK, fmt.Sprintf("%s: %q", resp.Status, b), nil
		})
		if err != nil {
			t.Errorf("GET %s (hostPort %d -> web:8080): %v", url, hostPort, err)
			continue
		}
		if body != page {
			t.Errorf("GET %s = %q, want %q", url, body, page)
		}
	}

	// Deleting the pod: berth's StopPodSandbox runs CNI DEL, which removes
	// the hostPort's rules.
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = Poll(ctx, 2*time.Minute, 500*time.Millisecond, func() (bool, string, error) {
		rules := natRulesMentioning(t, sandbox)
		return len(rules) == 0, fmt.Sprintf("nat rules of sandbox %s left after the pod's deletion: %v", sandbox, rules), nil
	})
	if err != nil {
		t.Error(err)
	}
}

// berthSandboxID is the ID of the pod's ready sandbox in berth.
func berthSandboxID(t *testing.T, c *Cluster, ns, pod string) string {
	t.Helper()
	sbs, err := c.Berth.Runtime.ListPodSandbox(t.Context(), &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		State:         &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
		LabelSelector: map[string]string{podNamespaceLabel: ns, podNameLabel: pod}}})
	if err != nil || len(sbs.Items) != 1 {
		t.Fatalf("berth ListPodSandbox of %s/%s: %v (%d ready sandboxes, want 1)", ns, pod, err, len(sbs.Items))
	}
	return sbs.Items[0].Id
}

// natRulesMentioning lists the IPv4 nat table's rules that name id (the
// portmap plugin puts the sandbox ID in its rules' comments).
func natRulesMentioning(t *testing.T, id string) []string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		t.Fatalf("iptables-save -t nat: %v", err)
	}
	var rules []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, id) {
			rules = append(rules, l)
		}
	}
	return rules
}

// TestClusterDNS: a pod's resolv.conf (written by berth from the sandbox's
// DNSConfig) names the kubelet's clusterDNS and searches the pod's
// namespace's service domain, then the cluster's.
func TestClusterDNS(t *testing.T) {
	c := getCluster(t)
	ns := newNamespace(t, c, "e2e-dns")
	createReadyPod(t, c, oneContainerPod(c, ns, "dns", "main", loopCommand("dns up")))
	id := berthContainer(t, c, ns, "dns", "main")
	conf := execInBerth(t, c, id, "cat", "/etc/resolv.conf")

	var servers, search, options []string
	for _, l := range strings.Split(conf, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			servers = append(servers, f[1:]...)
		case "search":
			search = append(search, f[1:]...)
		case "options":
			options = append(options, f[1:]...)
		}
	}
	if !slices.Equal(servers, []string{ClusterDNS}) {
		t.Errorf("nameservers %v, want [%s] (the kubelet's clusterDNS)\n%s", servers, ClusterDNS, conf)
	}
	want := []string{ns + ".svc.cluster.local", "svc.cluster.local", "cluster.local"}
	// The kubelet appends the host's search domains after the cluster's.
	if len(search) < len(want) || !slices.Equal(search[:len(want)], want) {
		t.Errorf("search %v, want it to start with %v\n%s", search, want, conf)
	}
	if !slices.Contains(options, "ndots:5") {
		t.Errorf("options %v, want ndots:5 (ClusterFirst)\n%s", options, conf)
	}
}

// berthPodIP is the IP of the pod's ready sandbox as berth reports it.
func berthPodIP(t *testing.T, c *Cluster, ns, pod string) string {
	t.Helper()
	st, err := c.Berth.Runtime.PodSandboxStatus(t.Context(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: berthSandboxID(t, c, ns, pod)})
	if err != nil {
		t.Fatalf("berth PodSandboxStatus: %v", err)
	}
	if st.Status.Network == nil {
		return ""
	}
	return st.Status.Network.Ip
}
