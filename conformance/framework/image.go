package framework

import (
	"archive/tar"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BusyboxPath is the host binary every built image is made of.
const BusyboxPath = "/bin/busybox"

// DefaultPath is the PATH put into an image's Env when ImageSpec.Env is empty.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Users and groups present in every built image's /etc/passwd and /etc/group.
const (
	TestUser     = "berthuser" // uid TestUID, primary group TestGID
	TestUID      = 1000
	TestGID      = 1000
	ExtraGroup   = "extra" // supplementary group of TestUser
	ExtraGID     = 2000
	NobodyUID    = 65534
	NobodyGID    = 65534
	passwdFile   = "root:x:0:0:root:/root:/bin/sh\n" + TestUser + ":x:1000:1000:berth test user:/home/" + TestUser + ":/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	groupFile    = "root:x:0:\n" + TestUser + ":x:1000:\n" + ExtraGroup + ":x:2000:" + TestUser + "\nnobody:x:65534:\n"
	layerCreator = "berth-test-framework"
)

// imageTime is the fixed creation time of images and the mtime of every
// layer entry, so that the same ImageSpec always yields the same digests.
var imageTime = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)

// ImageSpec describes an image for BuildImage. The zero value is a valid
// single-layer, gzip-compressed OCI busybox image for linux/GOARCH.
type ImageSpec struct {
	Entrypoint []string
	Cmd        []string
	User       string
	// Env defaults to []string{DefaultPath} when empty.
	Env        []string
	WorkingDir string
	Labels     map[string]string
	StopSignal string

	// Files are extra filesystem entries. With Layers >= 2 they are put in
	// their own layer(s) on top of the busybox base; with a single layer
	// they are merged into it (replacing base entries with the same path).
	Files []File

	// Layers is the total number of layers (0 means 1). The busybox base
	// and the extra files are spread over this many layers: files get
	// min(len(Files), Layers-1) layers, the base the rest. A base spread
	// over two layers is "skeleton (dirs, /etc files)" + "busybox and its
	// applet hard links"; further base layers each add one small file
	// /etc/berth-layer-N so that every layer has a distinct digest.
	// Hard links always live in the same layer as /bin/busybox.
	Layers int

	// Compression is "gzip" (default), "zstd" or "none" (uncompressed
	// tar layers with the ...layer.v1.tar / ...rootfs.diff.tar media type).
	Compression string

	// DockerMediaTypes selects Docker schema 2 manifest, config and layer
	// media types instead of OCI ones. Docker has no zstd layer type, so
	// zstd layers keep the OCI zstd media type.
	DockerMediaTypes bool

	// Platform is "os/arch[/variant]" recorded in the config (default
	// "linux/"+runtime.GOARCH). The content is always the host busybox;
	// this only exists so BuildIndex can get per-platform digests and
	// matching configs.
	Platform string
}

// File is an extra filesystem entry of an image.
type File struct {
	// Path is the path inside the image; a leading "/" is optional.
	Path    string
	Content []byte
	// Mode holds the permission bits plus optionally os.ModeSetuid,
	// os.ModeSetgid and os.ModeSticky. Zero means 0644 for files, 0755
	// for directories and 0777 for symlinks.
	Mode os.FileMode
	// Dir makes the entry a directory (Content must be empty).
	Dir bool
	// Link makes the entry a symlink pointing at Link.
	Link     string
	UID, GID int
}

// busyboxBase is the host busybox binary and its applet names, read once.
type busyboxBase struct {
	binary  []byte
	applets []string // sorted, without "busybox"
}

var loadBusybox = sync.OnceValues(func() (*busyboxBase, error) {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("reading busybox: %w", err)
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", BusyboxPath, err)
	}
	var applets []string
	for _, name := range strings.Fields(string(out)) {
		if name == "busybox" || strings.Contains(name, "/") {
			continue
		}
		applets = append(applets, name)
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("%s --list returned no applets", BusyboxPath)
	}
	slices.Sort(applets)
	applets = slices.Compact(applets)
	return &busyboxBase{binary: bin, applets: applets}, nil
})

// entry is one tar entry of a layer being built.
type entry struct {
	hdr  tar.Header
	data []byte
}

