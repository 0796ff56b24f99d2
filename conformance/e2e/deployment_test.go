package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

const revisionAnnotation = "deployment.kubernetes.io/revision"

// TestDeploymentRollingUpdateAndRollback: a 3-replica Deployment rolls out
// on berth, rolls over to a new image tag (one pod at a time, never below
// three ready: readiness comes from an exec probe, i.e. berth's ExecSync),
// and `kubectl rollout undo` brings the first image back. After each step
// the running containers in berth hold the expected image's content.
func TestDeploymentRollingUpdateAndRollback(t *testing.T) {
	c := getCluster(t)
	ctx := t.Context()
	ns := newNamespace(t, c, "e2e-deploy")
	const name, replicas = "web", int32(3)
	maxSurge, maxUnavailable := intstr.FromInt32(1), intstr.FromInt32(0)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &maxSurge, MaxUnavailable: &maxUnavailable},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: gracePeriod(),
					Containers: []corev1.Container{{
						Name: "web", Image: c.Images["1"], Command: loopCommand("web up"),
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/etc/e2e-release"}}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
	start := time.Now()
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	waitRolledOut(t, c, ns, name, 1, "1", "1")
	t.Logf("rolled out %d replicas of tag 1 in %v", replicas, time.Since(start).Round(time.Millisecond))

	// A new tag in the pod template: generation 2, revision 2.
	start = time.Now()
	cur, err := c.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.Template.Spec.Containers[0].Image = c.Images["2"]
	if _, err := c.Client.AppsV1().Deployments(ns).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update deployment: %v", err)
	}
	waitRolledOut(t, c, ns, name, 2, "2", "2")
	t.Logf("rolled over to tag 2 in %v", time.Since(start).Round(time.Millisecond))

	// Rollback as users do it; kubectl copies revision 1's template back,
	// which becomes revision 3.
	start = time.Now()
	if out, err := c.Kubectl(ctx, "-n", ns, "rollout", "undo", "deployment/"+name); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(out, "rolled back") {
		t.Errorf("kubectl rollout undo said %q", out)
	}
	waitRolledOut(t, c, ns, name, 3, "1", "3")
	t.Logf("rolled back to tag 1 in %v", time.Since(start).Round(time.Millisecond))

	// kubectl exec goes apiserver -> kubelet -> berth's streaming server.
	pods := readyPods(t, c, ns, name)
	out, err := c.Kubectl(ctx, "-n", ns, "exec", pods[0].Name, "--", "cat", "/etc/e2e-release")
	if err != nil || strings.TrimSpace(out) != "1" {
		t.Errorf("kubectl exec cat /etc/e2e-release = %q, %v; want 1", out, err)
	}
}

// waitRolledOut waits until the deployment observed generation gen and
// runs all its replicas, updated, ready and available, from the image of
// tag (and no old pod), at revision rev; then checks the pods and, in
// berth, their running containers.
func waitRolledOut(t *testing.T, c *Cluster, ns, name string, gen int64, tag, rev string) {
	t.Helper()
	ctx := t.Context()
	image := c.Images[tag]
	err := Poll(ctx, 4*time.Minute, 500*time.Millisecond, func() (bool, string, error) {
		d, err := c.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		want := *d.Spec.Replicas
		s := d.Status
		msg := fmt.Sprintf("generation %d (observed %d), replicas %d updated %d ready %d available %d, revision %q, image %s",
			d.Generation, s.ObservedGeneration, s.Replicas, s.UpdatedReplicas, s.ReadyReplicas, s.AvailableReplicas,
			d.Annotations[revisionAnnotation], d.Spec.Template.Spec.Containers[0].Image)
		if d.Generation != gen {
			return false, "", fmt.Errorf("deployment generation is %d, want %d: %s", d.Generation, gen, msg)
		}
		done := s.ObservedGeneration == gen && s.Replicas == want && s.UpdatedReplicas == want &&
			s.ReadyReplicas == want && s.AvailableReplicas == want
		return done, msg, nil
	})
	if err != nil {
		t.Fatalf("deployment %s/%s rollout: %v", ns, name, err)
	}
	d, err := c.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Annotations[revisionAnnotation]; got != rev {
		t.Errorf("deployment revision = %q, want %q", got, rev)
	}
	if got := d.Spec.Template.Spec.Containers[0].Image; got != image {
		t.Errorf("deployment image = %q, want %q", got, image)
	}

	pods := readyPods(t, c, ns, name)
	for _, p := range pods {
		if got := p.Spec.Containers[0].Image; got != image {
			t.Errorf("pod %s runs image %s, want %s", p.Name, got, image)
		}
		if cs := p.Status.ContainerStatuses; len(cs) != 1 || cs[0].ImageID == "" || !cs[0].Ready {
			t.Errorf("pod %s container status %+v: want one ready container with an image ID", p.Name, cs)
		}
	}
	// What berth actually runs: one container per pod, with the tag's files.
	ctrs := runningContainers(t, c, map[string]string{podNamespaceLabel: ns})
	if len(ctrs) != len(pods) {
		t.Errorf("berth runs %d containers in %s, want %d", len(ctrs), ns, len(pods))
	}
	for _, ctr := range ctrs {
		if got := execInBerth(t, c, ctr.Id, "cat", "/etc/e2e-release"); got != tag {
			t.Errorf("container %s (pod %s) has release %q, want %q", ctr.Id, ctr.Labels[podNameLabel], got, tag)
		}
	}
}

// readyPods waits until exactly the deployment's replicas exist as pods
// (terminating old ones gone) and all are ready, and returns them.
func readyPods(t *testing.T, c *Cluster, ns, name string) []corev1.Pod {
	t.Helper()
	ctx := t.Context()
	var pods []corev1.Pod
	err := Poll(ctx, 2*time.Minute, 500*time.Millisecond, func() (bool, string, error) {
		list, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, "", err
		}
		pods = list.Items
		if len(pods) != 3 {
			return false, fmt.Sprintf("%d pods, want 3", len(pods)), nil
		}
		for i := range pods {
			if ok, msg := podReady(&pods[i]); !ok || pods[i].DeletionTimestamp != nil {
				return false, msg, nil
			}
		}
		return true, "", nil
	})
	if err != nil {
		t.Fatalf("pods of %s/%s: %v", ns, name, err)
	}
	return pods
}
