package e2e

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// probeTimeout is long: on a busy machine an exec takes seconds, and a
// probe that times out fails.
const probeTimeout = 10

// livenessScript is a container that numbers its instances with a counter
// kept in an emptyDir (which outlives restarts) and says so, becomes
// healthy (setup), turns unhealthy after three seconds (breakHealth) and
// obeys SIGTERM, saying so on stdout.
func livenessScript(setup, breakHealth string) string {
	return `n=$(( $(cat /state/n 2>/dev/null || echo 0) + 1 )); echo $n > /state/n
` + setup + `
echo "instance $n started"
trap 'echo "instance $n got SIGTERM"; exit 0' TERM
i=0
while true; do
  sleep 1; i=$((i+1))
  if [ $i = 3 ]; then ` + breakHealth + `; echo "instance $n unhealthy"; fi
done`
}

// TestLivenessExecProbeRestarts: an exec liveness probe (berth's ExecSync)
// that starts failing makes the kubelet restart the container, again and
// again; `kubectl logs --previous` shows the instance before.
func TestLivenessExecProbeRestarts(t *testing.T) {
	testLivenessRestarts(t, "liveness-exec",
		livenessScript("touch /tmp/healthy", "rm /tmp/healthy"),
		corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/healthy"}}},
		"can't open '/tmp/healthy'")
}

// TestLivenessHTTPProbeRestarts: the same with an HTTP liveness probe
// (the kubelet GETs busybox httpd on the pod's IP, through berth's pod
// network), which starts failing with 404.
func TestLivenessHTTPProbeRestarts(t *testing.T) {
	testLivenessRestarts(t, "liveness-http",
		livenessScript("mkdir -p /www && echo ok > /www/healthz && httpd -p 8080 -h /www", "rm /www/healthz"),
		corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
		"statuscode: 404")
}

// livenessSnapshot is one consistent look at a restarting container.
type livenessSnapshot struct {
	restarts  int32
	status    corev1.ContainerStatus
	cur, prev string                  // kubectl logs, kubectl logs --previous
	berth     []*runtimeapi.Container // berth's containers of the pod
}

