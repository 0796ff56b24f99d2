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
