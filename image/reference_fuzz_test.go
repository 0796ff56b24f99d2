package image

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
)

const (
	fuzzIDA = "sha256:9f1c3c1d0b5e9a8f7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706"
	fuzzIDB = "sha256:9f1c00000b5e9a8f7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706"
)

// FuzzImageReference feeds an image reference to what PullImage,
// ImageStatus, RemoveImage, ListImages' filter and CreateContainer do with
// it: normalizeRef (PullImage's validation and the name images are
// recorded under) and the image index's lookup by reference, ID or ID
// prefix.
//
// Properties: nothing panics; a refused reference is InvalidArgument; an
// accepted one normalizes to a fully qualified name (a registry, a path,
// and a tag or a digest, never both: the digest decides) that normalizes
// to itself and reads back as a tag or a digest reference, never as an
// image ID; a lookup finds an image only by one of its names, its ID or a
// prefix of it, and otherwise answers NotFound (or InvalidArgument for an
// ambiguous ID prefix).
func FuzzImageReference(f *testing.F) {
	for _, ref := range []string{
		"busybox", "library/busybox:1.36", "docker.io/library/busybox:latest", "registry.example.com/team/app:1.2",
		"registry.example.com:5000/team/app@sha256:0d5e7c8b9a1f2e3d4c5b6a79881726354f4e3d2c1b0a9f8e7d6c5b4a39281706",
		"app:1.2@sha256:0d5e7c8b9a1f2e3d4c5b6a79881726354f4e3d2c1b0a9f8e7d6c5b4a39281706",
		"localhost/app", "[::1]:5000/app:tag", "192.168.0.1:5000/a/b/c:d",
		fuzzIDA, strings.TrimPrefix(fuzzIDA, "sha256:"), "sha256:9f1c", "9f1c", "9f1c3",
		"", " ", "UPPER/case", "app:", "app@", "app@sha256:xyz", "../../etc/passwd", "/abs/app", "app:../../x",
		"a\x00b", "ü/ö:ß", strings.Repeat("a", 300), strings.Repeat("a/", 200) + "b", "app:" + strings.Repeat("t", 200),
		"sha512:" + strings.Repeat("0", 128), "docker.io/library/sha256:" + strings.TrimPrefix(fuzzIDA, "sha256:"),
	} {
		f.Add(ref)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		named, err := normalizeRef(ref)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("normalizeRef(%s): %v is not InvalidArgument", short(ref), err)
			}
		} else {
			checkNormalized(t, ref, named)
		}

		x := newIndex()
		a := &Image{ID: fuzzIDA}
		x.add("registry.example.com/team/app:1.2", a, nil)
		x.add("registry.example.com/team/app@sha256:0d5e7c8b9a1f2e3d4c5b6a79881726354f4e3d2c1b0a9f8e7d6c5b4a39281706", a, nil)
		x.add(fuzzIDA, a, nil)
		b := &Image{ID: fuzzIDB}
		x.add("docker.io/library/busybox:latest", b, nil)
		img, err := x.resolve(ref)
		if err != nil {
			if !errdefs.IsNotFound(err) && !errdefs.IsInvalidArgument(err) {
				t.Fatalf("resolve(%s): %v is neither NotFound nor InvalidArgument", short(ref), err)
			}
			if ref == fuzzIDA || ref == fuzzIDB {
				t.Fatalf("resolve(%s) by ID: %v", ref, err)
			}
			return
		}
		byName := func(name string) bool { n, err := normalizeRef(ref); return err == nil && n.String() == name }
		names := append(append([]string{}, img.RepoTags...), img.RepoDigests...)
		idPrefix := hexPrefix.MatchString(ref) && strings.HasPrefix(img.ID, "sha256:"+strings.TrimPrefix(ref, "sha256:"))
		if ref != img.ID && !slices.ContainsFunc(names, byName) && !idPrefix {
			t.Fatalf("resolve(%s) found %s (%v), which it does not name", short(ref), img.ID, names)
		}
	})
}

// checkNormalized checks an accepted reference's normal form.
func checkNormalized(t *testing.T, ref string, named reference.Named) {
	t.Helper()
	name := named.String()
	if reference.Domain(named) == "" || reference.Path(named) == "" {
		t.Fatalf("normalizeRef(%s) = %s: no registry or path", short(ref), short(name))
	}
	_, tagged := named.(reference.Tagged)
	_, digested := named.(reference.Digested)
	if tagged == digested {
		t.Fatalf("normalizeRef(%s) = %s: tagged %v, digested %v; want exactly one", short(ref), short(name), tagged, digested)
	}
	again, err := normalizeRef(name)
	if err != nil || again.String() != name {
		t.Fatalf("normalizeRef(%s) = %s, which normalizes to %v, %v", short(ref), short(name), again, err)
	}
	switch k := classify(name); {
	case k == kindID:
		t.Fatalf("normalizeRef(%s) = %s reads back as an image ID", short(ref), short(name))
	case digested != (k == kindDigest):
		t.Fatalf("normalizeRef(%s) = %s is classified %v", short(ref), short(name), k)
	}
	if strings.ContainsAny(name, "\x00 \n") {
		t.Fatalf("normalizeRef(%s) = %s holds NUL or blanks", short(ref), short(name))
	}
}

// short quotes s, cut to a readable length (fuzzed strings can be long).
func short(s string) string {
	if len(s) > 300 {
		s = s[:150] + "..." + s[len(s)-150:]
	}
	return strconv.Quote(s)
}
