package ocispec

import (
	"slices"
	"testing"
)

func TestMaskedPaths(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	tm, err := g.template()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                     string
		masked, readonly         []string
		privileged               bool
		wantMasked, wantReadonly []string
	}{
		{name: "unset: containerd's defaults", wantMasked: tm.maskedPaths, wantReadonly: tm.readonlyPaths},
		{name: "explicit", masked: []string{"/proc/x"}, readonly: []string{"/proc/y"}, wantMasked: []string{"/proc/x"}, wantReadonly: []string{"/proc/y"}},
		{name: "explicitly empty (procMount Unmasked)", masked: []string{}, readonly: []string{}, wantMasked: []string{}, wantReadonly: []string{}},
		{name: "privileged: none", privileged: true, masked: []string{"/proc/x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			sc := &in.Container.Security
			sc.MaskedPaths, sc.ReadonlyPaths, sc.Privileged = tc.masked, tc.readonly, tc.privileged
			l := mustGenerate(t, g, in).Spec.Linux
			if !slices.Equal(l.MaskedPaths, tc.wantMasked) || !slices.Equal(l.ReadonlyPaths, tc.wantReadonly) {
				t.Errorf("masked %v readonly %v; want %v %v", l.MaskedPaths, l.ReadonlyPaths, tc.wantMasked, tc.wantReadonly)
			}
			if tc.wantMasked != nil && l.MaskedPaths == nil {
				t.Error("masked paths are nil, want a list")
			}
		})
	}
	if !slices.Contains(tm.maskedPaths, "/proc/kcore") {
		t.Errorf("containerd's masked paths %v lack /proc/kcore", tm.maskedPaths)
	}
}

func TestAppArmorDisabled(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{AppArmorEnabled: false})
	for _, p := range []*Profile{nil, {Type: ProfileRuntimeDefault}, {Type: ProfileUnconfined}} {
		in := baseInput(t)
		in.Container.Security.AppArmor = p
		if got := mustGenerate(t, g, in).Spec.Process.ApparmorProfile; got != "" {
			t.Errorf("profile %+v: apparmor %q, want none", p, got)
		}
	}
	in := baseInput(t)
	in.Container.Security.AppArmor = &Profile{Type: ProfileLocalhost, LocalhostRef: "my-profile"}
	_, err := g.Generate(in)
	wantErr(t, err, isPrecondition, "AppArmor is not enabled on this host")
}

func TestAppArmorEnabled(t *testing.T) {
	g, f := newTestGenerator(t, Defaults{AppArmorEnabled: true})
	f.apparmorLoaded = map[string]bool{"my-profile": true}
	for _, tc := range []struct {
		name       string
		p          *Profile
		privileged bool
		want       string
	}{
		{name: "unset is the runtime default", want: appArmorDefaultProfile},
		{name: "runtime default", p: &Profile{Type: ProfileRuntimeDefault}, want: appArmorDefaultProfile},
		{name: "privileged runtime default: none", p: &Profile{Type: ProfileRuntimeDefault}, privileged: true, want: ""},
		{name: "unconfined", p: &Profile{Type: ProfileUnconfined}, want: ""},
		{name: "localhost", p: &Profile{Type: ProfileLocalhost, LocalhostRef: "my-profile"}, want: "my-profile"},
		{name: "localhost/ prefix", p: &Profile{Type: ProfileLocalhost, LocalhostRef: "localhost/my-profile"}, want: "my-profile"},
		{name: "localhost for a privileged container", p: &Profile{Type: ProfileLocalhost, LocalhostRef: "my-profile"}, privileged: true, want: "my-profile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			in.Container.Security.AppArmor, in.Container.Security.Privileged = tc.p, tc.privileged
			if got := mustGenerate(t, g, in).Spec.Process.ApparmorProfile; got != tc.want {
				t.Errorf("apparmor = %q, want %q", got, tc.want)
			}
		})
	}
	if f.apparmorLoads != 1 {
		t.Errorf("default profile loaded %d times, want once", f.apparmorLoads)
	}

	in := baseInput(t)
	in.Container.Security.AppArmor = &Profile{Type: ProfileLocalhost, LocalhostRef: "missing"}
	_, err := g.Generate(in)
	wantErr(t, err, isNotFound, `"missing"`, "not loaded")

	in.Container.Security.AppArmor = &Profile{Type: ProfileRuntimeDefault, LocalhostRef: "x"}
	_, err = g.Generate(in)
	wantErr(t, err, isInvalid, "localhost_ref")

	in.Container.Security.AppArmor = &Profile{Type: ProfileLocalhost}
	_, err = g.Generate(in)
	wantErr(t, err, isInvalid, "localhost_ref")
}
