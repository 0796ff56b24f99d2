package image

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is what berth knows of one image: everything the CRI reports,
// derived from the image's records, manifest and config.
type Image struct {
	// ID is the digest of the image config, as kubelet expects.
	ID          string
	RepoTags    []string
	RepoDigests []string
	// Size is the compressed size of manifest, config and layers.
	Size uint64
	// UID is the numeric user of the image config (nil if it names a user
	// or has none); Username the user name when it is not numeric.
	UID      *int64
	Username string
	Pinned   bool
	// Annotations are the manifest's annotations.
	Annotations map[string]string
	// ChainID names the top committed snapshot of the image's layers.
	ChainID string
	Config  ocispec.Image
	// Target is the descriptor the records point at (index or manifest).
	Target ocispec.Descriptor
}

// index is the in-memory view of the image records, by ID and by name.
type index struct {
	byID   map[string]*Image
	byName map[string]string
}

func newIndex() *index {
	return &index{byID: map[string]*Image{}, byName: map[string]string{}}
}

// reindex rebuilds the index from the metadata store. A record that cannot
// be read back (its content is gone) is logged and skipped, not fatal.
func (s *Store) reindex(ctx context.Context) error {
	recs, err := s.images.List(ctx)
	if err != nil {
		return fmt.Errorf("list image records: %w", err)
	}
	idx := newIndex()
	for _, rec := range recs {
		img, err := s.describe(ctx, rec)
		if err != nil {
			s.log.WarnContext(ctx, "skipping unreadable image record", "name", rec.Name, "error", err)
			continue
		}
		idx.add(rec.Name, img, s.pinnedSet())
	}
	s.mu.Lock()
	s.index = idx
	s.mu.Unlock()
	return nil
}

// describe reads an image record's manifest and config for this platform.
func (s *Store) describe(ctx context.Context, rec images.Image) (*Image, error) {
	manifest, err := images.Manifest(ctx, s.content, rec.Target, s.platform)
	if err != nil {
		return nil, fmt.Errorf("read manifest of %s: %w", rec.Name, err)
	}
	cfg, err := readJSON[ocispec.Image](ctx, s.content, manifest.Config)
	if err != nil {
		return nil, fmt.Errorf("read config of %s: %w", rec.Name, err)
	}
	size, err := rec.Size(ctx, s.content, s.platform)
	if err != nil {
		return nil, fmt.Errorf("size of %s: %w", rec.Name, err)
	}
	img := &Image{
		ID:          manifest.Config.Digest.String(),
		Size:        uint64(size),
		Annotations: manifest.Annotations,
		ChainID:     identity.ChainID(cfg.RootFS.DiffIDs).String(),
		Config:      cfg,
		Target:      rec.Target,
	}
	img.UID, img.Username = userOf(cfg.Config.User)
	return img, nil
}

// userOf splits an image config's User ("uid", "name", "uid:gid") as kubelet
// reads it: a numeric user is a UID, anything else a user name.
func userOf(user string) (*int64, string) {
	user, _, _ = strings.Cut(user, ":")
	if user == "" {
		return nil, ""
	}
	if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
		return &uid, ""
	}
	return nil, user
}

// add records that name refers to img (merging with an existing entry).
func (x *index) add(name string, img *Image, pinned map[string]bool) {
	if old, ok := x.byName[name]; ok && old != img.ID {
		x.removeName(name) // a tag that moved to another image
	}
	entry, ok := x.byID[img.ID]
	if !ok {
		entry = img
		entry.RepoTags, entry.RepoDigests = nil, nil
		x.byID[img.ID] = entry
	}
	x.byName[name] = img.ID
	switch classify(name) {
	case kindTag:
		if !slices.Contains(entry.RepoTags, name) {
			entry.RepoTags = append(entry.RepoTags, name)
			slices.Sort(entry.RepoTags)
		}
	case kindDigest:
		if !slices.Contains(entry.RepoDigests, name) {
			entry.RepoDigests = append(entry.RepoDigests, name)
			slices.Sort(entry.RepoDigests)
		}
	}
	entry.Pinned = entry.Pinned || pinned[name]
}

// removeName forgets one name; an image left with no name is forgotten.
func (x *index) removeName(name string) {
	id, ok := x.byName[name]
	if !ok {
		return
	}
	delete(x.byName, name)
	entry := x.byID[id]
	entry.RepoTags = slices.DeleteFunc(entry.RepoTags, func(n string) bool { return n == name })
	entry.RepoDigests = slices.DeleteFunc(entry.RepoDigests, func(n string) bool { return n == name })
	for _, target := range x.byName {
		if target == id {
			return
		}
	}
	delete(x.byID, id)
}

// names returns every record name that refers to id.
func (x *index) names(id string) []string {
	var out []string
	for name, target := range x.byName {
		if target == id {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// resolve finds the image a reference or ID (or unambiguous ID prefix) names.
func (x *index) resolve(refOrID string) (*Image, error) {
	if isImageID(refOrID) {
		if img, ok := x.byID[refOrID]; ok {
			return img, nil
		}
		return nil, fmt.Errorf("%w: no image with ID %s", errdefs.ErrNotFound, refOrID)
	}
	if named, err := normalizeRef(refOrID); err == nil {
		if id, ok := x.byName[named.String()]; ok {
			return x.byID[id], nil
		}
	}
	if hexPrefix.MatchString(refOrID) {
		prefix := refOrID
		if !strings.HasPrefix(prefix, "sha256:") {
			prefix = "sha256:" + prefix
		}
		var found *Image
		for id, img := range x.byID {
			if strings.HasPrefix(id, prefix) {
				if found != nil {
					return nil, fmt.Errorf("%w: image ID prefix %q matches more than one image; give more digits", errdefs.ErrInvalidArgument, refOrID)
				}
				found = img
			}
		}
		if found != nil {
			return found, nil
		}
	}
	return nil, fmt.Errorf("%w: image %q is not present on this node", errdefs.ErrNotFound, refOrID)
}

// Get returns the image a tag, digest reference, ID or unambiguous ID
// prefix names; errdefs.ErrNotFound if there is none.
func (s *Store) Get(ctx context.Context, refOrID string) (Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	img, err := s.index.resolve(refOrID)
	if err != nil {
		return Image{}, err
	}
	return img.clone(), nil
}

// List returns every image.
func (s *Store) List(ctx context.Context) []Image {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Image, 0, len(s.index.byID))
	for _, img := range s.index.byID {
		out = append(out, img.clone())
	}
	slices.SortFunc(out, func(a, b Image) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// clone copies the slices callers might keep, so the index stays private.
func (img *Image) clone() Image {
	c := *img
	c.RepoTags = slices.Clone(img.RepoTags)
	c.RepoDigests = slices.Clone(img.RepoDigests)
	return c
}

// pinnedSet is the configured pinned references, normalized.
func (s *Store) pinnedSet() map[string]bool {
	set := map[string]bool{}
	for _, ref := range s.opts.Pinned {
		if named, err := normalizeRef(ref); err == nil {
			set[named.String()] = true
		}
	}
	return set
}
