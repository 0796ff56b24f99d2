package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Helpers of the streaming, volume, network, log, stats and cleanup
// scenarios.

// createReadyPod creates pod and waits until it is Running and Ready; it returns
// the pod as the API then shows it.
func createReadyPod(t *testing.T, c *Cluster, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	ctx := t.Context()
	if pod.Spec.TerminationGracePeriodSeconds == nil {
		pod.Spec.TerminationGracePeriodSeconds = gracePeriod()
	}
	if _, err := c.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return awaitPodReady(t, c, pod.Namespace, pod.Name)
}

// awaitPodReady waits until a pod is Running and Ready and returns it.
func awaitPodReady(t *testing.T, c *Cluster, ns, name string) *corev1.Pod {
	t.Helper()
	ctx := t.Context()
	var p *corev1.Pod
	err := Poll(ctx, 2*time.Minute, 250*time.Millisecond, func() (bool, string, error) {
		var err error
		p, err = c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			return false, "", fmt.Errorf("pod %s ended: %s%s", name, p.Status.Phase, waitingReasons(p))
		}
		ok, msg := podReady(p)
		return ok, msg, nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s: %v", ns, name, err)
	}
	return p
}

// berthContainer returns the ID of berth's running container ctr of pod
// ns/pod (there must be exactly one).
func berthContainer(t *testing.T, c *Cluster, ns, pod, ctr string) string {
	t.Helper()
	ctrs := runningContainers(t, c, map[string]string{podNamespaceLabel: ns, podNameLabel: pod, containerNameLabel: ctr})
	if len(ctrs) != 1 {
		t.Fatalf("berth runs %d containers %q of pod %s/%s, want 1", len(ctrs), ctr, ns, pod)
	}
	return ctrs[0].Id
}

// oneContainerPod is a pod of one container of the tag-1 image running cmd.
func oneContainerPod(c *Cluster, ns, name, ctr string, cmd []string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: gracePeriod(),
			Containers:                    []corev1.Container{{Name: ctr, Image: c.Images["1"], Command: cmd}},
		},
	}
}

// httpdCommand serves page as /index.html on port with busybox httpd (which
// forks into the background) and waits for SIGTERM.
func httpdCommand(port int, page string) []string {
	return []string{"sh", "-c", fmt.Sprintf(
		"mkdir -p /www && echo %q > /www/index.html && httpd -p %d -h /www && echo httpd up; "+
			"trap 'exit 0' TERM; while true; do sleep 1; done", page, port)}
}

// syncBuffer is an io.Writer collecting a process's output for polling.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// bgKubectl is a kubectl running in the background (attach, port-forward,
// logs -f), its stdout and stderr collected in out.
type bgKubectl struct {
	cmd   *exec.Cmd
	out   *syncBuffer
	stdin io.WriteCloser // with withStdin
	done  chan struct{}
	err   error // valid once done is closed
}

// startKubectl starts kubectl as the cluster admin with args; the test's
// cleanup kills it (by its PID) if it still runs.
func startKubectl(t *testing.T, c *Cluster, withStdin bool, args ...string) *bgKubectl {
	t.Helper()
	k := &bgKubectl{out: &syncBuffer{}, done: make(chan struct{})}
	k.cmd = exec.Command(filepath.Join(c.BinDir, "kubectl"), append([]string{"--kubeconfig=" + c.ControlPlane.AdminKubeconfig}, args...)...)
	k.cmd.Stdout, k.cmd.Stderr = k.out, k.out
	if withStdin {
		var err error
		if k.stdin, err = k.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.cmd.Start(); err != nil {
		t.Fatalf("start kubectl %v: %v", args, err)
	}
	go func() {
		k.err = k.cmd.Wait()
		close(k.done)
	}()
	t.Cleanup(k.stop)
	return k
}

// stop kills kubectl if it still runs and waits for it.
func (k *bgKubectl) stop() {
	select {
	case <-k.done:
		return
	default:
	}
	_ = k.cmd.Process.Kill()
	<-k.done
}

// exited reports whether kubectl has ended, and how.
func (k *bgKubectl) exited() (bool, error) {
	select {
	case <-k.done:
		return true, k.err
	default:
		return false, nil
	}
}

// waitOutput polls kubectl's output until ok accepts it; it fails t when
// kubectl exits first or timeout passes.
func (k *bgKubectl) waitOutput(t *testing.T, timeout time.Duration, what string, ok func(out string) bool) string {
	t.Helper()
	var out string
	err := Poll(t.Context(), timeout, 100*time.Millisecond, func() (bool, string, error) {
		out = k.out.String()
		if ok(out) {
			return true, "", nil
		}
		if done, err := k.exited(); done {
			return false, "", fmt.Errorf("kubectl exited (%v) before %s; output:\n%s", err, what, out)
		}
		return false, fmt.Sprintf("no %s yet; output:\n%s", what, out), nil
	})
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(k.cmd.Args[2:], " "), err)
	}
	return out
}