// testLivenessRestarts runs script with a liveness probe, which must fail
// saying failure (in the kubelet's Unhealthy event).
func testLivenessRestarts(t *testing.T, name, script string, handler corev1.ProbeHandler, failure string) {
	c := getCluster(t)
	ctx := t.Context()
	ns := newNamespace(t, c, "e2e-"+name)
	ctr := shellContainer(c, "app", script)
	ctr.VolumeMounts = []corev1.VolumeMount{{Name: "state", MountPath: "/state"}}
	ctr.LivenessProbe = &corev1.Probe{ProbeHandler: handler, InitialDelaySeconds: 1, PeriodSeconds: 1, FailureThreshold: 1, TimeoutSeconds: probeTimeout}
	start := time.Now()
	createPod(t, c, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: gracePeriod(),
			Volumes:                       []corev1.Volume{{Name: "state", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			Containers:                    []corev1.Container{ctr},
		},
	})
	// Restarts: right after the first failure, 10s after the second
	// (the kubelet's crash loop back-off).
	waitPod(t, c, ns, name, 3*time.Minute, func(p *corev1.Pod) (bool, string) {
		cs := statusOf(p, "app")
		return cs != nil && cs.RestartCount >= 2 && cs.State.Running != nil, describeStatus(cs)
	})
	t.Logf("restarted twice in %v", time.Since(start).Round(time.Millisecond))

	// Logs, previous logs and berth's containers, all of the same restart.
	var s livenessSnapshot
	err := Poll(ctx, time.Minute, 500*time.Millisecond, func() (bool, string, error) {
		p, err := getPod(t, c, ns, name)
		if err != nil {
			return false, "", err
		}
		cs := statusOf(p, "app")
		if cs == nil || cs.State.Running == nil {
			return false, describeStatus(cs), nil
		}
		s = livenessSnapshot{restarts: cs.RestartCount, status: *cs}
		if s.cur, err = c.Kubectl(ctx, "-n", ns, "logs", name, "-c", "app"); err != nil {
			return false, err.Error(), nil
		}
		if s.prev, err = c.Kubectl(ctx, "-n", ns, "logs", "--previous", name, "-c", "app"); err != nil {
			return false, err.Error(), nil
		}
		if !strings.Contains(s.cur, fmt.Sprintf("instance %d started", cs.RestartCount+1)) {
			return false, fmt.Sprintf("after %d restarts, kubectl logs = %q", cs.RestartCount, s.cur), nil // not written yet?
		}
		s.berth = berthContainers(t, c, ns, name, "app")
		p, err = getPod(t, c, ns, name)
		if err != nil {
			return false, "", err
		}
		after := statusOf(p, "app")
		same := after != nil && after.RestartCount == cs.RestartCount && after.ContainerID == cs.ContainerID && after.State.Running != nil
		return same, "container restarted while looking: " + describeStatus(after), nil
	})
	if err != nil {
		t.Fatalf("logs of %s: %v", name, err)
	}
	r := s.restarts
	if strings.Contains(s.cur, fmt.Sprintf("instance %d ", r)) {
		t.Errorf("kubectl logs after %d restarts = %q, want instance %d only", r, s.cur, r+1)
	}
	for _, want := range []string{"started", "unhealthy", "got SIGTERM"} {
		if want = fmt.Sprintf("instance %d %s", r, want); !strings.Contains(s.prev, want) {
			t.Errorf("kubectl logs --previous after %d restarts = %q, want a line %q", r, s.prev, want)
		}
	}
	if x := s.status.LastTerminationState.Terminated; x == nil || x.ExitCode != 0 {
		t.Errorf("last state of the container = %+v, want terminated with exit 0 (its SIGTERM trap)", s.status.LastTerminationState)
	}

	// berth: the running container is attempt r; the one before, attempt
	// r-1, exited 0 after SIGTERM, and its log is the previous log.
	var running, previous *runtimeapi.Container
	for _, ctr := range s.berth {
		switch {
		case ctr.State == runtimeapi.ContainerState_CONTAINER_RUNNING:
			if running != nil {
				t.Errorf("berth runs two containers app: %v", s.berth)
			}
			running = ctr
		case ctr.Metadata.GetAttempt() == uint32(r-1):
			previous = ctr
		}
	}
	if running == nil || running.Id != criID(s.status.ContainerID) || running.Metadata.GetAttempt() != uint32(r) {
		t.Errorf("berth's running container app = %v, want %s attempt %d (all: %v)", running, s.status.ContainerID, r, s.berth)
	}
	if previous == nil {
		t.Errorf("berth has no container app of attempt %d: %v", r-1, s.berth)
	} else {
		st := berthStatus(t, c, previous.Id)
		if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 0 {
			t.Errorf("berth's previous container %s: %s exit %d %s, want EXITED 0", st.Id, st.State, st.ExitCode, st.Reason)
		}
		b, err := os.ReadFile(st.LogPath)
		if want := fmt.Sprintf(" stdout F instance %d got SIGTERM\n", r); err != nil || !strings.Contains(string(b), want) {
			t.Errorf("log %s of berth's previous container = %q, %v; want %q", st.LogPath, b, err, want)
		}
	}
	// The restarts were the liveness probe's doing, failing as it should.
	err = Poll(ctx, 30*time.Second, 500*time.Millisecond, func() (bool, string, error) {
		evs, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name + ",reason=Unhealthy"})
		if err != nil {
			return false, "", err
		}
		var msgs []string
		for _, e := range evs.Items {
			msgs = append(msgs, e.Message)
		}
		found := slices.ContainsFunc(msgs, func(m string) bool {
			return strings.HasPrefix(m, "Liveness probe failed") && strings.Contains(m, failure)
		})
		return found, fmt.Sprintf("no Unhealthy event 'Liveness probe failed: ...%s...': %q", failure, msgs), nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestReadinessGatesEndpoints: a Service's EndpointSlice lists the pod as
// a ready endpoint only while its readiness probe (berth's ExecSync)
// passes, toggled by creating and removing the file the probe reads,
// through berth's ExecSync and through kubectl exec.
func TestReadinessGatesEndpoints(t *testing.T) {
	c := getCluster(t)
	ctx := t.Context()
	ns := newNamespace(t, c, "e2e-readiness")
	const name = "gated"
	labels := map[string]string{"app": name}
	_, err := c.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}
	ctr := shellContainer(c, "app", loopCommand("up")[2])
	ctr.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/ready"}}},
		PeriodSeconds: 1, FailureThreshold: 1, SuccessThreshold: 1, TimeoutSeconds: probeTimeout,
	}
	createPod(t, c, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec:       corev1.PodSpec{TerminationGracePeriodSeconds: gracePeriod(), Containers: []corev1.Container{ctr}},
	})
	// Running, probed, not ready: the endpoint is listed as not ready (or
	// not at all).
	p := waitPod(t, c, ns, name, 2*time.Minute, func(p *corev1.Pod) (bool, string) {
		cs := statusOf(p, "app")
		return p.Status.PodIP != "" && cs != nil && cs.State.Running != nil && cs.Started != nil && *cs.Started, describeStatus(cs)
	})
	id := criID(statusOf(p, "app").ContainerID)
	waitReadiness(t, c, ns, name, p.Status.PodIP, false, true)

	toggles := []struct {
		how   string
		ready bool
		do    func()
	}{
		{"touch /tmp/ready through berth's ExecSync", true, func() { execInBerth(t, c, id, "touch", "/tmp/ready") }},
		{"rm /tmp/ready through kubectl exec", false, func() { kubectlExec(t, c, ns, name, "rm", "/tmp/ready") }},
		{"touch /tmp/ready through kubectl exec", true, func() { kubectlExec(t, c, ns, name, "touch", "/tmp/ready") }},
	}
	for _, tg := range toggles {
		start := time.Now()
		tg.do()
		waitReadiness(t, c, ns, name, p.Status.PodIP, tg.ready, false)
		t.Logf("%s: ready=%v in the pod and its endpoint after %v", tg.how, tg.ready, time.Since(start).Round(time.Millisecond))
	}
}

