package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The part of the kubelet's /stats/summary (k8s.io/kubelet/pkg/apis/stats/
// v1alpha1) the scenario reads.
type statsSummary struct {
	Node struct {
		NodeName string `json:"nodeName"`
	} `json:"node"`
	Pods []summaryPod `json:"pods"`
}

type summaryPod struct {
	PodRef struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		UID       string `json:"uid"`
	} `json:"podRef"`
	CPU        *summaryCPU `json:"cpu"`
	Memory     *summaryMem `json:"memory"`
	Containers []struct {
		Name   string      `json:"name"`
		CPU    *summaryCPU `json:"cpu"`
		Memory *summaryMem `json:"memory"`
	} `json:"containers"`
}

type summaryCPU struct {
	UsageNanoCores       *uint64 `json:"usageNanoCores"`
	UsageCoreNanoSeconds *uint64 `json:"usageCoreNanoSeconds"`
}

type summaryMem struct {
	WorkingSetBytes *uint64 `json:"workingSetBytes"`
	UsageBytes      *uint64 `json:"usageBytes"`
}

func val(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

func (c *summaryCPU) nanoCores() uint64 {
	if c == nil {
		return 0
	}
	return val(c.UsageNanoCores)
}

func (m *summaryMem) workingSet() uint64 {
	if m == nil {
		return 0
	}
	return val(m.WorkingSetBytes)
}

// TestStatsSummary: the kubelet's /stats/summary, fed by berth's CRI stats, reports CPU and memory for a pod
// and its containers: a busy container (limited to 200m) uses CPU, within
// its limit, and both containers have a working set; berth's own
// ContainerStats agree that the busy one runs.
func TestStatsSummary(t *testing.T) {
	c := getCluster(t)
	ctx := t.Context()
	ns := newNamespace(t, c, "e2e-stats")
	limit := resource.MustParse("200m")
	pod := oneContainerPod(c, ns, "load", "busy", []string{"sh", "-c", "trap 'exit 0' TERM; while :; do :; done"})
	pod.Spec.Containers[0].Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: limit}}
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "idle", Image: c.Images["1"], Command: loopCommand("idle")})
	createReadyPod(t, c, pod)

	get := kubeletGetter(t, c)
	var p *summaryPod
	var raw []byte
	err := Poll(ctx, 2*time.Minute, time.Second, func() (bool, string, error) {
		var err error
		raw, err = get("/stats/summary")
		if err != nil {
			return false, "GET /stats/summary: " + err.Error(), nil
		}
		var s statsSummary
		if err := json.Unmarshal(raw, &s); err != nil {
			return false, "", fmt.Errorf("stats/summary: %v: %.300s", err, raw)
		}
		p = nil
		for i := range s.Pods {
			if s.Pods[i].PodRef.Namespace == ns && s.Pods[i].PodRef.Name == "load" {
				p = &s.Pods[i]
			}
		}
		if p == nil {
			return false, fmt.Sprintf("no pod %s/load in the summary (%d pods)", ns, len(s.Pods)), nil
		}
		ctrs := map[string]string{}
		ready := p.CPU.nanoCores() > 0 && p.Memory.workingSet() > 0
		for _, ctr := range p.Containers {
			ctrs[ctr.Name] = fmt.Sprintf("cpu %d nanocores, working set %d", ctr.CPU.nanoCores(), ctr.Memory.workingSet())
			switch ctr.Name {
			case "busy":
				ready = ready && ctr.CPU.nanoCores() > 0 && ctr.Memory.workingSet() > 0
			case "idle":
				ready = ready && ctr.Memory.workingSet() > 0 && ctr.CPU != nil && ctr.CPU.UsageCoreNanoSeconds != nil
			}
		}
		ready = ready && len(ctrs) == 2
		return ready, fmt.Sprintf("pod: cpu %d nanocores, working set %d; containers %v",
			p.CPU.nanoCores(), p.Memory.workingSet(), ctrs), nil
	})
	if err != nil {
		t.Fatalf("stats/summary: %v\n%.2000s", err, raw)
	}
	for _, ctr := range p.Containers {
		if ctr.Name == "busy" && ctr.CPU.nanoCores() > 2*uint64(limit.MilliValue())*1e6 {
			t.Errorf("busy container uses %d nanocores, over twice its %s limit", ctr.CPU.nanoCores(), limit.String())
		}
	}
	t.Logf("pod load: cpu %d nanocores, working set %d bytes", p.CPU.nanoCores(), p.Memory.workingSet())

	// berth's side: the CRI stats the kubelet computed these from.
	id := berthContainer(t, c, ns, "load", "busy")
	cs, err := c.Berth.Runtime.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("berth ContainerStats: %v", err)
	}
	if s := cs.Stats; s.Cpu == nil || s.Cpu.UsageCoreNanoSeconds.GetValue() == 0 || s.Memory == nil || s.Memory.WorkingSetBytes.GetValue() == 0 {
		t.Errorf("berth ContainerStats of the busy container: %v; want CPU time and a working set", s)
	}
}

// kubeletGetter returns a GET of the kubelet's API as the cluster admin
// (x509 authentication, webhook authorization). The apiserver's node proxy
// (/api/v1/nodes/<node>/proxy/...) cannot reach this kubelet: it refuses
// to proxy to a loopback address ("address not allowed"), and the node's
// Hostname resolves to 127.0.0.1, where the kubelet listens.
func kubeletGetter(t *testing.T, c *Cluster) func(path string) ([]byte, error) {
	t.Helper()
	caPEM, err := os.ReadFile(c.PKI.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(c.ControlPlane.Admin.Cert, c.ControlPlane.Admin.Key)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	base := "https://127.0.0.1:" + strconv.Itoa(c.Kubelet.Port)
	return func(path string) ([]byte, error) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %.300s", resp.Status, b)
		}
		return b, err
	}
}
