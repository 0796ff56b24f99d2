package network

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMoveCache(t *testing.T) {
	from, to := filepath.Join(t.TempDir(), "old"), filepath.Join(t.TempDir(), "new")
	if err := MoveCache(from, to); err != nil {
		t.Fatalf("no old cache: %v", err)
	}
	for name, body := range map[string]string{"results/net-a-eth0": "a", "results/net-b-eth0": "old-b"} {
		p := filepath.Join(from, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(to, "results"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(to, "results/net-b-eth0"), []byte("new-b"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := MoveCache(from, to); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"results/net-a-eth0": "a", "results/net-b-eth0": "new-b"} {
		if b, err := os.ReadFile(filepath.Join(to, name)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
	if _, err := os.Stat(from); !os.IsNotExist(err) {
		t.Fatalf("the old cache is still there: %v", err)
	}
}
