package monitor_test

import (
	"testing"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
)

func TestEvents(t *testing.T) {
	integration(t)
	p := newPod(t, makeRootfs(t))
	ctx := testCtx(t)

	first := p.subscribe()
	p.run("short", []string{"true"}, ctrOpts{})
	started := first.waitEvent(t, monitorapi.EventStarted, "short")
	exited := first.waitEvent(t, monitorapi.EventExited, "short")
	if started.State.Status != monitorapi.StatusRunning || started.State.StartedAt.IsZero() {
		t.Errorf("started event: %+v", started)
	}
	if exited.State.Status != monitorapi.StatusStopped || exited.State.Exit == nil || exited.State.Exit.Code != 0 {
		t.Errorf("exited event: %+v", exited)
	}
	evs := first.snapshot()
	if len(evs) != 2 || evs[0].Type != monitorapi.EventStarted || evs[1].Type != monitorapi.EventExited {
		t.Fatalf("events: %+v", evs)
	}

	p.run("long", []string{"sleep", "1000"}, ctrOpts{})
	first.waitEvent(t, monitorapi.EventStarted, "long")
	if _, err := p.client.Create(ctx, "created", p.bundle("created", []string{"true"}, ctrOpts{})); err != nil {
		t.Fatal(err)
	}

	// A subscriber that (re)connects gets the current state first: the
	// exited and the running container, not the created one.
	second := p.subscribe()
	second.waitEvent(t, monitorapi.EventExited, "short")
	second.waitEvent(t, monitorapi.EventStarted, "long")
	if evs := second.snapshot(); len(evs) != 2 {
		t.Fatalf("initial events: %+v", evs)
	}

	// Both get what happens next.
	if err := p.client.Kill(ctx, "long", 9, false); err != nil {
		t.Fatal(err)
	}
	for _, l := range []*eventLog{first, second} {
		ev := l.waitEvent(t, monitorapi.EventExited, "long")
		if ev.State.Exit == nil || ev.State.Exit.Code != 137 {
			t.Errorf("exited event of long: %+v", ev)
		}
	}

	// A subscriber that hung up is released.
	first.cancel()
	<-first.done
	if _, err := p.client.Start(ctx, "created"); err != nil {
		t.Fatal(err)
	}
	second.waitEvent(t, monitorapi.EventStarted, "created")
}
