package network

import (
	"context"
	"errors"
	"fmt"
)

// ReleaseOrphans runs CNI DEL, from libcni's cache, for every cached pod
// attachment whose pod known does not recognise — a pod whose record a
// crash lost between CNI ADD and its first save, or whose teardown never
// ran — so that its address and port mappings are released. It returns the
// pods released; a failing DEL is reported and left for the next start.
func (m *Manager) ReleaseOrphans(ctx context.Context, known func(podID string) bool) ([]string, error) {
	atts, err := m.cni.GetCachedAttachments("")
	if err != nil {
		return nil, fmt.Errorf("read the CNI cache in %s: %w", m.cacheRoot(), err)
	}
	var released []string
	var errs []error
	seen := map[string]bool{}
	for _, a := range atts {
		if a.IfName != podIfName || seen[a.ContainerID] || known(a.ContainerID) {
			continue
		}
		seen[a.ContainerID] = true
		if err := m.Teardown(ctx, Attachment{PodID: a.ContainerID}); err != nil {
			errs = append(errs, fmt.Errorf("release the network of unknown pod %s: %w", a.ContainerID, err))
			continue
		}
		released = append(released, a.ContainerID)
	}
	return released, errors.Join(errs...)
}
