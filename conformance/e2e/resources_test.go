package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cgroupFiles are the limit files a container may see of its own cgroup:
// cgroup v1 (one hierarchy per controller, cpu possibly as cpu,cpuacct)
// and v2.
var cgroupFiles = []string{
	"/sys/fs/cgroup/memory/memory.limit_in_bytes",
	"/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us", "/sys/fs/cgroup/cpu/cpu.shares",
	"/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "/sys/fs/cgroup/cpu,cpuacct/cpu.shares",
	"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu.weight",
}

// TestResourceLimitsInCgroup: a container's CPU and memory requests and
// limits are what it sees in its cgroup (read inside it through berth's
// ExecSync) and what berth reports in ContainerStatus.resources: limit
// 500m CPU = quota 50000us per 100000us, request 250m = 256 shares (v2:
// a weight), memory limit 64Mi.
func TestResourceLimitsInCgroup(t *testing.T) {
	c := getCluster(t)
	ns := newNamespace(t, c, "e2e-limits")
	const name, memLimit = "limited", 64 << 20
	ctr := shellContainer(c, "app", loopCommand("limited")[2])
	ctr.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
	createPod(t, c, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.PodSpec{TerminationGracePeriodSeconds: gracePeriod(), Containers: []corev1.Container{ctr}},
	})
	p := waitPodReady(t, c, ns, name)
	if p.Status.QOSClass != corev1.PodQOSBurstable {
		t.Errorf("pod QoS class %s, want Burstable", p.Status.QOSClass)
	}
	id := criID(statusOf(p, "app").ContainerID)

	script := `for f in ` + strings.Join(cgroupFiles, " ") + `; do [ -r "$f" ] && echo "$f=$(cat "$f")"; done; true`
	out := execInBerth(t, c, id, "sh", "-c", script)
	seen := map[string]string{}
	for line := range strings.SplitSeq(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			seen[strings.TrimPrefix(k, "/sys/fs/cgroup/")] = v
		}
	}
	// v1 cpu may be mounted as cpu,cpuacct only.
	for _, f := range []string{"cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.shares"} {
		if v, ok := seen["cpu,cpuacct/"+f]; ok && seen["cpu/"+f] == "" {
			seen["cpu/"+f] = v
		}
	}
	var want map[string][]string // acceptable values
	switch {
	case seen["memory/memory.limit_in_bytes"] != "":
		want = map[string][]string{
			"memory/memory.limit_in_bytes": {fmt.Sprint(memLimit)},
			"cpu/cpu.cfs_quota_us":         {"50000"}, "cpu/cpu.cfs_period_us": {"100000"}, "cpu/cpu.shares": {"256"},
		}
	case seen["memory.max"] != "":
		// 256 shares as a weight: 10 by the old linear conversion
		// (1 + (256-2)*9999/262142), 35 by the quadratic one of
		// opencontainers/cgroups >= 0.0.5 (runc 1.3.2+).
		want = map[string][]string{"memory.max": {fmt.Sprint(memLimit)}, "cpu.max": {"50000 100000"}, "cpu.weight": {"10", "35"}}
	default:
		t.Fatalf("the container sees no cgroup limit file: %q", out)
	}
	for f, vs := range want {
		if !slices.Contains(vs, seen[f]) {
			t.Errorf("/sys/fs/cgroup/%s in the container = %q, want one of %q", f, seen[f], vs)
		}
	}
	t.Logf("cgroup files in the container: %v", seen)

	// What berth reports of the container's resources (the kubelet reads
	// them back for in-place resizing).
	st := berthStatus(t, c, id)
	r := st.GetResources().GetLinux()
	if r == nil {
		t.Fatalf("berth's ContainerStatus has no linux resources: %v", st.Resources)
	}
	if r.CpuQuota != 50000 || r.CpuPeriod != 100000 || r.CpuShares != 256 || r.MemoryLimitInBytes != memLimit {
		t.Errorf("berth's ContainerStatus resources: quota %d period %d shares %d memory %d; want 50000 100000 256 %d",
			r.CpuQuota, r.CpuPeriod, r.CpuShares, r.MemoryLimitInBytes, memLimit)
	}
}

