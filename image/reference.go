package image

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// hexPrefix matches what a user may type for an image ID: hex digits,
// optionally after "sha256:".
var hexPrefix = regexp.MustCompile(`^(sha256:)?[0-9a-f]{1,64}$`)

// normalizeRef turns what kubelet or a user sent into the fully qualified
// name berth records images under: "busybox" → docker.io/library/busybox:latest;
// a tag next to a digest is dropped (the digest decides what is pulled).
func normalizeRef(ref string) (reference.Named, error) {
	if strings.TrimSpace(ref) == "" {
		return nil, fmt.Errorf("%w: image reference is empty", errdefs.ErrInvalidArgument)
	}
	named, err := reference.ParseDockerRef(ref)
	if err == nil && reference.Domain(named) == "" {
		// The first component looked like a registry ("0_0.0/app") to the
		// parser's split but is none by the grammar.
		err = fmt.Errorf("%q is not a registry host name", strings.SplitN(ref, "/", 2)[0])
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %q is not a valid image reference (%v); write it like registry.example.com/team/app:1.2 or app@sha256:<digest>",
			errdefs.ErrInvalidArgument, ref, err)
	}
	return named, nil
}

// isImageID reports whether s is a full image ID (a sha256 digest).
func isImageID(s string) bool {
	d, err := digest.Parse(s)
	return err == nil && d.Algorithm() == digest.SHA256
}

// repoDigest is the repo@digest name of what the registry served for named.
func repoDigest(named reference.Named, d digest.Digest) string {
	return named.Name() + "@" + d.String()
}

// refKind classifies a record name as an image ID, a repo digest or a tag.
type refKind int

const (
	kindID refKind = iota
	kindDigest
	kindTag
)

func classify(name string) refKind {
	if isImageID(name) {
		return kindID
	}
	if named, err := reference.ParseNormalizedNamed(name); err == nil {
		if _, ok := named.(reference.Digested); ok {
			return kindDigest
		}
	}
	return kindTag
}
