package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestInitContainersAndSidecar: two init containers run to completion one
// after the other, then a restartable sidecar (an init container with
// restartPolicy Always) starts, then the main container; sidecar and main
// container then run side by side. Each appends its name to a file in a
// shared emptyDir; berth's start and finish times give the same order.
func TestInitContainersAndSidecar(t *testing.T) {
	c := getCluster(t)
	ctx := t.Context()
	ns := newNamespace(t, c, "e2e-init")
	const name = "init"
	mount := []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	ctr := func(name, script string) corev1.Container {
		ctr := shellContainer(c, name, script)
		ctr.VolumeMounts = mount
		return ctr
	}
	sidecar := ctr("sidecar", "echo sidecar >> /work/order; "+loopCommand("sidecar up")[2])
	sidecar.RestartPolicy = new(corev1.ContainerRestartPolicyAlways)
	start := time.Now()
	createPod(t, c, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: gracePeriod(),
			Volumes:                       []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			InitContainers: []corev1.Container{
				ctr("init-1", "sleep 1; echo init-1 >> /work/order; echo init-1 done"),
				ctr("init-2", "echo init-2 >> /work/order; cat /work/order"),
				sidecar,
			},
			Containers: []corev1.Container{ctr("main", "echo main >> /work/order; "+loopCommand("main up")[2])},
		},
	})
	p := waitPodReady(t, c, ns, name)
	t.Logf("pod ready in %v", time.Since(start).Round(time.Millisecond))

	for _, n := range []string{"init-1", "init-2"} {
		cs := statusOf(p, n)
		if cs == nil || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 || cs.State.Terminated.Reason != "Completed" {
			t.Errorf("init container %s: %s; want terminated, Completed, exit 0", n, describeStatus(cs))
		}
	}
	for _, n := range []string{"sidecar", "main"} {
		if cs := statusOf(p, n); cs == nil || cs.State.Running == nil || !cs.Ready || cs.Started == nil || !*cs.Started {
			t.Errorf("container %s: %s; want running, started and ready", n, describeStatus(cs))
		}
	}
	// (Running containers may not have written yet.)
	for ctrName, want := range map[string]string{"init-1": "init-1 done", "init-2": "init-1\ninit-2", "sidecar": "sidecar up", "main": "main up"} {
		err := Poll(ctx, 30*time.Second, 250*time.Millisecond, func() (bool, string, error) {
			out, err := c.Kubectl(ctx, "-n", ns, "logs", name, "-c", ctrName)
			return err == nil && strings.TrimSpace(out) == want, fmt.Sprintf("kubectl logs -c %s = %q, %v; want %q", ctrName, out, err, want), nil
		})
		if err != nil {
			t.Error(err)
		}
	}

	// berth's view: one container each, the init ones exited 0, each
	// started after the one before finished (or, for main, started).
	sts := map[string]*runtimeapi.ContainerStatus{}
	for _, n := range []string{"init-1", "init-2", "sidecar", "main"} {
		sts[n] = onlyBerthStatus(t, c, ns, name, n)
	}
	for n, want := range map[string]runtimeapi.ContainerState{
		"init-1": runtimeapi.ContainerState_CONTAINER_EXITED, "init-2": runtimeapi.ContainerState_CONTAINER_EXITED,
		"sidecar": runtimeapi.ContainerState_CONTAINER_RUNNING, "main": runtimeapi.ContainerState_CONTAINER_RUNNING,
	} {
		if st := sts[n]; st.State != want || st.ExitCode != 0 {
			t.Errorf("berth's container %s: %s exit %d, want %s exit 0", n, st.State, st.ExitCode, want)
		}
	}
	at := func(ns int64) string { return time.Unix(0, ns).Format("15:04:05.000000") }
	steps := []struct{ before, after string }{{"init-1", "init-2"}, {"init-2", "sidecar"}}
	for _, s := range steps {
		if fin, st := sts[s.before].FinishedAt, sts[s.after].StartedAt; fin == 0 || st < fin {
			t.Errorf("berth: %s started at %s, before %s finished (%s)", s.after, at(st), s.before, at(fin))
		}
	}
	if sc, m := sts["sidecar"].StartedAt, sts["main"].StartedAt; sc == 0 || m <= sc {
		t.Errorf("berth: main started at %s, sidecar at %s: want the sidecar first", at(m), at(sc))
	}
	if got := execInBerth(t, c, sts["main"].Id, "cat", "/work/order"); got != "init-1\ninit-2\nsidecar\nmain" {
		t.Errorf("/work/order = %q, want init-1, init-2, sidecar, main", got) // main wrote it before its log
	}
}