// rank orders entries within a layer: directories (so parents come before
// children), then regular files, then symlinks, then hard links (which must
// come after their targets).
func (e *entry) rank() int {
	switch e.hdr.Typeflag {
	case tar.TypeDir:
		return 0
	case tar.TypeReg:
		return 1
	case tar.TypeSymlink:
		return 2
	default:
		return 3
	}
}

func dirEntry(name string, mode int64, uid, gid int) *entry {
	return &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: gid}}
}

func fileEntry(name string, mode int64, data []byte) *entry {
	return &entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, data: data}
}

// path is the clean relative path of an entry (no trailing slash).
func (e *entry) path() string { return strings.TrimSuffix(e.hdr.Name, "/") }

// baseDirs are the directories of the skeleton, with their modes.
type baseDir struct {
	name     string
	mode     int64
	uid, gid int
}

var baseDirs = []baseDir{
	{"bin", 0o755, 0, 0},
	{"dev", 0o755, 0, 0},
	{"etc", 0o755, 0, 0},
	{"home", 0o755, 0, 0},
	{"home/" + TestUser, 0o755, TestUID, TestGID},
	{"proc", 0o555, 0, 0},
	{"root", 0o700, 0, 0},
	{"sbin", 0o755, 0, 0},
	{"sys", 0o555, 0, 0},
	{"tmp", 0o1777, 0, 0},
	{"usr", 0o755, 0, 0},
	{"usr/bin", 0o755, 0, 0},
	{"var", 0o755, 0, 0},
}

func isBaseDir(p string) bool {
	return slices.ContainsFunc(baseDirs, func(d baseDir) bool { return d.name == p })
}

func skeletonEntries() []*entry {
	var es []*entry
	for _, d := range baseDirs {
		es = append(es, dirEntry(d.name, d.mode, d.uid, d.gid))
	}
	es = append(es,
		fileEntry("etc/passwd", 0o644, []byte(passwdFile)),
		fileEntry("etc/group", 0o644, []byte(groupFile)),
	)
	return es
}

func busyboxEntries(bb *busyboxBase) []*entry {
	es := []*entry{
		dirEntry("bin", 0o755, 0, 0),
		fileEntry("bin/busybox", 0o755, bb.binary),
	}
	for _, a := range bb.applets {
		es = append(es, &entry{hdr: tar.Header{
			Typeflag: tar.TypeLink,
			Name:     "bin/" + a,
			Linkname: "bin/busybox",
			Mode:     0o755,
		}})
	}
	return es
}

// tarMode converts an os.FileMode to tar header mode bits.
func tarMode(m, def os.FileMode) int64 {
	if m&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky) == 0 {
		m = def
	}
	mode := int64(m.Perm())
	if m&os.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// cleanPath turns a user supplied image path into a clean relative one.
func cleanPath(p string) (string, error) {
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	if c == "" || c == "." {
		return "", fmt.Errorf("invalid path %q", p)
	}
	return c, nil
}

func userEntries(files []File) ([]*entry, error) {
	var es []*entry
	seen := map[string]bool{}
	for _, f := range files {
		p, err := cleanPath(f.Path)
		if err != nil {
			return nil, err
		}
		if seen[p] {
			return nil, fmt.Errorf("duplicate file %q", f.Path)
		}
		seen[p] = true
		isDir := f.Dir || f.Mode.IsDir()
		var e *entry
		switch {
		case isDir && (f.Link != "" || len(f.Content) > 0):
			return nil, fmt.Errorf("file %q: a directory cannot have Link or Content", f.Path)
		case f.Link != "" && len(f.Content) > 0:
			return nil, fmt.Errorf("file %q: a symlink cannot have Content", f.Path)
		case isDir:
			e = dirEntry(p, tarMode(f.Mode, 0o755), f.UID, f.GID)
		case f.Link != "":
			e = &entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: p, Linkname: f.Link, Mode: tarMode(f.Mode, 0o777), Uid: f.UID, Gid: f.GID}}
		default:
			e = fileEntry(p, tarMode(f.Mode, 0o644), bytes.Clone(f.Content))
			e.hdr.Uid, e.hdr.Gid = f.UID, f.GID
		}
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b *entry) int { return strings.Compare(a.path(), b.path()) })
	return es, nil
}

