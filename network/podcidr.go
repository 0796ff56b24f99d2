package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/berth-runtime/berth/internal/atomicfile"
	"github.com/containerd/errdefs"
)

// PodCIDRs keeps the pod CIDRs kubelet sends with UpdateRuntimeConfig
// (node.spec.podCIDRs). They are persisted so that pods started before
// kubelet repeats the call after a restart still get addresses from the range.
type PodCIDRs struct {
	path string

	mu    sync.RWMutex
	cidrs []netip.Prefix
}

type podCIDRFile struct {
	PodCIDRs []string `json:"pod_cidrs"`
}

// OpenPodCIDRs loads the persisted CIDRs from path, if any. A file that
// cannot be read back is logged and set aside rather than failing the daemon:
// kubelet sends the CIDRs again when it connects.
func OpenPodCIDRs(ctx context.Context, path string, log *slog.Logger) *PodCIDRs {
	s := &PodCIDRs{path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s
	}
	var f podCIDRFile
	if err == nil {
		err = json.Unmarshal(data, &f)
	}
	var cidrs []netip.Prefix
	if err == nil {
		cidrs, err = parseCIDRs(strings.Join(f.PodCIDRs, ","))
	}
	if err != nil {
		log.WarnContext(ctx, "ignoring unreadable pod CIDR file; kubelet will send the CIDRs again", "path", path, "error", err)
		return s
	}
	s.cidrs = cidrs
	return s
}

// Set replaces the pod CIDRs with a comma-separated list (one per IP family,
// as kubelet sends them) and persists them before returning. An empty list is
// ignored, as containerd does: kubelet only calls with a CIDR set.
func (s *PodCIDRs) Set(ctx context.Context, list string) error {
	if strings.TrimSpace(list) == "" {
		return nil
	}
	cidrs, err := parseCIDRs(list)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := podCIDRFile{}
	for _, c := range cidrs {
		f.PodCIDRs = append(f.PodCIDRs, c.String())
	}
	data, _ := json.Marshal(f)
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("store pod CIDRs: %w", err)
	}
	if err := atomicfile.WriteFile(s.path, data, 0o600); err != nil {
		return fmt.Errorf("store pod CIDRs: %w", err)
	}
	s.cidrs = cidrs
	return nil
}

// Get returns the current pod CIDRs (nil until kubelet sends them).
func (s *PodCIDRs) Get() []netip.Prefix {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]netip.Prefix(nil), s.cidrs...)
}

func parseCIDRs(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	seen := map[bool]bool{} // by "is IPv4"
	for _, part := range strings.Split(list, ",") {
		part = strings.TrimSpace(part)
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("%w: pod CIDR %q is not a CIDR such as 10.244.0.0/24 or fd00:10:244::/64", errdefs.ErrInvalidArgument, part)
		}
		if p.Masked() != p {
			return nil, fmt.Errorf("%w: pod CIDR %q has host bits set; did you mean %s?", errdefs.ErrInvalidArgument, part, p.Masked())
		}
		v4 := p.Addr().Is4()
		if seen[v4] {
			return nil, fmt.Errorf("%w: pod CIDRs %q name two ranges of the same IP family; give at most one IPv4 and one IPv6", errdefs.ErrInvalidArgument, list)
		}
		seen[v4] = true
		out = append(out, p)
	}
	return out, nil
}
