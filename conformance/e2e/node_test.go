package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestNodeReady: the kubelet registers the node, reports it Ready with
// berth as its runtime, and sees no pressure.
func TestNodeReady(t *testing.T) {
	c := getCluster(t)
	ctx := t.Context()
	node, err := c.Client.CoreV1().Nodes().Get(ctx, c.Kubelet.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node: %v", err)
	}
	conds := map[corev1.NodeConditionType]corev1.ConditionStatus{}
	for _, cond := range node.Status.Conditions {
		conds[cond.Type] = cond.Status
	}
	want := map[corev1.NodeConditionType]corev1.ConditionStatus{
		corev1.NodeReady: corev1.ConditionTrue, corev1.NodeMemoryPressure: corev1.ConditionFalse,
		corev1.NodeDiskPressure: corev1.ConditionFalse, corev1.NodePIDPressure: corev1.ConditionFalse,
	}
	for typ, status := range want {
		if conds[typ] != status {
			t.Errorf("node condition %s = %q, want %q (all: %v)", typ, conds[typ], status, node.Status.Conditions)
		}
	}

	ver, err := c.Berth.Runtime.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatalf("berth Version: %v", err)
	}
	info := node.Status.NodeInfo
	if want := ver.RuntimeName + "://" + ver.RuntimeVersion; info.ContainerRuntimeVersion != want {
		// "Unknown" means the kubelet could not parse berth's
		// RuntimeVersion, which the CRI requires to be semver.
		t.Errorf("node's containerRuntimeVersion = %q, want %q (berth's Version RPC)", info.ContainerRuntimeVersion, want)
	}
	server, err := c.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if info.KubeletVersion != server.GitVersion {
		t.Errorf("kubeletVersion = %q, want the apiserver's %q", info.KubeletVersion, server.GitVersion)
	}
	// cadvisor and berth's ImageFsInfo feed capacity; zero means the
	// kubelet could not read the machine.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage, corev1.ResourcePods} {
		if q, ok := node.Status.Allocatable[r]; !ok || q.IsZero() {
			t.Errorf("node allocatable %s = %v, want > 0 (allocatable: %v)", r, q.String(), node.Status.Allocatable)
		}
	}
}

// TestStaticPod: a manifest in the kubelet's staticPodPath runs on berth,
// its mirror pod shows Running in the API, its output reaches the CRI log
// (read through berth and through the apiserver's pods/log), and removing
// the manifest removes the pod from berth.
func TestStaticPod(t *testing.T) {
	c := getCluster(t)
	ctx := t.Context()
	const name, ctrName = "static-hello", "hello"
	mirror := name + "-" + c.Kubelet.NodeName // the kubelet names static pods so
	greeting := "static-pod-says-hello"
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: gracePeriod(),
			Containers: []corev1.Container{{
				Name: ctrName, Image: c.Images["1"], Command: loopCommand(greeting),
			}},
		},
	}
	manifest, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(c.Kubelet.StaticPodDir, name+".json")
	if err := os.WriteFile(path, manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{podNameLabel: mirror, podNamespaceLabel: "default"}
	removed := false
	removeManifest := func() {
		if !removed {
			removed = true
			if err := os.Remove(path); err != nil {
				t.Errorf("remove manifest: %v", err)
			}
		}
	}
	t.Cleanup(func() {
		removeManifest()
		waitBerthIdle(t, c, labels)
	})

	err = Poll(ctx, 2*time.Minute, 500*time.Millisecond, func() (bool, string, error) {
		p, err := c.Client.CoreV1().Pods("default").Get(ctx, mirror, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, "no mirror pod " + mirror + " yet", nil
		}
		if err != nil {
			return false, "", err
		}
		if _, ok := p.Annotations[corev1.MirrorPodAnnotationKey]; !ok {
			return false, "", fmt.Errorf("pod %s is not a mirror pod: annotations %v", mirror, p.Annotations)
		}
		ok, msg := podReady(p)
		return ok, msg, nil
	})
	if err != nil {
		t.Fatalf("static pod: %v", err)
	}

	ctrs := runningContainers(t, c, map[string]string{podNameLabel: mirror, containerNameLabel: ctrName})
	if len(ctrs) != 1 {
		t.Fatalf("berth runs %d containers %q of pod %s, want 1: %v", len(ctrs), ctrName, mirror, ctrs)
	}
	st, err := c.Berth.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctrs[0].Id})
	if err != nil {
		t.Fatalf("berth ContainerStatus: %v", err)
	}
	if got := execInBerth(t, c, ctrs[0].Id, "cat", "/etc/e2e-release"); got != "1" {
		t.Errorf("/etc/e2e-release in the static pod = %q, want 1 (the image %s)", got, c.Images["1"])
	}
	// The CRI log as berth's monitor writes it (the kubelet reads it for
	// pods/log), and the same through apiserver -> kubelet.
	err = Poll(ctx, 30*time.Second, 250*time.Millisecond, func() (bool, string, error) {
		b, err := os.ReadFile(st.Status.LogPath)
		if err != nil {
			return false, err.Error(), nil
		}
		return strings.Contains(string(b), " stdout F "+greeting+"\n"), fmt.Sprintf("log %s: %q", st.Status.LogPath, b), nil
	})
	if err != nil {
		t.Errorf("container log: %v", err)
	}
	logs, err := c.Client.CoreV1().Pods("default").GetLogs(mirror, &corev1.PodLogOptions{Container: ctrName}).DoRaw(ctx)
	if err != nil || strings.TrimSpace(string(logs)) != greeting {
		t.Errorf("pods/log of %s = %q, %v; want %q", mirror, logs, err, greeting)
	}

	// Removing the manifest: the kubelet stops the pod, deletes the mirror
	// pod and, in its garbage collection, removes the sandbox from berth.
	removeManifest()
	err = Poll(ctx, 3*time.Minute, time.Second, func() (bool, string, error) {
		_, err := c.Client.CoreV1().Pods("default").Get(ctx, mirror, metav1.GetOptions{})
		if err == nil {
			return false, "mirror pod still there", nil
		}
		if !apierrors.IsNotFound(err) {
			return false, "", err
		}
		sbs, err := c.Berth.Runtime.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{
			Filter: &runtimeapi.PodSandboxFilter{LabelSelector: labels}})
		if err != nil {
			return false, "", err
		}
		return len(sbs.Items) == 0, fmt.Sprintf("berth still has %d sandboxes of %s", len(sbs.Items), mirror), nil
	})
	if err != nil {
		t.Errorf("after removing the manifest: %v", err)
	}
}
