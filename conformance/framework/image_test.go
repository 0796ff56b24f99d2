package framework

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// tarEntry is a header and, for regular files, the content.
type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

// readLayer returns the entries of a layer's uncompressed tar in order.
func readLayer(t *testing.T, l v1.Layer) []tarEntry {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatalf("Uncompressed: %v", err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var out []tarEntry
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading layer tar: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s: %v", h.Name, err)
		}
		out = append(out, tarEntry{hdr: h, data: data})
	}
}

func entriesByName(es []tarEntry) map[string]tarEntry {
	m := map[string]tarEntry{}
	for _, e := range es {
		m[strings.TrimSuffix(e.hdr.Name, "/")] = e
	}
	return m
}

// checkLayerInvariants checks that a layer's tar is well ordered: hard
// links point at a regular file earlier in the same layer, parents of
// entries come before them (when present) and mtimes are fixed.
func checkLayerInvariants(t *testing.T, es []tarEntry) {
	t.Helper()
	seen := map[string]byte{}
	for _, e := range es {
		name := strings.TrimSuffix(e.hdr.Name, "/")
		if strings.HasPrefix(name, "/") || strings.Contains(name, "..") {
			t.Errorf("bad entry name %q", e.hdr.Name)
		}
		if !e.hdr.ModTime.Equal(imageTime) {
			t.Errorf("%s: mtime %v, want %v", name, e.hdr.ModTime, imageTime)
		}
		if e.hdr.Typeflag == tar.TypeLink && seen[e.hdr.Linkname] != tar.TypeReg {
			t.Errorf("hard link %s -> %s: target not earlier in the same layer", name, e.hdr.Linkname)
		}
		if _, dup := seen[name]; dup {
			t.Errorf("duplicate entry %s", name)
		}
		seen[name] = e.hdr.Typeflag
	}
}

func mustBuild(t *testing.T, spec ImageSpec) v1.Image {
	t.Helper()
	img, err := BuildImage(spec)
	if err != nil {
		t.Fatalf("BuildImage(%+v): %v", spec, err)
	}
	return img
}

func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("Digest: %v", err)
	}
	return d
}

func TestBuildImageBaseContent(t *testing.T) {
	t.Parallel()
	bb, err := loadBusybox()
	if err != nil {
		t.Fatal(err)
	}
	img := mustBuild(t, ImageSpec{})
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("got %d layers, want 1", len(layers))
	}
	es := readLayer(t, layers[0])
	checkLayerInvariants(t, es)
	m := entriesByName(es)

	host, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	bin := m["bin/busybox"]
	if bin.hdr == nil || bin.hdr.Typeflag != tar.TypeReg || bin.hdr.Mode != 0o755 || !bytes.Equal(bin.data, host) {
		t.Fatalf("bin/busybox entry wrong: %+v", bin.hdr)
	}
	for _, a := range append([]string{"sh", "ls", "cat", "sleep", "id"}, bb.applets...) {
		e := m["bin/"+a]
		if e.hdr == nil {
			t.Errorf("applet %s missing", a)
			continue
		}
		if e.hdr.Typeflag != tar.TypeLink || e.hdr.Linkname != "bin/busybox" {
			t.Errorf("bin/%s: type %c link %q, want hard link to bin/busybox", a, e.hdr.Typeflag, e.hdr.Linkname)
		}
	}
	dirs := map[string]int64{
		"etc": 0o755, "tmp": 0o1777, "proc": 0o555, "sys": 0o555, "dev": 0o755,
		"root": 0o700, "home": 0o755, "var": 0o755, "usr/bin": 0o755, "sbin": 0o755, "bin": 0o755,
	}
	for d, mode := range dirs {
		e := m[d]
		if e.hdr == nil || e.hdr.Typeflag != tar.TypeDir || e.hdr.Mode != mode {
			t.Errorf("dir %s: got %+v, want dir mode %o", d, e.hdr, mode)
		}
	}
	if h := m["home/berthuser"].hdr; h == nil || h.Uid != TestUID || h.Gid != TestGID {
		t.Errorf("home/berthuser: %+v", h)
	}
	passwd := string(m["etc/passwd"].data)
	for _, want := range []string{"root:x:0:0:", "nobody:x:65534:65534:", "berthuser:x:1000:1000:"} {
		if !strings.Contains(passwd, "\n"+want) && !strings.HasPrefix(passwd, want) {
			t.Errorf("/etc/passwd lacks %q:\n%s", want, passwd)
		}
	}
	group := string(m["etc/group"].data)
	for _, want := range []string{"root:x:0:", "nobody:x:65534:", "berthuser:x:1000:", "extra:x:2000:berthuser"} {
		if !strings.Contains(group, want) {
			t.Errorf("/etc/group lacks %q:\n%s", want, group)
		}
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if !slices.Equal(cf.Config.Env, []string{DefaultPath}) {
		t.Errorf("default env %q", cf.Config.Env)
	}
	if !cf.Created.Time.Equal(imageTime) {
		t.Errorf("created %v", cf.Created)
	}
}

