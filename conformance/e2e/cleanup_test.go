package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestDeleteLeavesNothing: a namespace with several pods (volumes, two
// containers, a hostPort) is deleted; then berth lists no sandbox and no
// container of it, and the node has no mount, network namespace pin, IP
// allocation, portmap rule, cgroup or process of those pods left.
func TestDeleteLeavesNothing(t *testing.T) {
	c := getCluster(t)
	ctx := t.Context()
	ns := ownNamespace(t, c, "e2e-gone")
	if _, err := c.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: ns}, StringData: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	volumes := []corev1.Volume{
		{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}},
		{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		{Name: "disk", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	mounts := []corev1.VolumeMount{{Name: "sec", MountPath: "/sec"}, {Name: "mem", MountPath: "/mem"}, {Name: "disk", MountPath: "/disk"}}
	for i := range 3 {
		pod := oneContainerPod(c, ns, fmt.Sprintf("p%d", i), "main", loopCommand("up"))
		pod.Spec.Volumes = volumes
		pod.Spec.Containers[0].VolumeMounts = mounts
		if i == 0 {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "second", Image: c.Images["1"], Command: loopCommand("second"), VolumeMounts: mounts})
		}
		if i == 1 {
			pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: int32(MustFreePort(t))}}
		}
		if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var uids []string
	for i := range 3 {
		uids = append(uids, string(awaitPodReady(t, c, ns, fmt.Sprintf("p%d", i)).UID))
	}

	labels := map[string]string{podNamespaceLabel: ns}
	sbs, err := c.Berth.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: labels}})
	if err != nil {
		t.Fatal(err)
	}
	ctrs, err := c.Berth.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{LabelSelector: labels}})
	if err != nil {
		t.Fatal(err)
	}
	if len(sbs.Items) != 3 || len(ctrs.Containers) != 4 {
		t.Fatalf("berth has %d sandboxes and %d containers of %s, want 3 and 4", len(sbs.Items), len(ctrs.Containers), ns)
	}
	var sandboxes, ids []string // ids: pod UIDs, sandbox and container IDs
	for _, sb := range sbs.Items {
		sandboxes = append(sandboxes, sb.Id)
	}
	ids = append(append(ids, uids...), sandboxes...)
	for _, ctr := range ctrs.Containers {
		ids = append(ids, ctr.Id)
	}
	leftovers := func() map[string][]string {
		return map[string][]string{
			"mount":        mountsNaming(t, ids),
			"netns pin":    netnsPins(c, sandboxes),
			"IP":           ipAllocations(t, c, sandboxes),
			"portmap rule": natRulesMentioningAny(t, sandboxes),
			"cgroup":       cgroupsNaming(c, ids),
			"process":      processesNamingAny(sandboxes),
		}
	}
	// Each kind of check finds something while the pods run, so that its
	// emptiness afterwards means something (processes: berth's pod
	// monitors, if their command line names the sandbox).
	before := leftovers()
	for kind, found := range before {
		if len(found) == 0 && kind != "process" {
			t.Errorf("no %s of the running pods found: the check would prove nothing", kind)
		}
		t.Logf("while running: %d %s(s)", len(found), kind)
	}

	start := time.Now()
	if err := c.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var left map[string][]string
	err = Poll(ctx, 4*time.Minute, time.Second, func() (bool, string, error) {
		if _, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false, fmt.Sprintf("namespace %s still there (%v)", ns, err), nil
		}
		sbs, err := c.Berth.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: labels}})
		if err != nil {
			return false, "", err
		}
		ctrs, err := c.Berth.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{LabelSelector: labels}})
		if err != nil {
			return false, "", err
		}
		left = leftovers()
		msg := fmt.Sprintf("berth lists %d sandboxes, %d containers of %s", len(sbs.Items), len(ctrs.Containers), ns)
		done := len(sbs.Items) == 0 && len(ctrs.Containers) == 0
		for kind, found := range left {
			if len(found) > 0 {
				done = false
				msg += fmt.Sprintf("; %s left: %v", kind, found)
			}
		}
		return done, msg, nil
	})
	if err != nil {
		t.Fatalf("after deleting namespace %s (sandboxes %v): %v", ns, sandboxes, err)
	}
	t.Logf("namespace of 3 pods gone without a trace in %v", time.Since(start).Round(time.Millisecond))
}

// ownNamespace creates a namespace that the test deletes itself; the
// cleanup deletes it if the test did not get that far.
func ownNamespace(t *testing.T, c *Cluster, prefix string) string {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := prefix + "-" + hex.EncodeToString(b)
	if _, err := c.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		err := c.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
		err = Poll(ctx, 3*time.Minute, time.Second, func() (bool, string, error) {
			_, err := c.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), fmt.Sprintf("namespace %s still there", name), nil
		})
		if err != nil {
			t.Errorf("delete namespace: %v", err)
		}
		waitBerthIdle(t, c, map[string]string{podNamespaceLabel: name})
	})
	return name
}

// mountsNaming lists the host's mount points whose path names one of the
// IDs (pod UIDs below the kubelet's root, sandbox and container IDs below
// berth's root and state).
func mountsNaming(t *testing.T, ids []string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatalf("read mounts: %v", err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		for _, id := range ids {
			if strings.Contains(f[4], id) {
				out = append(out, f[4])
				break
			}
		}
	}
	return out
}

// netnsPins lists the network namespace pins berth made for the sandboxes
// (<state>/sandboxes/<id>/netns) that still exist.
func netnsPins(c *Cluster, sandboxes []string) []string {
	var out []string
	for _, id := range sandboxes {
		p := filepath.Join(c.Berth.State, "sandboxes", id, "netns")
		if _, err := os.Lstat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// ipAllocations lists the host-local IPAM files of berth's network held by
// one of the sandboxes (host-local writes the container ID into them).
func ipAllocations(t *testing.T, c *Cluster, sandboxes []string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(c.Berth.Network.IPStore, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		if sc.Scan() {
			for _, id := range sandboxes {
				if strings.TrimSpace(sc.Text()) == id {
					out = append(out, d.Name()+" ("+id[:12]+")")
				}
			}
		}
		return nil
	})
	return out
}

// natRulesMentioningAny lists the nat rules that name one of the IDs.
func natRulesMentioningAny(t *testing.T, ids []string) []string {
	t.Helper()
	var out []string
	for _, id := range ids {
		out = append(out, natRulesMentioning(t, id)...)
	}
	return out
}

// cgroupsNaming lists the cgroups below the kubelet's cgroup root (in every
// hierarchy) and below berth's default parent whose name contains one of
// the IDs (the kubelet's pod<uid>, berth's container cgroups).
func cgroupsNaming(c *Cluster, ids []string) []string {
	var out []string
	for _, h := range cgroupHierarchies() {
		for _, top := range []string{c.Kubelet.CgroupRoot, "/berth"} {
			_ = filepath.WalkDir(filepath.Join(h, top), func(p string, d os.DirEntry, err error) error {
				if err != nil || !d.IsDir() {
					return nil
				}
				for _, id := range ids {
					if strings.Contains(d.Name(), id) {
						out = append(out, p)
						return filepath.SkipDir
					}
				}
				return nil
			})
		}
	}
	sort.Strings(out)
	return out
}

// processesNamingAny lists the processes whose command line names one of
// the IDs.
func processesNamingAny(ids []string) []string {
	var out []string
	for _, id := range ids {
		out = append(out, processesNaming(id)...)
	}
	return out
}
