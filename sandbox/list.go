package sandbox

import (
	"slices"
	"strings"
)

// Filter selects sandboxes as the CRI's PodSandboxFilter does; zero fields
// match everything.
type Filter struct {
	// IDPrefix matches a full ID or a prefix of it.
	IDPrefix string
	State    State
	Labels   map[string]string
}

func (f Filter) matches(sb *Sandbox) bool {
	if f.IDPrefix != "" && !strings.HasPrefix(sb.ID, f.IDPrefix) {
		return false
	}
	if f.State != "" && sb.State != f.State {
		return false
	}
	for k, v := range f.Labels {
		if got, ok := sb.Config.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// List returns the sandboxes that match f, oldest first.
func (m *Manager) List(f Filter) []Sandbox {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Sandbox
	for _, sb := range m.sandboxes {
		if f.matches(sb) {
			out = append(out, sb.clone())
		}
	}
	slices.SortFunc(out, func(a, b Sandbox) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}