func TestBuildImageDeterministic(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"gzip", "zstd", "none"} {
		t.Run(c, func(t *testing.T) {
			spec := ImageSpec{
				Cmd:         []string{"sh"},
				Labels:      map[string]string{"a": "1", "b": "2", "c": "3"},
				Files:       []File{{Path: "/x/y", Content: []byte("y")}, {Path: "/a", Content: []byte("a")}},
				Layers:      3,
				Compression: c,
			}
			d1, d2 := digestOf(t, mustBuild(t, spec)), digestOf(t, mustBuild(t, spec))
			if d1 != d2 {
				t.Fatalf("same spec, different digests %s %s", d1, d2)
			}
			spec.Cmd = []string{"true"}
			if d3 := digestOf(t, mustBuild(t, spec)); d3 == d1 {
				t.Fatalf("different spec, same digest %s", d3)
			}
		})
	}
}

func TestBuildImageLayersAndMediaTypes(t *testing.T) {
	t.Parallel()
	files := []File{
		{Path: "/opt/app/run.sh", Content: []byte("#!/bin/sh\necho hi\n"), Mode: 0o755},
		{Path: "/etc/motd", Content: []byte("hello\n")},
		{Path: "/data", Dir: true, Mode: 0o700, UID: 1000, GID: 1000},
		{Path: "/data/file", Content: []byte("d"), Mode: 0o640, UID: 1000, GID: 2000},
		{Path: "/usr/bin/env", Link: "/bin/env"},
		{Path: "/tmp/setuid", Content: []byte("s"), Mode: 0o755 | os.ModeSetuid},
	}
	for _, tc := range []struct {
		layers, files int
		comp          string
		docker        bool
		wantLayerMT   types.MediaType
	}{
		{0, 0, "", false, types.OCILayer},
		{1, 6, "gzip", false, types.OCILayer},
		{2, 0, "zstd", false, types.OCILayerZStd},
		{3, 6, "none", false, types.OCIUncompressedLayer},
		{3, 1, "gzip", true, types.DockerLayer},
		{5, 2, "none", true, types.DockerUncompressedLayer},
		{6, 0, "zstd", true, types.OCILayerZStd},
	} {
		name := fmt.Sprintf("layers=%d,files=%d,%s,docker=%v", tc.layers, tc.files, tc.comp, tc.docker)
		t.Run(name, func(t *testing.T) {
			img := mustBuild(t, ImageSpec{
				Layers: tc.layers, Files: files[:tc.files], Compression: tc.comp, DockerMediaTypes: tc.docker,
			})
			wantLayers := max(tc.layers, 1)
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			wantMT, wantCfgMT := types.OCIManifestSchema1, types.OCIConfigJSON
			if tc.docker {
				wantMT, wantCfgMT = types.DockerManifestSchema2, types.DockerConfigJSON
			}
			if m.MediaType != wantMT || m.Config.MediaType != wantCfgMT {
				t.Errorf("media types %s / %s, want %s / %s", m.MediaType, m.Config.MediaType, wantMT, wantCfgMT)
			}
			if len(m.Layers) != wantLayers {
				t.Fatalf("%d layers in manifest, want %d", len(m.Layers), wantLayers)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if len(cf.RootFS.DiffIDs) != wantLayers || len(cf.History) != wantLayers {
				t.Fatalf("config has %d diff IDs, %d history entries, want %d", len(cf.RootFS.DiffIDs), len(cf.History), wantLayers)
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			union := map[string]tarEntry{}
			var hardLinks int
			for i, l := range layers {
				if m.Layers[i].MediaType != tc.wantLayerMT {
					t.Errorf("layer %d media type %s, want %s", i, m.Layers[i].MediaType, tc.wantLayerMT)
				}
				checkBlobDigests(t, l, m.Layers[i], cf.RootFS.DiffIDs[i])
				es := readLayer(t, l)
				checkLayerInvariants(t, es)
				for _, e := range es {
					union[strings.TrimSuffix(e.hdr.Name, "/")] = e
					if e.hdr.Typeflag == tar.TypeLink {
						hardLinks++
					}
				}
			}
			bb, _ := loadBusybox()
			if hardLinks != len(bb.applets) {
				t.Errorf("%d hard links, want %d", hardLinks, len(bb.applets))
			}
			for _, f := range files[:tc.files] {
				p := strings.TrimPrefix(f.Path, "/")
				e, ok := union[p]
				if !ok {
					t.Errorf("%s missing", p)
					continue
				}
				if !bytes.Equal(e.data, f.Content) || e.hdr.Linkname != f.Link || e.hdr.Uid != f.UID || e.hdr.Gid != f.GID {
					t.Errorf("%s: got %+v %q", p, e.hdr, e.data)
				}
			}
			if tc.files > 0 {
				if e := union["opt/app"]; e.hdr == nil || e.hdr.Typeflag != tar.TypeDir || e.hdr.Mode != 0o755 {
					t.Errorf("implicit parent opt/app: %+v", e.hdr)
				}
				if e := union["tmp"]; e.hdr == nil || e.hdr.Mode != 0o1777 {
					t.Errorf("tmp lost its mode: %+v", e.hdr)
				}
			}
			if tc.files == 6 {
				if h := union["tmp/setuid"].hdr; h.Mode != 0o4755 {
					t.Errorf("setuid mode %o", h.Mode)
				}
				if h := union["data"].hdr; h.Typeflag != tar.TypeDir || h.Mode != 0o700 {
					t.Errorf("data dir %+v", h)
				}
				if h := union["usr/bin/env"].hdr; h.Typeflag != tar.TypeSymlink {
					t.Errorf("symlink %+v", h)
				}
			}
		})
	}
}

// checkBlobDigests verifies that a layer's compressed bytes hash to its
// descriptor digest/size and its uncompressed bytes to its diff ID.
func checkBlobDigests(t *testing.T, l v1.Layer, desc v1.Descriptor, diffID v1.Hash) {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	d, n, err := v1.SHA256(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if d != desc.Digest || n != desc.Size {
		t.Errorf("compressed blob %s/%d, descriptor says %s/%d", d, n, desc.Digest, desc.Size)
	}
	rc, err = l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	d, _, err = v1.SHA256(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if d != diffID {
		t.Errorf("uncompressed blob %s, diff ID %s", d, diffID)
	}
	if desc.MediaType == types.OCIUncompressedLayer || desc.MediaType == types.DockerUncompressedLayer {
		if desc.Digest != diffID {
			t.Errorf("uncompressed layer digest %s != diff ID %s", desc.Digest, diffID)
		}
	}
}

func TestBuildImageErrors(t *testing.T) {
	t.Parallel()
	for name, spec := range map[string]ImageSpec{
		"compression": {Compression: "lz4"},
		"negative":    {Layers: -1},
		"duplicate":   {Files: []File{{Path: "/a"}, {Path: "a"}}},
		"root":        {Files: []File{{Path: "/"}}},
		"dir content": {Files: []File{{Path: "/d", Dir: true, Content: []byte("x")}}},
		"platform":    {Platform: "linux"},
	} {
		if _, err := BuildImage(spec); err == nil {
			t.Errorf("%s: BuildImage succeeded", name)
		}
	}
}

func TestBuildIndex(t *testing.T) {
	t.Parallel()
	amd := mustBuild(t, ImageSpec{Platform: "linux/amd64"})
	arm := mustBuild(t, ImageSpec{Platform: "linux/arm64/v8"})
	idx, err := BuildIndex(map[string]v1.Image{"linux/arm64/v8": arm, "linux/amd64": amd})
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex || len(im.Manifests) != 2 {
		t.Fatalf("index %s with %d manifests", im.MediaType, len(im.Manifests))
	}
	for i, want := range []struct {
		img  v1.Image
		plat string
	}{{amd, "linux/amd64"}, {arm, "linux/arm64/v8"}} {
		got := im.Manifests[i]
		if got.Digest != digestOf(t, want.img) || got.Platform == nil || got.Platform.String() != want.plat || got.MediaType != types.OCIManifestSchema1 {
			t.Errorf("manifest %d: %+v, want %s %s", i, got, digestOf(t, want.img), want.plat)
		}
	}
	cf, err := arm.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != "arm64" || cf.Variant != "v8" {
		t.Errorf("arm config platform %s/%s", cf.Architecture, cf.Variant)
	}

	dIdx, err := BuildIndex(map[string]v1.Image{"linux/amd64": mustBuild(t, ImageSpec{DockerMediaTypes: true})})
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := dIdx.MediaType(); mt != types.DockerManifestList {
		t.Errorf("docker index media type %s", mt)
	}
	if _, err := BuildIndex(nil); err == nil {
		t.Error("BuildIndex(nil) succeeded")
	}
}

// extractImage applies the layers of img to dir the way a runtime would
// (whiteouts aside) and returns dir.
func extractImage(t *testing.T, img v1.Image) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("extracting images with their ownership needs root")
	}
	dir := t.TempDir()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		for _, e := range readLayer(t, l) {
			h := e.hdr
			p := filepath.Join(dir, filepath.FromSlash(h.Name))
			mode := h.FileInfo().Mode()
			if fi, err := os.Lstat(p); err == nil && !(fi.IsDir() && h.Typeflag == tar.TypeDir) {
				os.RemoveAll(p) // later layers replace existing entries, except dir over dir
			}
			var err error
			switch h.Typeflag {
			case tar.TypeDir:
				if err = os.MkdirAll(p, 0o755); err == nil {
					err = os.Chmod(p, mode)
				}
			case tar.TypeReg:
				if err = os.WriteFile(p, e.data, 0o600); err == nil {
					err = os.Chmod(p, mode)
				}
			case tar.TypeSymlink:
				err = os.Symlink(h.Linkname, p)
			case tar.TypeLink:
				err = os.Link(filepath.Join(dir, filepath.FromSlash(h.Linkname)), p)
			default:
				t.Fatalf("unexpected entry type %c for %s", h.Typeflag, h.Name)
			}
			if err == nil && h.Typeflag != tar.TypeLink {
				err = os.Lchown(p, h.Uid, h.Gid)
				if err == nil && h.Typeflag != tar.TypeSymlink {
					err = os.Chmod(p, mode) // chown clears setuid
				}
			}
			if err != nil {
				t.Fatalf("extracting %s: %v", h.Name, err)
			}
		}
	}
	return dir
}

func TestExtractedImageRuns(t *testing.T) {
	t.Parallel()
	img := mustBuild(t, ImageSpec{Layers: 3, Compression: "zstd"})
	dir := extractImage(t, img)
	out, err := exec.Command(filepath.Join(dir, "bin/sh"), "-c", "echo ok").CombinedOutput()
	if err != nil || string(out) != "ok\n" {
		t.Fatalf("bin/sh -c 'echo ok': %q, %v", out, err)
	}
}
