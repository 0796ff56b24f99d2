package cri

import (
	"os"
	"path/filepath"
	"testing"
)

// Without a berth-helper beside it, the daemon is its own helper: what it
// finds is its own executable, which serves `container-op` and `init` too.
func TestFindHelperFallsBackToOwnBinary(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(self), HelperName)); err == nil {
		t.Skipf("a %s lies beside the test binary", HelperName)
	}
	got, err := findHelper()
	if err != nil || got != self {
		t.Fatalf("findHelper() = %q, %v; want the test binary %q", got, err, self)
	}
}