// TestMemoryHogOOMKilled: a container that allocates past its memory limit
// is killed by the kernel's OOM killer, and both the API and berth's
// ContainerStatus say OOMKilled.
func TestMemoryHogOOMKilled(t *testing.T) {
	c := getCluster(t)
	ctx := t.Context()
	ns := newNamespace(t, c, "e2e-oom")
	const name = "hog"
	// busybox tail keeps the last lines of a file: of /dev/zero, one
	// endless line.
	ctr := shellContainer(c, "hog", "echo hogging; exec tail /dev/zero")
	mem := resource.MustParse("32Mi")
	ctr.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: mem}, Limits: corev1.ResourceList{corev1.ResourceMemory: mem}}
	start := time.Now()
	createPod(t, c, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever, TerminationGracePeriodSeconds: gracePeriod(),
			Containers: []corev1.Container{ctr},
		},
	})
	p := waitPod(t, c, ns, name, 2*time.Minute, func(p *corev1.Pod) (bool, string) {
		cs := statusOf(p, "hog")
		return p.Status.Phase == corev1.PodFailed && cs != nil && cs.State.Terminated != nil,
			fmt.Sprintf("pod %s: %s", p.Status.Phase, describeStatus(cs))
	})
	t.Logf("pod failed after %v", time.Since(start).Round(time.Millisecond))
	cs := statusOf(p, "hog")
	if x := cs.State.Terminated; x.Reason != "OOMKilled" || x.ExitCode != 137 {
		t.Errorf("container hog: %s; want terminated OOMKilled, exit 137", describeStatus(cs))
	}
	st := onlyBerthStatus(t, c, ns, name, "hog")
	if st.Id != criID(cs.ContainerID) || st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Errorf("berth's ContainerStatus %s: %s exit %d reason %q message %q; want %s EXITED exit 137 reason OOMKilled",
			st.Id, st.State, st.ExitCode, st.Reason, st.Message, cs.ContainerID)
	}
	if out, err := c.Kubectl(ctx, "-n", ns, "logs", name); err != nil || strings.TrimSpace(out) != "hogging" {
		t.Errorf("kubectl logs %s = %q, %v; want hogging", name, out, err)
	}
}

// Helpers of the pod lifecycle scenarios (probes_test.go, lifecycle_test.go
// and this file).

// shellContainer is a container of the test image running script in sh.
func shellContainer(c *Cluster, name, script string) corev1.Container {
	return corev1.Container{Name: name, Image: c.Images["1"], Command: []string{"sh", "-c", script}}
}

// createPod creates pod in its namespace.
func createPod(t *testing.T, c *Cluster, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	p, err := c.Client.CoreV1().Pods(pod.Namespace).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return p
}

// getPod reads a pod.
func getPod(t *testing.T, c *Cluster, ns, name string) (*corev1.Pod, error) {
	return c.Client.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
}

// waitPod polls the pod until cond holds and returns it.
func waitPod(t *testing.T, c *Cluster, ns, name string, timeout time.Duration, cond func(*corev1.Pod) (bool, string)) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	err := Poll(t.Context(), timeout, 250*time.Millisecond, func() (bool, string, error) {
		var err error
		if p, err = getPod(t, c, ns, name); err != nil {
			return false, "", err
		}
		ok, msg := cond(p)
		return ok, msg, nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s: %v", ns, name, err)
	}
	return p
}

// waitPodReady waits until the pod runs and is Ready.
func waitPodReady(t *testing.T, c *Cluster, ns, name string) *corev1.Pod {
	t.Helper()
	return waitPod(t, c, ns, name, 2*time.Minute, podReady)
}

// statusOf is the status of the named (init or regular) container of p.
func statusOf(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// describeStatus says how a container is, for messages.
func describeStatus(cs *corev1.ContainerStatus) string {
	if cs == nil {
		return "no status"
	}
	st := "unknown"
	switch s := cs.State; {
	case s.Waiting != nil:
		st = "waiting " + s.Waiting.Reason + " " + s.Waiting.Message
	case s.Running != nil:
		st = "running"
	case s.Terminated != nil:
		st = fmt.Sprintf("terminated %s exit %d", s.Terminated.Reason, s.Terminated.ExitCode)
	}
	return fmt.Sprintf("%s: %s, restarts %d, ready %v, id %s", cs.Name, st, cs.RestartCount, cs.Ready, cs.ContainerID)
}

// criID is the CRI container ID in a kubelet container ID ("berth://ID").
func criID(containerID string) string {
	if _, id, ok := strings.Cut(containerID, "://"); ok {
		return id
	}
	return containerID
}

// berthContainers lists berth's containers, in any state, of container
// ctr of pod ns/pod (of all its containers when ctr is "").
func berthContainers(t *testing.T, c *Cluster, ns, pod, ctr string) []*runtimeapi.Container {
	t.Helper()
	labels := map[string]string{podNamespaceLabel: ns, podNameLabel: pod}
	if ctr != "" {
		labels[containerNameLabel] = ctr
	}
	resp, err := c.Berth.Runtime.ListContainers(t.Context(), &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{LabelSelector: labels}})
	if err != nil {
		t.Fatalf("berth ListContainers %v: %v", labels, err)
	}
	return resp.Containers
}

// berthStatus is berth's ContainerStatus of a container.
func berthStatus(t *testing.T, c *Cluster, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	resp, err := c.Berth.Runtime.ContainerStatus(t.Context(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("berth ContainerStatus %s: %v", id, err)
	}
	return resp.Status
}

// onlyBerthStatus is berth's status of the one container ctr of a pod.
func onlyBerthStatus(t *testing.T, c *Cluster, ns, pod, ctr string) *runtimeapi.ContainerStatus {
	t.Helper()
	ctrs := berthContainers(t, c, ns, pod, ctr)
	if len(ctrs) != 1 {
		t.Fatalf("berth has %d containers %q of pod %s/%s, want 1: %v", len(ctrs), ctr, ns, pod, ctrs)
	}
	return berthStatus(t, c, ctrs[0].Id)
}