// TestJobCompletes: a Job's pod runs to completion: the Job counts one
// success, the pod is Succeeded, and berth's container exited 0.
func TestJobCompletes(t *testing.T) {
	c := getCluster(t)
	ctx := t.Context()
	ns := newNamespace(t, c, "e2e-job")
	const name = "once"
	start := time.Now()
	_, err := c.Client.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: new(int32(0)),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{shellContainer(c, "work", "echo job says done; exit 0")},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create job: %v", err)
	}
	err = Poll(ctx, 2*time.Minute, 500*time.Millisecond, func() (bool, string, error) {
		j, err := c.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		if j.Status.Failed > 0 {
			return false, "", fmt.Errorf("job failed: %+v", j.Status)
		}
		complete := false
		for _, cond := range j.Status.Conditions {
			complete = complete || cond.Type == batchv1.JobComplete && cond.Status == corev1.ConditionTrue
		}
		return complete && j.Status.Succeeded == 1, fmt.Sprintf("job status %+v", j.Status), nil
	})
	if err != nil {
		t.Fatalf("job: %v", err)
	}
	t.Logf("job complete in %v", time.Since(start).Round(time.Millisecond))

	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + name})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 {
		t.Fatalf("job %s has %d pods, want 1", name, len(pods.Items))
	}
	p := &pods.Items[0]
	cs := statusOf(p, "work")
	if p.Status.Phase != corev1.PodSucceeded || cs == nil || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
		t.Errorf("job pod %s is %s, %s; want Succeeded, exit 0", p.Name, p.Status.Phase, describeStatus(cs))
	}
	st := onlyBerthStatus(t, c, ns, p.Name, "work")
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 0 || st.Id != criID(cs.ContainerID) {
		t.Errorf("berth's container %s: %s exit %d %s; want %s EXITED exit 0", st.Id, st.State, st.ExitCode, st.Reason, cs.ContainerID)
	}
	if out, err := c.Kubectl(ctx, "-n", ns, "logs", "job/"+name); err != nil || strings.TrimSpace(out) != "job says done" {
		t.Errorf("kubectl logs job/%s = %q, %v", name, out, err)
	}
}

// TestGracefulTermination: deleting a pod runs its preStop hook (berth's
// ExecSync), then berth sends SIGTERM, which the container traps; it
// exits 0 and the pod is gone within terminationGracePeriodSeconds. Hook
// and trap record what happens in a hostPath file (which outlives the pod)
// and on the container's stdout (berth's CRI log, read while it lasts).
func TestGracefulTermination(t *testing.T) {
	c := getCluster(t)
	dir := t.TempDir() // before the namespace: removed after it
	ns := newNamespace(t, c, "e2e-grace")
	const name, grace = "graceful", 15
	ctr := shellContainer(c, "app", `echo started >> /m/events
trap 'echo sigterm >> /m/events; echo "got SIGTERM"; sleep 1; echo exiting >> /m/events; exit 0' TERM
echo "app running"
while true; do sleep 1; done`)
	// The hook also writes to the container's stdout (PID 1's).
	ctr.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c",
		"echo prestop-start >> /m/events; echo 'prestop ran' > /proc/1/fd/1; sleep 2; echo prestop-end >> /m/events"}}}}
	p, logPath := startEventsPod(t, c, ns, name, dir, grace, ctr)

	last, log, took := deleteAndWatch(t, c, p, logPath, grace*time.Second+time.Minute)
	if took > grace*time.Second {
		t.Errorf("pod deleted after %v, more than its grace period %ds", took, grace)
	}
	if got, want := fileContent(filepath.Join(dir, "events")), "started\nprestop-start\nprestop-end\nsigterm\nexiting\n"; got != want {
		t.Errorf("events = %q, want %q: the preStop hook first, then SIGTERM", got, want)
	}
	if ok, msg := inOrder(criLogMessages(log), []string{"app running", "prestop ran", "got SIGTERM"}); !ok {
		t.Errorf("container log %s: %s", logPath, msg)
	}
	// The kubelet reports the container's end before it deletes the pod.
	if cs := statusOf(last, "app"); cs == nil || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
		t.Errorf("last status of the pod before its deletion: %s; want terminated with exit 0 (its SIGTERM trap)", describeStatus(cs))
	}
	// The kubelet removes a deleted pod's containers from berth.
	err := Poll(t.Context(), time.Minute, 500*time.Millisecond, func() (bool, string, error) {
		ctrs := berthContainers(t, c, ns, name, "")
		return len(ctrs) == 0, fmt.Sprintf("berth still has %d containers of %s", len(ctrs), name), nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestGracePeriodEnforced: a container that traps SIGTERM and goes on is
// killed when terminationGracePeriodSeconds ends (the timeout of the
// kubelet's StopContainer, after which berth must SIGKILL it): the pod is
// gone after the grace period, not before nor much later, exit 137.
func TestGracePeriodEnforced(t *testing.T) {
	c := getCluster(t)
	dir := t.TempDir() // before the namespace: removed after it
	ns := newNamespace(t, c, "e2e-grace-kill")
	const name, grace = "stubborn", 4
	ctr := shellContainer(c, "app", `echo started >> /m/events
trap 'echo sigterm >> /m/events; echo "ignoring SIGTERM"' TERM
while true; do sleep 1; done`)
	p, logPath := startEventsPod(t, c, ns, name, dir, grace, ctr)

	last, log, took := deleteAndWatch(t, c, p, logPath, grace*time.Second+time.Minute)
	if took < grace*time.Second || took > grace*time.Second+15*time.Second {
		t.Errorf("pod deleted after %v, want its grace period %ds and a little", took, grace)
	}
	if got, want := fileContent(filepath.Join(dir, "events")), "started\nsigterm\n"; got != want {
		t.Errorf("events = %q, want %q", got, want)
	}
	if ok, msg := inOrder(criLogMessages(log), []string{"ignoring SIGTERM"}); !ok {
		t.Errorf("container log %s: %s", logPath, msg)
	}
	if cs := statusOf(last, "app"); cs == nil || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 137 {
		t.Errorf("last status of the pod before its deletion: %s; want terminated with exit 137 (SIGKILL)", describeStatus(cs))
	}
}

// startEventsPod runs a pod of ctr, which writes "started" to /m/events,
// a hostPath of dir (which outlives the pod), with the grace period; waits
// until it is ready and started, and returns it and its container's log.
func startEventsPod(t *testing.T, c *Cluster, ns, name, dir string, grace int64, ctr corev1.Container) (*corev1.Pod, string) {
	t.Helper()
	ctr.VolumeMounts = []corev1.VolumeMount{{Name: "m", MountPath: "/m"}}
	createPod(t, c, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: new(grace),
			Volumes: []corev1.Volume{{Name: "m", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: dir, Type: new(corev1.HostPathDirectory)}}}},
			Containers: []corev1.Container{ctr},
		},
	})
	p := waitPodReady(t, c, ns, name)
	events := filepath.Join(dir, "events")
	if err := Poll(t.Context(), 30*time.Second, 100*time.Millisecond, func() (bool, string, error) {
		got := fileContent(events)
		return got == "started\n", fmt.Sprintf("%s: %q", events, got), nil
	}); err != nil {
		t.Fatal(err)
	}
	return p, onlyBerthStatus(t, c, p.Namespace, name, ctr.Name).LogPath
}

