package sandbox

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-runtime/berth/sandbox/ocispec"
)

// parseLabels reads fuzzed labels: "key=value" lines; a line without "="
// is a key with an empty value.
func parseLabels(s string) map[string]string {
	if s == "" {
		return nil
	}
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		k, v, _ := strings.Cut(line, "=")
		out[k] = v
	}
	return out
}

// FuzzLabelSelector lists fuzzed pod sandboxes and containers (their
// labels, a filter's label selector, ID prefix and state fuzzed) as
// ListPodSandbox, ListContainers and the stats RPCs do.
//
// Properties: nothing panics; a label selector selects exactly the items
// that carry every one of its labels with the same value (the CRI's
// MatchLabels, ANDed), together with the ID prefix and state; an empty
// selector selects all; a container still being created is never listed;
// sandboxes come oldest first; listing changes no item's labels.
func FuzzLabelSelector(f *testing.F) {
	kubelet := "io.kubernetes.pod.name=web-7c5ddbdf54-x2x9k\nio.kubernetes.pod.namespace=default\n" +
		"io.kubernetes.pod.uid=0b1f5c7e-3f1a-4c55-9a57-2f1c2ad1c0de\napp=web"
	for _, s := range []struct {
		a, b, c, sel, id string
		state            byte
	}{
		{kubelet, "app=db\nio.kubernetes.pod.namespace=default", "", "io.kubernetes.pod.namespace=default", "", 0},
		{kubelet, "app=db", "app=web", "app=web\nio.kubernetes.pod.name=web-7c5ddbdf54-x2x9k", "", 1},
		{kubelet, "", "", "", "", 0},
		{kubelet, "app=", "app", "app=", "a", 2},
		{kubelet, "a=b", "a=b=c", "a=b=c", "b", 3},
		{"", "", "", "=", "", 0},
		{"\x00=\x00", "ü=ö\nk=\u202e", strings.Repeat("k", 5000) + "=v", "\x00=\x00\nü=ö", "\x00", 1},
		{kubelet, kubelet, kubelet, kubelet + "\nextra=1", "aaaa", 0},
	} {
		f.Add(s.a, s.b, s.c, s.sel, s.id, s.state)
	}
	f.Fuzz(func(t *testing.T, a, b, c, sel, idPrefix string, state byte) {
		m := &Manager{sandboxes: map[string]*Sandbox{}, containers: map[string]*containerEntry{}}
		now := time.Now()
		pods := []*Sandbox{
			{ID: "aaaa1111", State: StateReady, CreatedAt: now.Add(2 * time.Second), Config: Config{Labels: parseLabels(a)}},
			{ID: "aabb2222", State: StateNotReady, CreatedAt: now, Config: Config{Labels: parseLabels(b)}},
			{ID: "bbbb3333", State: StateReady, CreatedAt: now.Add(time.Second), Config: Config{Labels: parseLabels(c)}},
		}
		ctrStates := []ContainerState{ContainerRunning, ContainerExited, ContainerCreated, ContainerCreating}
		var ctrs []*Container
		for i, sb := range append(pods, pods[0]) {
			m.sandboxes[sb.ID] = sb
			ctr := &Container{
				ID: "c" + strings.Repeat(string(rune('0'+i)), 7), SandboxID: sb.ID, State: ctrStates[i], CreatedAt: sb.CreatedAt,
				Config: ContainerConfig{Spec: ocispec.Container{Labels: sb.Config.Labels}},
			}
			ctrs = append(ctrs, ctr)
			m.containers[ctr.ID] = newContainerEntry(ctr, ctr.ID)
		}
		before := make([]map[string]string, len(pods))
		for i, sb := range pods {
			before[i] = maps.Clone(sb.Config.Labels)
		}
		selector := parseLabels(sel)
		selects := func(labels map[string]string) bool {
			for k, v := range selector {
				if got, ok := labels[k]; !ok || got != v {
					return false
				}
			}
			return true
		}

		podState := []State{"", StateReady, StateNotReady}[int(state)%3]
		var want []string
		for _, sb := range pods {
			if strings.HasPrefix(sb.ID, idPrefix) && (podState == "" || sb.State == podState) && selects(sb.Config.Labels) {
				want = append(want, sb.ID)
			}
		}
		var got []string
		listed := m.List(Filter{IDPrefix: idPrefix, State: podState, Labels: selector})
		for i, sb := range listed {
			got = append(got, sb.ID)
			if i > 0 && sb.CreatedAt.Before(listed[i-1].CreatedAt) {
				t.Fatal("sandboxes are not listed oldest first")
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("List(prefix %q, state %q, labels %q) = %v, want %v", idPrefix, podState, selector, got, want)
		}
		if len(selector) == 0 && idPrefix == "" && podState == "" && len(listed) != len(pods) {
			t.Fatalf("an empty filter listed %d of %d sandboxes", len(listed), len(pods))
		}

		ctrState := []ContainerState{"", ContainerRunning, ContainerExited, ContainerCreated}[int(state)%4]
		want, got = nil, nil
		for _, ctr := range ctrs {
			if ctr.State != ContainerCreating && strings.HasPrefix(ctr.ID, idPrefix) && (ctrState == "" || ctr.State == ctrState) && selects(ctr.Config.Spec.Labels) {
				want = append(want, ctr.ID)
			}
		}
		for _, ctr := range m.ListContainers(ContainerFilter{ID: idPrefix, State: ctrState, Labels: selector}) {
			if ctr.State == ContainerCreating {
				t.Fatalf("container %s is listed while being created", ctr.ID)
			}
			got = append(got, ctr.ID)
		}
		// By pod: the pod ID prefix selects too.
		for _, ctr := range m.ListContainers(ContainerFilter{SandboxID: idPrefix, Labels: selector}) {
			if !strings.HasPrefix(ctr.SandboxID, idPrefix) || !selects(ctr.Config.Spec.Labels) {
				t.Fatalf("container %s of pod %s listed for pod prefix %q, labels %q", ctr.ID, ctr.SandboxID, idPrefix, selector)
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("ListContainers(prefix %q, state %q, labels %q) = %v, want %v", idPrefix, ctrState, selector, got, want)
		}
		for i, sb := range pods {
			if !maps.Equal(sb.Config.Labels, before[i]) {
				t.Fatal("listing changed a sandbox's labels")
			}
		}
	})
}
