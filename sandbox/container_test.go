package sandbox

import (
	"log/slog"
	"testing"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/berth-runtime/berth/sandbox/ocispec"
	"github.com/containerd/errdefs"
)

func TestCleanLogPath(t *testing.T) {
	for in, want := range map[string]string{"": "", "c/0.log": "c/0.log", "c//./0.log": "c/0.log"} {
		if got, err := cleanLogPath(in); err != nil || got != want {
			t.Errorf("cleanLogPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"/abs/0.log", "../escape.log", "c/../../x.log"} {
		if _, err := cleanLogPath(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("cleanLogPath(%q) = %v, want InvalidArgument", bad, err)
		}
	}
}

func TestContainerCgroup(t *testing.T) {
	p, st := containerCgroup(CgroupState{Driver: DriverCgroupfs, Path: "/kubepods/pod1"}, "abc")
	if p != "/kubepods/pod1/abc" || st.Path != p || st.Owned {
		t.Errorf("cgroupfs: %q %+v", p, st)
	}
	p, st = containerCgroup(CgroupState{Driver: DriverSystemd, Path: "/kubepods.slice/kubepods-pod1.slice"}, "abc")
	if p != "kubepods-pod1.slice:berth:abc" || st.Path != "/kubepods.slice/kubepods-pod1.slice/berth-abc.scope" {
		t.Errorf("systemd: %q %+v", p, st)
	}
}

func TestSetExitReasons(t *testing.T) {
	at := time.Now()
	for _, tc := range []struct {
		exit   monitorapi.Exit
		reason string
	}{
		{monitorapi.Exit{Code: 0, FinishedAt: at}, ReasonCompleted},
		{monitorapi.Exit{Code: 3, FinishedAt: at}, ReasonError},
		{monitorapi.Exit{Code: 137, Signal: 9, FinishedAt: at}, ReasonError},
		{monitorapi.Exit{Code: 137, Signal: 9, OOMKilled: true, FinishedAt: at}, ReasonOOMKilled},
	} {
		c := &Container{State: ContainerRunning}
		setExit(c, tc.exit)
		if c.State != ContainerExited || c.Reason != tc.reason || c.ExitCode != int32(tc.exit.Code) || !c.FinishedAt.Equal(at) {
			t.Errorf("exit %+v: %+v, want reason %s", tc.exit, c, tc.reason)
		}
	}
}

func TestContainerFilter(t *testing.T) {
	c := &Container{ID: "abcdef", SandboxID: "pod123", State: ContainerRunning,
		Config: ContainerConfig{Spec: ocispec.Container{Labels: map[string]string{"app": "x"}}}}
	for _, tc := range []struct {
		f    ContainerFilter
		want bool
	}{
		{ContainerFilter{}, true},
		{ContainerFilter{ID: "abc"}, true},
		{ContainerFilter{ID: "abd"}, false},
		{ContainerFilter{SandboxID: "pod123"}, true},
		{ContainerFilter{SandboxID: "pod9"}, false},
		{ContainerFilter{State: ContainerRunning}, true},
		{ContainerFilter{State: ContainerExited}, false},
		{ContainerFilter{Labels: map[string]string{"app": "x"}}, true},
		{ContainerFilter{Labels: map[string]string{"app": "y"}}, false},
	} {
		if got := tc.f.matches(c); got != tc.want {
			t.Errorf("%+v matches = %v, want %v", tc.f, got, tc.want)
		}
	}
	c.State = ContainerCreating
	if (ContainerFilter{}).matches(c) {
		t.Error("a container being created is listed")
	}
}

func TestEventBusDropsSlowSubscribers(t *testing.T) {
	m := &Manager{log: discardLogger()}
	fast, cancelFast := m.Subscribe()
	defer cancelFast()
	slow, cancelSlow := m.Subscribe()
	defer cancelSlow()
	for i := 0; i < eventBufferSize+1; i++ {
		m.publish(Event{Type: EventContainerStarted, ContainerID: "c"})
		<-fast
	}
	n := 0
	for range slow {
		n++
	}
	if n != eventBufferSize {
		t.Fatalf("slow subscriber got %d events before being dropped, want %d", n, eventBufferSize)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// One started event per container, before its stopped one, whoever sees the
// start first: here the monitor reports the exit of a container whose start
// was never recorded (it exited at once), so both events come from it.
func TestMonitorReportsAnUnseenStartBeforeTheExit(t *testing.T) {
	dir := t.TempDir()
	m := &Manager{
		log:        discardLogger(),
		containers: map[string]*containerEntry{},
		ctrRecords: recordStore[Container, *Container]{dir: dir},
	}
	c := &Container{ID: "c", SandboxID: "pod", State: ContainerCreated, Dir: dir}
	m.containers["c"] = newContainerEntry(c, "name")
	events, cancel := m.Subscribe()
	defer cancel()
	started := time.Now()
	m.applyMonitorState("pod", monitorapi.State{ID: "c", Status: monitorapi.StatusStopped, StartedAt: started,
		Exit: &monitorapi.Exit{Code: 0, FinishedAt: started.Add(time.Millisecond)}})
	m.applyMonitorState("pod", monitorapi.State{ID: "c", Status: monitorapi.StatusStopped, StartedAt: started,
		Exit: &monitorapi.Exit{Code: 0, FinishedAt: started.Add(time.Millisecond)}})
	var got []EventType
	for len(got) < 2 {
		got = append(got, (<-events).Type)
	}
	select {
	case ev := <-events:
		t.Fatalf("a third event: %+v", ev)
	default:
	}
	if got[0] != EventContainerStarted || got[1] != EventContainerStopped {
		t.Fatalf("events %v, want started then stopped", got)
	}
}