// deleteAndWatch deletes the pod and waits until it is gone; it returns
// the pod's last state before (never nil), the container log at logPath
// as last read while berth kept it, and how long the deletion took.
func deleteAndWatch(t *testing.T, c *Cluster, p *corev1.Pod, logPath string, timeout time.Duration) (*corev1.Pod, string, time.Duration) {
	t.Helper()
	ctx := t.Context()
	w, err := c.Client.CoreV1().Pods(p.Namespace).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + p.Name, ResourceVersion: p.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	if err := c.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete pod: %v", err)
	}
	last, log := p, ""
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("pod watch ended before the pod was deleted")
			}
			if pod, ok := ev.Object.(*corev1.Pod); ok {
				last = pod
			}
			if ev.Type == watch.Deleted {
				took := time.Since(start)
				t.Logf("pod deleted in %v", took.Round(time.Millisecond))
				if _, err := getPod(t, c, p.Namespace, p.Name); !apierrors.IsNotFound(err) {
					t.Errorf("get pod after its deletion: %v, want not found", err)
				}
				return last, log, took
			}
		case <-tick.C:
			if b, err := os.ReadFile(logPath); err == nil {
				log = string(b)
			}
		case <-deadline:
			t.Fatalf("pod not deleted after %v: %s", time.Since(start), describeStatus(statusOf(last, "app")))
		}
	}
}

// fileContent is a file's content, or the error reading it.
func fileContent(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// criLogMessages are the messages of a CRI log file's content (lines
// "<time> <stream> <tag> <message>"), in order.
func criLogMessages(content string) []string {
	var out []string
	for line := range strings.SplitSeq(strings.TrimRight(content, "\n"), "\n") {
		if f := strings.SplitN(line, " ", 4); len(f) == 4 {
			out = append(out, f[3])
		}
	}
	return out
}

// inOrder reports whether want occur in got in this order (not
// necessarily next to each other), and else which is missing.
func inOrder(got, want []string) (bool, string) {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	if i == len(want) {
		return true, ""
	}
	return false, fmt.Sprintf("%q not found in order after %q in %q", want[i], want[:i], got)
}
