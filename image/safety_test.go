package image_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/berth-runtime/berth/conformance/framework"
	"github.com/berth-runtime/berth/image"
)

// sfEntry is one raw tar entry of a hand-made layer.
type sfEntry struct {
	hdr  tar.Header
	data []byte
}

func sfFile(name, content string) sfEntry {
	return sfEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, data: []byte(content)}
}

func sfDir(name string) sfEntry {
	return sfEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func sfSymlink(name, target string) sfEntry {
	return sfEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func sfHardlink(name, target string) sfEntry {
	return sfEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

func sfDevice(typ byte, name string, major, minor int64) sfEntry {
	return sfEntry{hdr: tar.Header{Typeflag: typ, Name: name, Mode: 0o666, Devmajor: major, Devminor: minor}}
}

// sfTar writes the entries as given: archive/tar's writer does not clean
// or check names, so "..", absolute paths and links go out verbatim.
func sfTar(t *testing.T, entries []sfEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.data))
		h.ModTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sfGzipLayer is a gzip-compressed OCI layer of tarData.
func sfGzipLayer(t *testing.T, tarData []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarData)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// sfEmptyImage is an image with no layers whose config matches this platform.
func sfEmptyImage(t *testing.T) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		OS: "linux", Architecture: runtime.GOARCH,
		Config: v1.Config{Env: []string{framework.DefaultPath}},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func sfAppend(t *testing.T, base v1.Image, l v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(base, l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func sfToken() string { return fmt.Sprintf("%016x", rand.Uint64()) }

// sfHostFile is a host file a malicious layer targets; check reports any
// change to it.
type sfHostFile struct {
	path    string
	content []byte
	st      unix.Stat_t
}

func sfSnapHost(t *testing.T, path string) *sfHostFile {
	t.Helper()
	h := &sfHostFile{path: path}
	if err := unix.Lstat(path, &h.st); err != nil {
		t.Fatal(err)
	}
	h.content = sfContent(t, path, h.st)
	return h
}

// sfContent is a regular file's content or a directory's entry names.
func sfContent(t *testing.T, path string, st unix.Stat_t) []byte {
	t.Helper()
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		entries, err := os.ReadDir(path)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return []byte(strings.Join(names, "\n"))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (h *sfHostFile) check(t *testing.T) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(h.path, &st); err != nil {
		t.Errorf("host file %s: %v", h.path, err)
		return
	}
	content := sfContent(t, h.path, st)
	if !bytes.Equal(content, h.content) || st.Mtim != h.st.Mtim || st.Ctim != h.st.Ctim ||
		st.Nlink != h.st.Nlink || st.Mode != h.st.Mode || st.Uid != h.st.Uid || st.Gid != h.st.Gid {
		t.Errorf("host file %s changed: content %q nlink %d mode %o mtime %v ctime %v, was %q nlink %d mode %o mtime %v ctime %v",
			h.path, content, st.Nlink, st.Mode, st.Mtim, st.Ctim, h.content, h.st.Nlink, h.st.Mode, h.st.Mtim, h.st.Ctim)
	}
}

// sfFindToken lists the paths under root whose name contains tok.
func sfFindToken(root, tok string) []string {
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // vanished or unreadable: not ours
		}
		if strings.Contains(d.Name(), tok) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestSafetyLayerExtractionStaysInSnapshot(t *testing.T) {
	framework.RequireRoot(t)
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	busybox := framework.MustBuildImage(t, framework.ImageSpec{})
	deep := strings.Repeat("../", 24) // from any extraction root up to /

	type tc struct {
		name string
		// layer builds the entries; host is a directory outside the store
		// with a file "hostname" (content "host\n") and an empty
		// directory "dir"; tok is unique to the case.
		layer func(host, tok string) []sfEntry
		// escapes are host paths that must not exist afterwards.
		escapes func(host, tok string) []string
		// inside checks, after a successful pull, what was created in the
		// snapshots (the paths whose name holds the token).
		inside func(t *testing.T, found []string)
	}
	cases := []tc{
		{
			name: "dotdot",
			layer: func(host, tok string) []sfEntry {
				return []sfEntry{
					sfFile("../../../../tmp/berth-escape-"+tok, "pwned\n"),
					sfFile(deep+strings.TrimPrefix(host, "/")+"/dir/dotdot-"+tok, "pwned\n"),
					sfFile("a/../../"+deep+"tmp/berth-escape-mid-"+tok, "pwned\n"),
				}
			},
			escapes: func(host, tok string) []string {
				return []string{"/tmp/berth-escape-" + tok, host + "/dir/dotdot-" + tok, "/tmp/berth-escape-mid-" + tok}
			},
		},
		{
			name: "absolute",
			layer: func(host, tok string) []sfEntry {
				return []sfEntry{
					sfFile("/tmp/berth-escape-"+tok, "pwned\n"),
					sfFile(host+"/dir/abs-"+tok, "pwned\n"),
				}
			},
			escapes: func(host, tok string) []string {
				return []string{"/tmp/berth-escape-" + tok, host + "/dir/abs-" + tok}
			},
		},
		{
			name: "absolute symlink escape",
			layer: func(host, tok string) []sfEntry {
				return []sfEntry{
					sfSymlink("evil-"+tok, "/tmp/berth-escape-dir-"+tok),
					sfFile("evil-"+tok+"/pwned-"+tok, "pwned\n"),
					sfSymlink("evil2-"+tok, host+"/dir"),
					sfFile("evil2-"+tok+"/pwned2-"+tok, "pwned\n"),
					sfDir("evil2-" + tok + "/sub-" + tok + "/"),
				}
			},
			escapes: func(host, tok string) []string {
				return []string{"/tmp/berth-escape-dir-" + tok, host + "/dir/pwned2-" + tok, host + "/dir/sub-" + tok}
			},
		},
		{
			name: "relative symlink escape",
			layer: func(host, tok string) []sfEntry {
				return []sfEntry{
					sfSymlink("rel-"+tok, "../../../../../../tmp"),
					sfFile("rel-"+tok+"/berth-escape-"+tok, "pwned\n"),
					sfDir("d-" + tok + "/"),
					sfSymlink("d-"+tok+"/up-"+tok, "../"+deep+strings.TrimPrefix(host, "/")+"/dir"),
					sfFile("d-"+tok+"/up-"+tok+"/pwned-"+tok, "pwned\n"),
				}
			},
			escapes: func(host, tok string) []string {
				return []string{"/tmp/berth-escape-" + tok, host + "/dir/pwned-" + tok}
			},
		},
		{
			name: "hardlink outside",
			layer: func(host, tok string) []sfEntry {
				return []sfEntry{
					sfHardlink("hl-rel-"+tok, deep+strings.TrimPrefix(host, "/")+"/hostname"),
					sfHardlink("hl-abs-"+tok, host+"/hostname"),
					sfHardlink("hl-etc-"+tok, "../../../../etc/hostname"),
				}
			},
		},
		{
			name: "hardlink through symlink",
			layer: func(host, tok string) []sfEntry {
				return []sfEntry{
					sfSymlink("s-"+tok, host),
					sfHardlink("hl-"+tok, "s-"+tok+"/hostname"),
					sfSymlink("r-"+tok, deep+strings.TrimPrefix(host, "/")),
					sfHardlink("hl2-"+tok, "r-"+tok+"/hostname"),
				}
			},
		},
		{
			name: "hardlink then overwrite",
			// If a link to the host file were made, rewriting the entry
			// would truncate and rewrite the host file.
			layer: func(host, tok string) []sfEntry {
				return []sfEntry{
					sfFile("dummy-"+tok, "x"),
					sfHardlink(host+"/hostname", "dummy-"+tok),
					sfFile(host+"/hostname", "pwned\n"),
				}
			},
		},
		{
			name: "device nodes",
			layer: func(host, tok string) []sfEntry {
				return []sfEntry{
					sfDevice(tar.TypeChar, "mem-"+tok, 1, 1),   // /dev/mem
					sfDevice(tar.TypeBlock, "loop-"+tok, 7, 0), // /dev/loop0
					sfDevice(tar.TypeChar, deep+"dev/evil-"+tok, 1, 3),
				}
			},
			escapes: func(host, tok string) []string { return []string{"/dev/evil-" + tok} },
			inside: func(t *testing.T, found []string) {
				want := map[string]uint64{"mem-": unix.Mkdev(1, 1), "loop-": unix.Mkdev(7, 0), "evil-": unix.Mkdev(1, 3)}
				for _, p := range found {
					var st unix.Stat_t
					if err := unix.Lstat(p, &st); err != nil {
						t.Error(err)
						continue
					}
					for prefix, rdev := range want {
						if strings.HasPrefix(filepath.Base(p), prefix) {
							t.Logf("device node %s: mode %o rdev %d:%d", p, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
							if st.Rdev != rdev {
								t.Errorf("%s: rdev %d:%d", p, unix.Major(st.Rdev), unix.Minor(st.Rdev))
							}
						}
					}
				}
			},
		},
	}

	var summary []string
	for _, c := range cases {
		for _, pos := range []string{"on busybox", "first layer"} {
			t.Run(c.name+"/"+pos, func(t *testing.T) {
				storeDir := filepath.Join(t.TempDir(), "image")
				s := testStore(t, image.Options{Dir: storeDir})
				tok := sfToken()
				host := t.TempDir()
				if err := os.Mkdir(filepath.Join(host, "dir"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(host, "hostname"), []byte("host\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
				os.Chtimes(filepath.Join(host, "hostname"), old, old)
				os.Chtimes(filepath.Join(host, "dir"), old, old)
				watched := []*sfHostFile{sfSnapHost(t, filepath.Join(host, "hostname")), sfSnapHost(t, filepath.Join(host, "dir"))}
				for _, p := range []string{"/etc/hostname", "/etc/passwd"} {
					if _, err := os.Stat(p); err == nil {
						watched = append(watched, sfSnapHost(t, p))
					}
				}

				base := busybox
				if pos == "first layer" {
					base = sfEmptyImage(t)
				}
				img := sfAppend(t, base, sfGzipLayer(t, sfTar(t, c.layer(host, tok))))
				ref, _ := reg.Push(t, "evil/"+strings.NewReplacer(" ", "-").Replace(c.name)+":"+tok, img)

				got, err := s.Pull(ctxT(t), ref, nil)
				outcome := ""
				if err != nil {
					outcome = "rejected: " + err.Error()
					checkPullLeftNothing(t, s, storeDir)
					if !errdefs.IsInvalidArgument(err) {
						t.Errorf("a layer that cannot be extracted must be InvalidArgument (a bad image), got %v", err)
					}
				} else {
					outcome = "neutralised"
					if l := s.List(ctxT(t)); len(l) != 1 || l[0].ID != got.ID {
						t.Errorf("List = %v", l)
					}
				}

				// Nothing outside the store.
				for _, h := range watched {
					h.check(t)
				}
				if entries, err := os.ReadDir(filepath.Join(host, "dir")); err != nil || len(entries) != 0 {
					t.Errorf("host dir: %v %v", entries, err)
				}
				if c.escapes != nil {
					for _, p := range c.escapes(host, tok) {
						if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
							t.Errorf("escape target %s exists (%v)", p, err)
						}
					}
				}
				tmpRoot := filepath.Dir(host) // this test's temp root
				var found []string
				for _, p := range append(sfFindToken(tmpRoot, tok), sfFindTokenShallow("/tmp", tok)...) {
					if !strings.HasPrefix(p, s.SnapshotDir()+"/") {
						t.Errorf("entry outside the snapshots: %s", p)
						continue
					}
					found = append(found, p)
				}
				if err == nil {
					if len(found) == 0 {
						t.Error("the pull succeeded but none of the layer's entries was found")
					}
					var rel []string
					for _, p := range found {
						r, _ := filepath.Rel(s.SnapshotDir(), p)
						rel = append(rel, r)
					}
					outcome += fmt.Sprintf(" (created under SnapshotDir: %s)", strings.Join(rel, ", "))
					if c.inside != nil {
						c.inside(t, found)
					}
				}
				t.Logf("%s: %s", c.name, outcome)
				summary = append(summary, fmt.Sprintf("%s [%s]: %s", c.name, pos, outcome))
			})
		}
	}
	t.Log("summary:\n" + strings.Join(summary, "\n"))
}

func sfFindTokenShallow(dir, tok string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if strings.Contains(e.Name(), tok) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// checkPullLeftNothing checks that a failed pull left no blob and no partial
// download in the store.
func checkPullLeftNothing(t *testing.T, s *image.Store, dir string, digests ...string) {
	t.Helper()
	for _, d := range digests {
		algo, hexd, _ := strings.Cut(d, ":")
		if _, err := os.Stat(filepath.Join(dir, "content", "blobs", algo, hexd)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("blob %s left in the content store (%v)", d, err)
		}
	}
	if ingests, err := os.ReadDir(filepath.Join(dir, "content", "ingest")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Error(err)
	} else if len(ingests) != 0 {
		t.Errorf("%d partial downloads left in content/ingest", len(ingests))
	}
	imgs, ctrs, err := s.FsInfo(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if imgs.UsedBytes != 0 || imgs.InodesUsed != 0 || ctrs.UsedBytes != 0 {
		t.Errorf("after a failed pull: image fs %+v, container fs %+v, want empty", imgs, ctrs)
	}
	if l := s.List(ctxT(t)); len(l) != 0 {
		t.Errorf("failed pull left images listed: %v", l)
	}
}

func sfRandom(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

func TestSafetyCorruptBlob(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "image")
	s := testStore(t, image.Options{Dir: dir})
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	img := framework.MustBuildImage(t, framework.ImageSpec{Layers: 2,
		Files: []framework.File{{Path: "/data", Content: sfRandom(256<<10, 1)}}})
	ref, _ := reg.Push(t, "test/corrupt:1", img)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	top, err := layers[1].Digest()
	if err != nil {
		t.Fatal(err)
	}
	reg.CorruptBlob(top.String())

	_, err = s.Pull(ctxT(t), ref, nil)
	t.Logf("pull error: %v", err)
	if !errors.Is(err, errdefs.ErrDataLoss) {
		t.Errorf("error %v does not wrap errdefs.ErrDataLoss", err)
	}
	if err == nil || !strings.Contains(err.Error(), top.String()) {
		t.Errorf("error does not name the corrupt blob %s", top)
	}
	if n := reg.BlobFetches(top.String()); n == 0 {
		t.Error("the corrupt blob was never fetched")
	}
	checkPullLeftNothing(t, s, dir, top.String())
}

// sfRawLayer is a layer whose digest, diff ID and bytes are whatever the test
// says, consistent or not.
type sfRawLayer struct {
	compressed []byte
	diffID     v1.Hash
}

func (l *sfRawLayer) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(l.compressed))
	return h, err
}
func (l *sfRawLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *sfRawLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.compressed)), nil
}
func (l *sfRawLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("sfRawLayer: no uncompressed form")
}
func (l *sfRawLayer) Size() (int64, error)                { return int64(len(l.compressed)), nil }
func (l *sfRawLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }

func sfGzip(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sfSHA256(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func TestSafetyBrokenLayer(t *testing.T) {
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	busybox := framework.MustBuildImage(t, framework.ImageSpec{})
	tarData := sfTar(t, []sfEntry{sfDir("data/"), sfFile("data/blob", string(sfRandom(256<<10, 2)))})
	gz := sfGzip(t, tarData)

	for _, tc := range []struct {
		name  string
		layer *sfRawLayer
	}{
		// The registry serves exactly the bytes the manifest names: only
		// decompression can tell.
		{"truncated gzip", &sfRawLayer{compressed: gz[:len(gz)/2], diffID: sfSHA256(tarData)}},
		{"truncated gzip at tar boundary", &sfRawLayer{compressed: sfGzip(t, tarData[:1024]), diffID: sfSHA256(tarData)}},
		{"wrong diff id", &sfRawLayer{compressed: gz, diffID: sfSHA256([]byte("not this layer"))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "image")
			s := testStore(t, image.Options{Dir: dir})
			img := sfAppend(t, busybox, tc.layer)
			ref, _ := reg.Push(t, "test/broken:"+strings.ReplaceAll(tc.name, " ", "-"), img)
			_, err := s.Pull(ctxT(t), ref, nil)
			t.Logf("pull error: %v", err)
			if err == nil {
				t.Fatal("pull of a broken layer succeeded")
			}
			if !errors.Is(err, errdefs.ErrDataLoss) {
				t.Errorf("error does not wrap errdefs.ErrDataLoss: %v", err)
			}
			d, _ := tc.layer.Digest()
			checkPullLeftNothing(t, s, dir, d.String())
		})
	}
}

func TestSafetyDiskFull(t *testing.T) {
	framework.RequireRoot(t)
	mnt := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=8m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	// Registered before testStore: runs after the store is closed.
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	dir := filepath.Join(mnt, "image")
	s := testStore(t, image.Options{Dir: dir})
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	big := framework.MustBuildImage(t, framework.ImageSpec{Layers: 2,
		Files: []framework.File{{Path: "/big", Content: sfRandom(20<<20, 3)}}})
	ref, _ := reg.Push(t, "test/big:1", big)
	ctx := ctxT(t)

	_, err := s.Pull(ctx, ref, nil)
	t.Logf("pull error: %v", err)
	if !errdefs.IsResourceExhausted(err) {
		t.Errorf("error is not ResourceExhausted: %v", err)
	}
	if !errors.Is(err, syscall.ENOSPC) && err != nil && !strings.Contains(err.Error(), "no space") {
		t.Errorf("error does not mention the full disk: %v", err)
	}
	layers, _ := big.Layers()
	var digests []string
	for _, l := range layers {
		d, _ := l.Digest()
		digests = append(digests, d.String())
	}
	checkPullLeftNothing(t, s, dir, digests...)
	var sfs unix.Statfs_t
	if err := unix.Statfs(mnt, &sfs); err != nil {
		t.Fatal(err)
	}
	t.Logf("tmpfs after the failed pull: %d KiB used of %d KiB", (sfs.Blocks-sfs.Bfree)*uint64(sfs.Bsize)>>10, sfs.Blocks*uint64(sfs.Bsize)>>10)

	small := framework.MustBuildImage(t, framework.ImageSpec{Cmd: []string{"small"}})
	sref, _ := reg.Push(t, "test/small:1", small)
	got, err := s.Pull(ctx, sref, nil)
	if err != nil {
		t.Fatalf("pull of a small image after the failure: %v", err)
	}
	if l := s.List(ctx); len(l) != 1 || l[0].ID != got.ID {
		t.Errorf("List = %v", l)
	}
	if err := s.Remove(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
}
