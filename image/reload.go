package image

import "slices"

// Settings a running store takes on a config reload (SIGHUP). Both are read
// under s.mu, so a pull or an index update sees either the old value or the
// new one, never a mix.

// SetPinned replaces the pinned references and re-marks every image: one
// is pinned when any of its names is. Images stay where they are; only
// what kubelet's image garbage collection may remove changes.
func (s *Store) SetPinned(refs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.Pinned = slices.Clone(refs)
	pinned := s.pinnedSet()
	for _, img := range s.index.byID {
		img.Pinned = false
	}
	for name, id := range s.index.byName {
		if pinned[name] {
			s.index.byID[id].Pinned = true
		}
	}
}

// SetRegistryConfigDir makes the next pulls read their registry hosts
// (hosts.toml) from dir. Pulls already resolving keep the directory they
// started with.
func (s *Store) SetRegistryConfigDir(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.RegistryConfigDir = dir
}

func (s *Store) registryConfigDir() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.opts.RegistryConfigDir
}
