package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The labels kubelet puts on every sandbox and container it makes
// (k8s.io/kubelet/pkg/types).
const (
	podNameLabel       = "io.kubernetes.pod.name"
	podNamespaceLabel  = "io.kubernetes.pod.namespace"
	containerNameLabel = "io.kubernetes.container.name"
)

// loopCommand runs until SIGTERM, which it obeys at once (a shell as PID 1
// otherwise ignores it and the kubelet waits out the grace period), after
// printing its message.
func loopCommand(msg string) []string {
	return []string{"sh", "-c", fmt.Sprintf("echo %s; trap 'exit 0' TERM; while true; do sleep 1; done", msg)}
}

// gracePeriod is short: the scenarios' containers stop at SIGTERM anyway.
func gracePeriod() *int64 { return new(int64(5)) }

// newNamespace creates a namespace for one test and deletes it at the end,
// waiting until it is gone and berth runs none of its pods any more.
func newNamespace(t *testing.T, c *Cluster, prefix string) string {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := prefix + "-" + hex.EncodeToString(b)
	_, err := c.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background() // t.Context() is done in cleanups
		if err := c.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
			return
		}
		err := Poll(ctx, 3*time.Minute, time.Second, func() (bool, string, error) {
			_, err := c.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return true, "", nil
			}
			return false, fmt.Sprintf("namespace %s still there: %v", name, err), nil
		})
		if err != nil {
			t.Errorf("delete namespace: %v", err)
		}
		waitBerthIdle(t, c, map[string]string{podNamespaceLabel: name})
	})
	return name
}

// waitBerthIdle waits until berth has no ready sandbox and no running
// container with the given labels (the kubelet stopped them all).
func waitBerthIdle(t *testing.T, c *Cluster, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	err := Poll(ctx, 2*time.Minute, 500*time.Millisecond, func() (bool, string, error) {
		ctrs, err := c.Berth.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
			State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}, LabelSelector: labels}})
		if err != nil {
			return false, "", err
		}
		sbs, err := c.Berth.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
			State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}, LabelSelector: labels}})
		if err != nil {
			return false, "", err
		}
		return len(ctrs.Containers) == 0 && len(sbs.Items) == 0,
			fmt.Sprintf("berth still runs %d containers and %d ready sandboxes with labels %v", len(ctrs.Containers), len(sbs.Items), labels), nil
	})
	if err != nil {
		t.Errorf("after cleanup: %v", err)
	}
}

// runningContainers lists berth's running containers with the given labels.
func runningContainers(t *testing.T, c *Cluster, labels map[string]string) []*runtimeapi.Container {
	t.Helper()
	resp, err := c.Berth.Runtime.ListContainers(t.Context(), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}, LabelSelector: labels}})
	if err != nil {
		t.Fatalf("berth ListContainers: %v", err)
	}
	return resp.Containers
}

// execInBerth runs cmd in a container through berth's ExecSync and returns
// its stdout.
func execInBerth(t *testing.T, c *Cluster, id string, cmd ...string) string {
	t.Helper()
	resp, err := c.Berth.Runtime.ExecSync(t.Context(), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 30})
	if err != nil {
		t.Fatalf("berth ExecSync %v in %s: %v", cmd, id, err)
	}
	if resp.ExitCode != 0 {
		t.Fatalf("berth ExecSync %v in %s: exit %d: %s", cmd, id, resp.ExitCode, resp.Stderr)
	}
	return strings.TrimSpace(string(resp.Stdout))
}

// podReady reports whether a pod is Running with its Ready condition true,
// and says how it is otherwise.
func podReady(p *corev1.Pod) (bool, string) {
	if p.Status.Phase != corev1.PodRunning {
		return false, fmt.Sprintf("pod %s is %s: %s %s%s", p.Name, p.Status.Phase, p.Status.Reason, p.Status.Message, waitingReasons(p))
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue, fmt.Sprintf("pod %s Ready=%s%s", p.Name, cond.Status, waitingReasons(p))
		}
	}
	return false, fmt.Sprintf("pod %s has no Ready condition", p.Name)
}

// waitingReasons describes containers that are not running, for messages.
func waitingReasons(p *corev1.Pod) string {
	var b strings.Builder
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			fmt.Fprintf(&b, "; %s waiting: %s %s", cs.Name, w.Reason, w.Message)
		}
		if x := cs.State.Terminated; x != nil {
			fmt.Fprintf(&b, "; %s terminated: %s exit %d %s", cs.Name, x.Reason, x.ExitCode, x.Message)
		}
	}
	return b.String()
}