// addParents adds directory entries (0755 root) for ancestors of the
// entries in es that are neither base directories nor explicitly listed
// anywhere in explicit.
func addParents(es []*entry, explicit map[string]bool) []*entry {
	have := map[string]bool{}
	for _, e := range es {
		have[e.path()] = true
	}
	out := slices.Clone(es) // es may be a sub-slice of a larger list
	for _, e := range es {
		for d := path.Dir(e.path()); d != "." && d != "/"; d = path.Dir(d) {
			if have[d] || explicit[d] || isBaseDir(d) {
				continue
			}
			have[d] = true
			out = append(out, dirEntry(d, 0o755, 0, 0))
		}
	}
	return out
}

// merge combines entry lists into one without duplicate paths; for the
// same path, the entry from the later list wins.
func merge(lists ...[]*entry) []*entry {
	idx := map[string]int{}
	var out []*entry
	for _, l := range lists {
		for _, e := range l {
			if i, ok := idx[e.path()]; ok {
				out[i] = e
				continue
			}
			idx[e.path()] = len(out)
			out = append(out, e)
		}
	}
	return out
}

// writeTar serializes entries deterministically.
func writeTar(es []*entry) ([]byte, error) {
	es = slices.Clone(es)
	slices.SortStableFunc(es, func(a, b *entry) int {
		return cmp.Or(cmp.Compare(a.rank(), b.rank()), strings.Compare(a.path(), b.path()))
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := e.hdr
		h.ModTime = imageTime
		h.Format = tar.FormatPAX
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("tar data %s: %w", h.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// layerPlan is the content of each layer plus a history description.
type layerPlan struct {
	entries   []*entry
	createdBy string
}

func planLayers(spec ImageSpec, bb *busyboxBase) ([]layerPlan, error) {
	n := spec.Layers
	if n < 0 {
		return nil, fmt.Errorf("Layers must be >= 0, got %d", n)
	}
	if n == 0 {
		n = 1
	}
	user, err := userEntries(spec.Files)
	if err != nil {
		return nil, err
	}
	explicit := map[string]bool{}
	for _, e := range user {
		explicit[e.path()] = true
	}

	if n == 1 {
		all := merge(skeletonEntries(), busyboxEntries(bb), addParents(user, explicit))
		return []layerPlan{{entries: all, createdBy: layerCreator + ": busybox base + files"}}, nil
	}

	fileLayers := min(len(user), n-1)
	baseLayers := n - fileLayers
	var plans []layerPlan
	if baseLayers == 1 {
		plans = append(plans, layerPlan{entries: merge(skeletonEntries(), busyboxEntries(bb)), createdBy: layerCreator + ": busybox base"})
	} else {
		plans = append(plans,
			layerPlan{entries: skeletonEntries(), createdBy: layerCreator + ": skeleton"},
			layerPlan{entries: busyboxEntries(bb), createdBy: layerCreator + ": busybox"},
		)
		for i := 3; i <= baseLayers; i++ {
			name := fmt.Sprintf("etc/berth-layer-%d", i)
			plans = append(plans, layerPlan{
				entries:   []*entry{fileEntry(name, 0o644, fmt.Appendf(nil, "%d\n", i))},
				createdBy: fmt.Sprintf("%s: filler %d", layerCreator, i),
			})
		}
	}
	for i := range fileLayers {
		chunk := user[i*len(user)/fileLayers : (i+1)*len(user)/fileLayers]
		plans = append(plans, layerPlan{
			entries:   addParents(chunk, explicit),
			createdBy: fmt.Sprintf("%s: files %d/%d", layerCreator, i+1, fileLayers),
		})
	}
	return plans, nil
}

// makeLayer turns an uncompressed tar into a layer of the wanted kind.
func makeLayer(tarData []byte, compressionName string, docker bool) (v1.Layer, error) {
	opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tarData)), nil }
	switch compressionName {
	case "", "gzip":
		mt := types.OCILayer
		if docker {
			mt = types.DockerLayer
		}
		return tarball.LayerFromOpener(opener, tarball.WithCompression(compression.GZip), tarball.WithMediaType(mt), tarball.WithCompressedCaching)
	case "zstd":
		return tarball.LayerFromOpener(opener, tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd), tarball.WithCompressedCaching)
	case "none":
		// tarball.WithCompression(compression.None) silently falls back
		// to gzip, so uncompressed layers are static layers whose digest
		// is their diff ID.
		mt := types.OCIUncompressedLayer
		if docker {
			mt = types.DockerUncompressedLayer
		}
		return static.NewLayer(tarData, mt), nil
	default:
		return nil, fmt.Errorf("unknown compression %q (want gzip, zstd or none)", compressionName)
	}
}

