package image

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// Remove deletes the image that refOrID (tag, digest reference, ID or ID
// prefix) names, with all its tags and digests — what kubelet's image GC
// expects — and collects its content and snapshots. An image that is not
// present is already removed: that is success. Snapshots that containers
// were created from stay until those containers are gone.
func (s *Store) Remove(ctx context.Context, refOrID string) error {
	ctx = namespaces.WithNamespace(ctx, Namespace)
	s.mu.Lock()
	img, err := s.index.resolve(refOrID)
	if errdefs.IsNotFound(err) {
		s.mu.Unlock()
		return nil
	}
	if err != nil {
		s.mu.Unlock()
		return err
	}
	for _, name := range s.index.names(img.ID) {
		if err := s.images.Delete(ctx, name); err != nil && !errdefs.IsNotFound(err) {
			s.mu.Unlock()
			return fmt.Errorf("remove image record %s: %w", name, err)
		}
		s.index.removeName(name)
	}
	s.mu.Unlock()
	s.log.InfoContext(ctx, "removed image", "id", img.ID, "tags", img.RepoTags)
	return s.collectGarbage(ctx)
}
