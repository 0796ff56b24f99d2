package ocispec

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const testProfile = `{
	"defaultAction": "SCMP_ACT_ERRNO",
	"architectures": ["SCMP_ARCH_X86_64"],
	"syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
}`

func TestSeccompNone(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	for _, tc := range []struct {
		name       string
		p          *Profile
		privileged bool
	}{
		{name: "unset"},
		{name: "unconfined", p: &Profile{Type: ProfileUnconfined}},
		{name: "privileged runtime default", p: &Profile{Type: ProfileRuntimeDefault}, privileged: true},
		{name: "privileged localhost", p: &Profile{Type: ProfileLocalhost, LocalhostRef: "/nonexistent"}, privileged: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			in.Container.Security.Seccomp, in.Container.Security.Privileged = tc.p, tc.privileged
			if s := mustGenerate(t, g, in).Spec.Linux.Seccomp; s != nil {
				t.Errorf("seccomp = %+v, want none", s)
			}
		})
	}
}

func TestSeccompRuntimeDefaultCached(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	in.Container.Security.Seccomp = &Profile{Type: ProfileRuntimeDefault}
	first := mustGenerate(t, g, in).Spec.Linux.Seccomp
	if first == nil || first.DefaultAction != specs.ActErrno || len(first.Syscalls) == 0 {
		t.Fatalf("runtime default = %+v, want containerd's profile", first)
	}
	if again := mustGenerate(t, g, in).Spec.Linux.Seccomp; again != first {
		t.Error("the same capabilities got a new profile, want the cached one")
	}
	// The same set in another order is the same key.
	in2 := baseInput(t)
	in2.Container.Security.Seccomp = &Profile{Type: ProfileRuntimeDefault}
	in2.Container.Security.DropCapabilities = []string{"ALL"}
	in2.Container.Security.AddCapabilities = []string{"KILL", "CHOWN"}
	in3 := in2
	in3.Container.Security.AddCapabilities = []string{"CHOWN", "KILL"}
	a, b := mustGenerate(t, g, in2).Spec.Linux.Seccomp, mustGenerate(t, g, in3).Spec.Linux.Seccomp
	if a != b || a == first {
		t.Error("cache key depends on order, or ignores the capabilities")
	}
	if g.seccompBuilds != 2 {
		t.Errorf("profiles built %d times, want 2 (one per capability set)", g.seccompBuilds)
	}

	// CAP_SYS_ADMIN opens syscalls the default profile otherwise denies.
	in.Container.Security.AddCapabilities = []string{"SYS_ADMIN"}
	admin := mustGenerate(t, g, in).Spec.Linux.Seccomp
	if !allows(admin, "mount") || allows(first, "mount") {
		t.Error("the profile does not follow the final capabilities (mount with and without CAP_SYS_ADMIN)")
	}
}

func TestSeccompConcurrent(t *testing.T) {
	g, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	in.Container.Security.Seccomp = &Profile{Type: ProfileRuntimeDefault}
	var wg sync.WaitGroup
	got := make([]*specs.LinuxSeccomp, 8)
	for i := range got {
		wg.Go(func() {
			res, err := g.Generate(in)
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = res.Spec.Linux.Seccomp
		})
	}
	wg.Wait()
	for _, p := range got {
		if p != got[0] {
			t.Fatal("concurrent Generates built separate profiles")
		}
	}
	if g.seccompBuilds != 1 {
		t.Errorf("built %d times, want once", g.seccompBuilds)
	}
}

func allows(p *specs.LinuxSeccomp, name string) bool {
	for _, s := range p.Syscalls {
		if s.Action != specs.ActAllow || len(s.Args) > 0 {
			continue
		}
		for _, n := range s.Names {
			if n == name {
				return true
			}
		}
	}
	return false
}

func TestSeccompLocalhost(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "profiles/ok.json"), testProfile)
	writeFile(t, filepath.Join(root, "profiles/bad.json"), `{"defaultAction": `)
	writeFile(t, filepath.Join(root, "profiles/badaction.json"), `{"defaultAction": "SCMP_ACT_EXPLODE"}`)
	abs := filepath.Join(root, "profiles/ok.json")
	g, _ := newTestGenerator(t, Defaults{SeccompProfileRoot: root})
	for _, ref := range []string{abs, "profiles/ok.json", "localhost/profiles/ok.json", "localhost/" + abs} {
		in := baseInput(t)
		in.Container.Security.Seccomp = &Profile{Type: ProfileLocalhost, LocalhostRef: ref}
		p := mustGenerate(t, g, in).Spec.Linux.Seccomp
		if p == nil || p.DefaultAction != specs.ActErrno || len(p.Syscalls) != 1 || p.Architectures[0] != specs.ArchX86_64 {
			t.Errorf("profile %q = %+v, want the file's", ref, p)
		}
	}
	for _, tc := range []struct {
		name  string
		ref   string
		class func(error) bool
		word  string
	}{
		{name: "missing", ref: "profiles/none.json", class: isNotFound, word: "does not exist"},
		{name: "bad JSON", ref: "profiles/bad.json", class: isInvalid, word: "not a valid JSON profile"},
		{name: "bad action", ref: "profiles/badaction.json", class: isInvalid, word: "SCMP_ACT_EXPLODE"},
		{name: "leaves the root", ref: "../etc/passwd", class: isInvalid, word: "leaves the seccomp profile root"},
		{name: "a directory", ref: "profiles", class: isInvalid, word: "not a regular file"},
		{name: "no ref", ref: "", class: isInvalid, word: "localhost_ref"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			in.Container.Security.Seccomp = &Profile{Type: ProfileLocalhost, LocalhostRef: tc.ref}
			_, err := g.Generate(in)
			wantErr(t, err, tc.class, tc.word)
		})
	}

	noRoot, _ := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	in.Container.Security.Seccomp = &Profile{Type: ProfileLocalhost, LocalhostRef: "profiles/ok.json"}
	_, err := noRoot.Generate(in)
	wantErr(t, err, isInvalid, "no seccomp profile root")
}

func TestSeccompErrors(t *testing.T) {
	g, f := newTestGenerator(t, Defaults{})
	in := baseInput(t)
	in.Container.Security.Seccomp = &Profile{Type: ProfileRuntimeDefault, LocalhostRef: "x.json"}
	_, err := g.Generate(in)
	wantErr(t, err, isInvalid, "localhost_ref")

	in.Container.Security.Seccomp = &Profile{Type: 9}
	_, err = g.Generate(in)
	wantErr(t, err, isInvalid, "unknown profile type 9")

	f.seccomp = false
	in.Container.Security.Seccomp = &Profile{Type: ProfileRuntimeDefault}
	_, err = g.Generate(in)
	wantErr(t, err, isPrecondition, "seccomp is not available")
	in.Container.Security.Seccomp = &Profile{Type: ProfileUnconfined}
	mustGenerate(t, g, in)
}

// The real probe: tests run with -tags seccomp on a seccomp kernel.
func TestSeccompProbe(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip(err)
	}
	if !realHost().seccomp() {
		t.Skip("built without -tags seccomp or no kernel seccomp")
	}
	g := NewGenerator(Defaults{})
	g.host.currentCaps = func() ([]string, error) { return fakeCaps(t), nil }
	in := baseInput(t)
	in.Container.Security.Seccomp = &Profile{Type: ProfileRuntimeDefault}
	if p := mustGenerate(t, g, in).Spec.Linux.Seccomp; p == nil || len(p.Syscalls) == 0 {
		t.Errorf("runtime default on the real host = %+v", p)
	}
}