// BuildImage builds a busybox image according to spec. Building the same
// spec twice yields the same digests.
func BuildImage(spec ImageSpec) (v1.Image, error) {
	bb, err := loadBusybox()
	if err != nil {
		return nil, err
	}
	platform := &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if spec.Platform != "" {
		if platform, err = v1.ParsePlatform(spec.Platform); err != nil {
			return nil, err
		}
		if platform.OS == "" || platform.Architecture == "" {
			return nil, fmt.Errorf("platform %q: want os/arch[/variant]", spec.Platform)
		}
	}
	plans, err := planLayers(spec, bb)
	if err != nil {
		return nil, err
	}

	env := spec.Env
	if len(env) == 0 {
		env = []string{DefaultPath}
	}
	cfg := &v1.ConfigFile{
		Architecture: platform.Architecture,
		OS:           platform.OS,
		OSVersion:    platform.OSVersion,
		Variant:      platform.Variant,
		Created:      v1.Time{Time: imageTime},
		Config: v1.Config{
			Entrypoint: slices.Clone(spec.Entrypoint),
			Cmd:        slices.Clone(spec.Cmd),
			User:       spec.User,
			Env:        slices.Clone(env),
			WorkingDir: spec.WorkingDir,
			Labels:     maps.Clone(spec.Labels),
			StopSignal: spec.StopSignal,
		},
		RootFS: v1.RootFS{Type: "layers"},
	}

	manifestMT, configMT := types.OCIManifestSchema1, types.OCIConfigJSON
	if spec.DockerMediaTypes {
		manifestMT, configMT = types.DockerManifestSchema2, types.DockerConfigJSON
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, manifestMT), configMT)
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return nil, err
	}

	adds := make([]mutate.Addendum, 0, len(plans))
	for _, p := range plans {
		data, err := writeTar(p.entries)
		if err != nil {
			return nil, err
		}
		l, err := makeLayer(data, spec.Compression, spec.DockerMediaTypes)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.Addendum{
			Layer:   l,
			History: v1.History{Created: v1.Time{Time: imageTime}, CreatedBy: p.createdBy},
		})
	}
	return mutate.Append(img, adds...)
}

// MustBuildImage is BuildImage that fails the test on error.
func MustBuildImage(t testing.TB, spec ImageSpec) v1.Image {
	t.Helper()
	img, err := BuildImage(spec)
	if err != nil {
		t.Fatalf("BuildImage: %v", err)
	}
	return img
}

// BuildIndex builds a multi-platform index from images keyed by platform
// ("linux/amd64", "linux/arm64/v8", ...). Manifests are ordered by platform
// string. The index is a Docker manifest list when every image uses Docker
// media types, an OCI image index otherwise. The platform in each
// descriptor comes from the key; build the images with a matching
// ImageSpec.Platform so their configs agree.
func BuildIndex(images map[string]v1.Image) (v1.ImageIndex, error) {
	if len(images) == 0 {
		return nil, errors.New("BuildIndex: no images")
	}
	keys := slices.Sorted(maps.Keys(images))
	allDocker := true
	adds := make([]mutate.IndexAddendum, 0, len(keys))
	for _, k := range keys {
		p, err := v1.ParsePlatform(k)
		if err != nil {
			return nil, err
		}
		if p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("platform %q: want os/arch[/variant]", k)
		}
		img := images[k]
		mt, err := img.MediaType()
		if err != nil {
			return nil, err
		}
		if mt != types.DockerManifestSchema2 {
			allDocker = false
		}
		adds = append(adds, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{MediaType: mt, Platform: p},
		})
	}
	idxMT := types.OCIImageIndex
	if allDocker {
		idxMT = types.DockerManifestList
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, idxMT), adds...), nil
}
