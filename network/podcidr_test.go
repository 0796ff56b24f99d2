package network

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

func TestPodCIDRsPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "network", "pod-cidrs.json")
	s := OpenPodCIDRs(context.Background(), path, slog.New(slog.DiscardHandler))
	if len(s.Get()) != 0 {
		t.Fatalf("fresh store has %v", s.Get())
	}
	if err := s.Set(context.Background(), "10.244.1.0/24, fd00:10:244:1::/64"); err != nil {
		t.Fatal(err)
	}
	reopened := OpenPodCIDRs(context.Background(), path, slog.New(slog.DiscardHandler))
	got := reopened.Get()
	if len(got) != 2 || got[0].String() != "10.244.1.0/24" || got[1].String() != "fd00:10:244:1::/64" {
		t.Fatalf("reopened store has %v", got)
	}
	// Empty is ignored, as kubelet never means "forget the CIDR".
	if err := s.Set(context.Background(), ""); err != nil || len(s.Get()) != 2 {
		t.Fatalf("empty Set changed the store: %v %v", err, s.Get())
	}
}

func TestPodCIDRsRejectBadInputAndKeepOld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pod-cidrs.json")
	s := OpenPodCIDRs(context.Background(), path, slog.New(slog.DiscardHandler))
	if err := s.Set(context.Background(), "10.1.0.0/16"); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	for _, bad := range []string{"10.1.0.0", "10.1.0.1/16", "10.1.0.0/16,10.2.0.0/16", "fd00::/64,fd01::/64", "banana", "10.1.0.0/16,"} {
		if err := s.Set(context.Background(), bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Set(%q) = %v, want InvalidArgument", bad, err)
		}
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) || s.Get()[0].String() != "10.1.0.0/16" {
		t.Fatalf("rejected input changed the stored CIDRs: %s -> %s", before, after)
	}
}

func TestPodCIDRsCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pod-cidrs.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := OpenPodCIDRs(context.Background(), path, slog.New(slog.DiscardHandler))
	if len(s.Get()) != 0 {
		t.Fatalf("corrupt file yielded %v", s.Get())
	}
	if err := s.Set(context.Background(), "10.9.0.0/16"); err != nil {
		t.Fatalf("store unusable after a corrupt file: %v", err)
	}
}
