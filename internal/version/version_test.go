package version

import (
	"runtime"
	"testing"
)

func TestComponentsNameBerthAndGo(t *testing.T) {
	c := Components()
	if len(c) < 2 || c[0].Name != "berth" || c[0].Version != Berth() || c[1].Name != "go" || c[1].Version != runtime.Version() {
		t.Fatalf("components %v", c)
	}
	for _, comp := range c {
		if comp.Version == "" {
			t.Errorf("%s has no version", comp.Name)
		}
	}
}

func TestBerthPrefersLinkerVersion(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v9.9.9-test"
	if got := Berth(); got != "v9.9.9-test" {
		t.Fatalf("Berth() = %q, want the -ldflags version", got)
	}
}

// Whatever the build was stamped with, Berth() is a semantic version, as
// the CRI asks of runtime_version and kubelet parses it.
func TestBerthIsAlwaysSemantic(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	for stamped, want := range map[string]string{
		"v1.2.3":             "v1.2.3",
		"1.2.3-rc.1+build.5": "1.2.3-rc.1+build.5",
		"1807a43-dirty":      "0.0.0-dev+1807a43-dirty",
		"v0.3.0-4-g1807a43":  "v0.3.0-4-g1807a43",
		"devel":              "0.0.0-dev+devel",
		"feature/x_y..z":     "0.0.0-dev+feature-x-y.z",
		"01.2.3":             "0.0.0-dev+01.2.3",
		"...":                "0.0.0-dev",
	} {
		Version = stamped
		got := Berth()
		if got != want {
			t.Errorf("stamped %q: Berth() = %q, want %q", stamped, got, want)
		}
		if !semVer.MatchString(got) {
			t.Errorf("stamped %q: Berth() = %q is not a semantic version", stamped, got)
		}
	}
}