// kubectlExec runs a command in a pod's only container with kubectl exec.
func kubectlExec(t *testing.T, c *Cluster, ns, pod string, cmd ...string) {
	t.Helper()
	if _, err := c.Kubectl(t.Context(), append([]string{"-n", ns, "exec", pod, "--"}, cmd...)...); err != nil {
		t.Fatal(err)
	}
}

// waitReadiness waits until the pod's Ready condition is ready and the
// service's EndpointSlices list ip as a ready endpoint exactly when ready
// is true; with mustList, also until they list ip at all.
func waitReadiness(t *testing.T, c *Cluster, ns, svc, ip string, ready, mustList bool) {
	t.Helper()
	ctx := t.Context()
	err := Poll(ctx, time.Minute, 250*time.Millisecond, func() (bool, string, error) {
		p, err := getPod(t, c, ns, svc)
		if err != nil {
			return false, "", err
		}
		podReady := false
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady {
				podReady = cond.Status == corev1.ConditionTrue
			}
		}
		list, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
		if err != nil {
			return false, "", err
		}
		listed, epReady := false, false
		var eps []string
		for _, s := range list.Items {
			for _, ep := range s.Endpoints {
				r := ep.Conditions.Ready != nil && *ep.Conditions.Ready
				eps = append(eps, fmt.Sprintf("%v ready=%v", ep.Addresses, r))
				for _, a := range ep.Addresses {
					if a == ip {
						listed = true
						epReady = epReady || r
					}
				}
			}
		}
		done := podReady == ready && epReady == ready && (listed || !mustList)
		return done, fmt.Sprintf("pod Ready=%v, endpoints of %s: %v (pod IP %s)", podReady, svc, eps, ip), nil
	})
	if err != nil {
		t.Fatalf("readiness %v: %v", ready, err)
	}
}
