package ocispec

import (
	"slices"
	"testing"
)

// containerdDefaultCaps is containerd's default set, in its order.
var containerdDefaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

func TestCapabilities(t *testing.T) {
	g, f := newTestGenerator(t, Defaults{})
	without := func(caps []string, drop ...string) []string {
		return slices.DeleteFunc(slices.Clone(caps), func(c string) bool { return slices.Contains(drop, c) })
	}
	for _, tc := range []struct {
		name           string
		add, drop, amb []string
		privileged     bool
		want           []string
		wantAmbient    []string
		sorted         bool // compare as sets (host caps come in map order here)
	}{
		{name: "default", want: containerdDefaultCaps},
		{name: "add without prefix", add: []string{"sys_admin"}, want: append(slices.Clone(containerdDefaultCaps), "CAP_SYS_ADMIN")},
		{name: "add with prefix, twice", add: []string{"CAP_NET_ADMIN", "NET_ADMIN"}, want: append(slices.Clone(containerdDefaultCaps), "CAP_NET_ADMIN")},
		{name: "add a default one changes nothing", add: []string{"CHOWN"}, want: containerdDefaultCaps},
		{name: "drop with and without prefix", drop: []string{"NET_RAW", "CAP_mknod"}, want: without(containerdDefaultCaps, "CAP_NET_RAW", "CAP_MKNOD")},
		{name: "drop ALL", drop: []string{"ALL"}, want: nil},
		{name: "drop all (lower case) then add back", drop: []string{"all"}, add: []string{"NET_BIND_SERVICE"}, want: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "add ALL", add: []string{"ALL"}, want: f.caps, sorted: true},
		{name: "add ALL drop one", add: []string{"ALL"}, drop: []string{"SYS_ADMIN"}, want: without(f.caps, "CAP_SYS_ADMIN"), sorted: true},
		{name: "drop wins over add", add: []string{"SYS_TIME"}, drop: []string{"SYS_TIME"}, want: containerdDefaultCaps},
		{name: "privileged gets what berth holds, ignoring drop", privileged: true, drop: []string{"ALL"}, want: f.caps, sorted: true},
		{
			name: "ambient joins every set", drop: []string{"ALL"}, amb: []string{"net_bind_service"},
			want: []string{"CAP_NET_BIND_SERVICE"}, wantAmbient: []string{"CAP_NET_BIND_SERVICE"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			sc := &in.Container.Security
			sc.AddCapabilities, sc.DropCapabilities, sc.AddAmbientCapabilities, sc.Privileged = tc.add, tc.drop, tc.amb, tc.privileged
			caps := mustGenerate(t, g, in).Spec.Process.Capabilities
			got, want := caps.Bounding, tc.want
			if tc.sorted {
				got, want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
			}
			if !slices.Equal(got, want) {
				t.Errorf("bounding = %v\nwant       %v", got, want)
			}
			if !slices.Equal(caps.Effective, caps.Bounding) || !slices.Equal(caps.Permitted, caps.Bounding) {
				t.Errorf("effective %v / permitted %v differ from bounding %v", caps.Effective, caps.Permitted, caps.Bounding)
			}
			if !slices.Equal(caps.Ambient, tc.wantAmbient) || !slices.Equal(caps.Inheritable, tc.wantAmbient) {
				t.Errorf("ambient %v, inheritable %v; want both %v", caps.Ambient, caps.Inheritable, tc.wantAmbient)
			}
			if slices.Contains(caps.Bounding, "CAP_SYS_RESOURCE") {
				t.Error("got CAP_SYS_RESOURCE, which the fake berth does not hold")
			}
		})
	}
}

func TestCapabilityErrors(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	for _, tc := range []struct {
		name           string
		add, drop, amb []string
		class          func(error) bool
		words          []string
	}{
		{name: "unknown add", add: []string{"FLY"}, class: isInvalid, words: []string{"capabilities.add", `"FLY"`}},
		{name: "unknown drop", drop: []string{"CAP_FLY"}, class: isInvalid, words: []string{"capabilities.drop", `"CAP_FLY"`}},
		{name: "unknown ambient", amb: []string{"nope"}, class: isInvalid, words: []string{"capabilities.add_ambient"}},
		{name: "ambient ALL", amb: []string{"ALL"}, class: isInvalid, words: []string{"ALL"}},
		{name: "add one berth lacks", add: []string{"SYS_RESOURCE"}, class: isPrecondition, words: []string{"CAP_SYS_RESOURCE", "does not hold"}},
		{name: "ambient one berth lacks", amb: []string{"SYS_RESOURCE"}, class: isPrecondition, words: []string{"CAP_SYS_RESOURCE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			sc := &in.Container.Security
			sc.AddCapabilities, sc.DropCapabilities, sc.AddAmbientCapabilities = tc.add, tc.drop, tc.amb
			_, err := g.Generate(in)
			wantErr(t, err, tc.class, tc.words...)
		})
	}
}

func TestCapabilitiesNotShared(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	a := mustGenerate(t, g, in).Spec.Process.Capabilities
	a.Bounding[0] = "CAP_CHANGED"
	b := mustGenerate(t, g, in).Spec.Process.Capabilities
	if b.Bounding[0] != "CAP_CHOWN" {
		t.Errorf("a spec's capabilities alias the defaults: got %q", b.Bounding[0])
	}
}
