package framework

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func parseRef(t *testing.T, ref string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRegistryPushPull(t *testing.T) {
	t.Parallel()
	reg := StartRegistry(t, RegistryOptions{})
	files := []File{
		{Path: "/app/hello.txt", Content: []byte("hello world\n"), Mode: 0o640, UID: TestUID, GID: ExtraGID},
		{Path: "/app/run", Content: []byte("#!/bin/sh\nexec echo ran\n"), Mode: 0o755},
		{Path: "/app/link", Link: "hello.txt"},
	}
	for _, comp := range []string{"gzip", "zstd", "none"} {
		t.Run(comp, func(t *testing.T) {
			spec := ImageSpec{
				Entrypoint:  []string{"/bin/sh", "-c"},
				Cmd:         []string{"echo hi"},
				User:        "1000:1000",
				Env:         []string{"PATH=/bin", "FOO=bar"},
				WorkingDir:  "/app",
				Labels:      map[string]string{"io.berth.test": comp},
				StopSignal:  "SIGUSR1",
				Files:       files,
				Layers:      3,
				Compression: comp,
			}
			img := mustBuild(t, spec)
			ref, digest := reg.Push(t, "test/busybox:"+comp, img)
			if want := reg.Host + "/test/busybox:" + comp; ref != want {
				t.Fatalf("ref %q, want %q", ref, want)
			}

			pulled, err := remote.Image(parseRef(t, ref), remote.WithContext(t.Context()))
			if err != nil {
				t.Fatalf("pull %s: %v", ref, err)
			}
			if d := digestOf(t, pulled); d.String() != digest {
				t.Fatalf("pulled digest %s, pushed %s", d, digest)
			}
			cf, err := pulled.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			c := cf.Config
			if !slices.Equal(c.Entrypoint, spec.Entrypoint) || !slices.Equal(c.Cmd, spec.Cmd) ||
				c.User != spec.User || !slices.Equal(c.Env, spec.Env) || c.WorkingDir != spec.WorkingDir ||
				c.Labels["io.berth.test"] != comp || len(c.Labels) != 1 || c.StopSignal != spec.StopSignal {
				t.Errorf("pulled config %+v does not match spec %+v", c, spec)
			}
			m, err := pulled.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Layers) != 3 || len(cf.RootFS.DiffIDs) != 3 {
				t.Fatalf("%d layers, %d diff IDs, want 3", len(m.Layers), len(cf.RootFS.DiffIDs))
			}
			for i, l := range m.Layers {
				if n := reg.BlobFetches(l.Digest.String()); n != 0 {
					t.Errorf("layer %d fetched %d times before extraction", i, n)
				}
			}

			dir := extractImage(t, pulled)
			for i, l := range m.Layers {
				if n := reg.BlobFetches(l.Digest.String()); n != 1 {
					t.Errorf("layer %d fetched %d times, want 1", i, n)
				}
			}
			if n := reg.ManifestFetches(comp); n != 1 {
				t.Errorf("manifest by tag fetched %d times, want 1", n)
			}

			sh, err := os.Lstat(filepath.Join(dir, "bin/sh"))
			if err != nil {
				t.Fatal(err)
			}
			bb, err := os.Lstat(filepath.Join(dir, "bin/busybox"))
			if err != nil {
				t.Fatal(err)
			}
			if !sh.Mode().IsRegular() || !os.SameFile(sh, bb) {
				t.Errorf("bin/sh (%v) is not a hard link to bin/busybox", sh.Mode())
			}
			checkFile(t, dir, "app/hello.txt", "hello world\n", 0o640)
			checkFile(t, dir, "app/run", "#!/bin/sh\nexec echo ran\n", 0o755)
			if target, err := os.Readlink(filepath.Join(dir, "app/link")); err != nil || target != "hello.txt" {
				t.Errorf("app/link -> %q, %v", target, err)
			}
			if fi, err := os.Stat(filepath.Join(dir, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
				t.Errorf("tmp: %v %v", fi.Mode(), err)
			}
		})
	}
}

func checkFile(t *testing.T, dir, p, content string, mode os.FileMode) {
	t.Helper()
	full := filepath.Join(dir, p)
	data, err := os.ReadFile(full)
	if err != nil {
		t.Errorf("%s: %v", p, err)
		return
	}
	fi, err := os.Stat(full)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != content || fi.Mode().Perm() != mode {
		t.Errorf("%s: %q mode %v, want %q mode %v", p, data, fi.Mode(), content, mode)
	}
}

func TestRegistryDockerImageAndIndex(t *testing.T) {
	t.Parallel()
	reg := StartRegistry(t, RegistryOptions{})
	dimg := mustBuild(t, ImageSpec{DockerMediaTypes: true, Layers: 2})
	ref, _ := reg.Push(t, "test/docker:latest", dimg)
	desc, err := remote.Get(parseRef(t, ref), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	if desc.MediaType != types.DockerManifestSchema2 {
		t.Errorf("docker image served as %s", desc.MediaType)
	}

	amd := mustBuild(t, ImageSpec{Platform: "linux/amd64", Cmd: []string{"amd"}})
	arm := mustBuild(t, ImageSpec{Platform: "linux/arm64/v8", Cmd: []string{"arm"}})
	idx, err := BuildIndex(map[string]v1.Image{"linux/amd64": amd, "linux/arm64/v8": arm})
	if err != nil {
		t.Fatal(err)
	}
	iref, idigest := reg.PushIndex(t, "test/multi:1", idx)
	pidx, err := remote.Index(parseRef(t, iref), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := pidx.Digest(); d.String() != idigest {
		t.Errorf("index digest %s, pushed %s", d, idigest)
	}
	img, err := remote.Image(parseRef(t, iref), remote.WithContext(t.Context()),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}))
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(t, img) != digestOf(t, arm) {
		t.Errorf("platform selection picked %s, want arm64 image %s", digestOf(t, img), digestOf(t, arm))
	}
	// Children are also reachable by digest.
	if _, err := remote.Image(parseRef(t, reg.Ref("test/multi@"+digestOf(t, amd).String())), remote.WithContext(t.Context())); err != nil {
		t.Errorf("child manifest by digest: %v", err)
	}
}

func TestRegistryAuth(t *testing.T) {
	t.Parallel()
	reg := StartRegistry(t, RegistryOptions{Username: "user", Password: "s3cret"})
	img := mustBuild(t, ImageSpec{})
	ref, digest := reg.Push(t, "private/busybox:1", img)

	for _, tc := range []struct {
		name       string
		user, pass string
		want       int
	}{
		{"anonymous", "", "", http.StatusUnauthorized},
		{"wrong password", "user", "nope", http.StatusUnauthorized},
		{"wrong user", "nope", "s3cret", http.StatusUnauthorized},
		{"valid", "user", "s3cret", http.StatusOK},
	} {
		for _, p := range []string{"/v2/", "/v2/private/busybox/manifests/1"} {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, reg.URL+p, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept", string(types.OCIManifestSchema1))
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s GET %s: status %d, want %d", tc.name, p, resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusUnauthorized {
				if h := resp.Header.Get("WWW-Authenticate"); h != `Basic realm="berth-test"` {
					t.Errorf("%s GET %s: WWW-Authenticate %q", tc.name, p, h)
				}
			}
		}
	}

	_, err := remote.Image(parseRef(t, ref), remote.WithContext(t.Context()))
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous pull: got %v, want 401", err)
	}
	pulled, err := remote.Image(parseRef(t, ref), remote.WithContext(t.Context()),
		remote.WithAuth(&authn.Basic{Username: "user", Password: "s3cret"}))
	if err != nil {
		t.Fatalf("authenticated pull: %v", err)
	}
	if d := digestOf(t, pulled); d.String() != digest {
		t.Errorf("digest %s, want %s", d, digest)
	}
	if err := remote.Write(parseRef(t, reg.Ref("private/other:1")), img, remote.WithContext(t.Context())); err == nil {
		t.Error("anonymous push succeeded")
	}
}

// pushBlob uploads n pseudo-random bytes as a standalone layer blob and
// returns the layer and its digest reference.
func pushBlob(t *testing.T, reg *Registry, repo string, n int) (v1.Layer, name.Digest) {
	t.Helper()
	data := make([]byte, n)
	rnd := rand.NewChaCha8([32]byte{1, 2, 3})
	rnd.Read(data)
	l := static.NewLayer(data, types.OCIUncompressedLayer)
	r, err := name.NewRepository(reg.Ref(repo), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(r, l, remote.WithContext(t.Context()), remote.WithAuth(reg.Auth())); err != nil {
		t.Fatal(err)
	}
	d, _ := l.Digest()
	return l, r.Digest(d.String())
}

// waitPaced waits for all throttled downloads to have returned.
func waitPaced(t *testing.T, reg *Registry) {
	t.Helper()
	done := make(chan struct{})
	go func() { reg.paced.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("throttled download handler still running 30s after the client went away")
	}
}

func TestRegistrySlow(t *testing.T) {
	t.Parallel()
	const size = 200 << 10
	reg := StartRegistry(t, RegistryOptions{BytesPerSecond: 100 << 10})
	l, dref := pushBlob(t, reg, "test/blob", size)
	want, _ := l.Digest()

	t.Run("full download", func(t *testing.T) {
		rl, err := remote.Layer(dref, remote.WithContext(t.Context()))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		rc, err := rl.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		// Compressed verifies the digest at EOF.
		got, n, err := v1.SHA256(rc)
		rc.Close()
		if err != nil || got != want || n != size {
			t.Fatalf("downloaded %d bytes %s (%v), want %d bytes %s", n, got, err, size, want)
		}
		t.Logf("%d KiB at %d KiB/s took %v", size>>10, 100, time.Since(start))
		if c := reg.BlobFetches(want.String()); c != 1 {
			t.Errorf("BlobFetches = %d, want 1", c)
		}
	})

	t.Run("client cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rl, err := remote.Layer(dref, remote.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := rl.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		first := make([]byte, 1024)
		if _, err := io.ReadFull(rc, first); err != nil {
			t.Fatalf("reading first bytes: %v", err)
		}
		cancel()
		n, err := io.Copy(io.Discard, rc)
		if err == nil {
			t.Fatalf("download completed (%d more bytes) after cancel", n)
		}
		if n+int64(len(first)) >= size {
			t.Errorf("got all %d bytes despite cancel", size)
		}
		t.Logf("read %d more bytes after cancel, then %v", n, err)
		waitPaced(t, reg)
		if c := reg.BlobFetches(want.String()); c != 2 {
			t.Errorf("BlobFetches = %d, want 2", c)
		}
	})

	// A download still running when the test ends must not hold up the
	// registry's cleanup: the handler is cut off and the client sees an
	// error rather than the rest of the blob.
	var rc io.ReadCloser
	t.Run("abandoned at cleanup", func(t *testing.T) {
		reg := StartRegistry(t, RegistryOptions{BytesPerSecond: 100 << 10})
		_, dref := pushBlob(t, reg, "test/blob", size)
		rl, err := remote.Layer(dref, remote.WithContext(context.Background()))
		if err != nil {
			t.Fatal(err)
		}
		if rc, err = rl.Compressed(); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rc, make([]byte, 1024)); err != nil {
			t.Fatal(err)
		}
	})
	if rc != nil {
		defer rc.Close()
		if n, err := io.Copy(io.Discard, rc); err == nil {
			t.Errorf("abandoned download completed (%d more bytes) after registry cleanup", n)
		}
	}
}

func TestRegistryConcurrentBlobFetches(t *testing.T) {
	t.Parallel()
	reg := StartRegistry(t, RegistryOptions{})
	_, dref := pushBlob(t, reg, "test/blob", 4096)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			l, err := remote.Layer(dref, remote.WithContext(t.Context()))
			if err == nil {
				var rc io.ReadCloser
				if rc, err = l.Compressed(); err == nil {
					var buf bytes.Buffer
					_, err = io.Copy(&buf, rc)
					rc.Close()
				}
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if c := reg.BlobFetches(dref.DigestStr()); c != n {
		t.Errorf("BlobFetches = %d, want %d", c, n)
	}
	if c := reg.BlobFetches("sha256:0000"); c != 0 {
		t.Errorf("BlobFetches(unknown) = %d", c)
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// getBlob starts a plain GET of a blob and checks the status and the
// announced length.
func getBlob(t *testing.T, ctx context.Context, reg *Registry, dref name.Digest, size int) *http.Response {
	t.Helper()
	u := reg.URL + "/v2/" + dref.RepositoryStr() + "/blobs/" + dref.DigestStr()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(size) {
		resp.Body.Close()
		t.Fatalf("GET %s: status %d, length %d, want 200 and %d", u, resp.StatusCode, resp.ContentLength, size)
	}
	return resp
}

func blobBytes(t *testing.T, l v1.Layer) []byte {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRegistryStallAfter(t *testing.T) {
	t.Parallel()
	const (
		size  = 64 << 10
		limit = 10000
	)
	reg := StartRegistry(t, RegistryOptions{StallAfter: limit})
	l, dref := pushBlob(t, reg, "test/blob", size)
	data := blobBytes(t, l)

	t.Run("hangs after StallAfter bytes", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		before := reg.StalledFetches()
		resp := getBlob(t, ctx, reg, dref, size)
		defer resp.Body.Close()
		first := make([]byte, limit)
		if _, err := io.ReadFull(resp.Body, first); err != nil {
			t.Fatalf("reading the first %d bytes: %v", limit, err)
		}
		if !bytes.Equal(first, data[:limit]) {
			t.Fatal("the first bytes differ from the blob")
		}
		// Once the handler hangs it has written exactly limit bytes, all
		// of which we have read: nothing more can arrive.
		waitFor(t, "the download to stall", func() bool { return reg.StalledFetches() == before+1 })
		cancel()
		n, err := io.Copy(io.Discard, resp.Body)
		if n != 0 || err == nil {
			t.Fatalf("after the stall: read %d more bytes, err %v; want 0 bytes and an error", n, err)
		}
		waitFor(t, "the stalled handler to return after the client left", func() bool { return reg.stalling.Load() == 0 })
	})

	t.Run("small blob served whole", func(t *testing.T) {
		sl, sref := pushBlob(t, reg, "test/small", limit)
		before := reg.StalledFetches()
		resp := getBlob(t, t.Context(), reg, sref, limit)
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, blobBytes(t, sl)) {
			t.Fatalf("small blob: %d bytes, %v", len(got), err)
		}
		if reg.StalledFetches() != before {
			t.Error("a blob of StallAfter bytes was stalled")
		}
	})

	t.Run("with throttling", func(t *testing.T) {
		reg := StartRegistry(t, RegistryOptions{StallAfter: limit, BytesPerSecond: 100 << 10})
		_, dref := pushBlob(t, reg, "test/blob", size)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		resp := getBlob(t, ctx, reg, dref, size)
		defer resp.Body.Close()
		if _, err := io.ReadFull(resp.Body, make([]byte, limit)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the download to stall", func() bool { return reg.StalledFetches() == 1 })
		cancel()
		if n, err := io.Copy(io.Discard, resp.Body); n != 0 || err == nil {
			t.Fatalf("after the stall: %d more bytes, %v", n, err)
		}
		waitPaced(t, reg)
	})

	// A stalled download must not hold up the registry's cleanup.
	var body io.ReadCloser
	var stalled *Registry
	t.Run("abandoned at cleanup", func(t *testing.T) {
		stalled = StartRegistry(t, RegistryOptions{StallAfter: limit})
		_, dref := pushBlob(t, stalled, "test/blob", size)
		resp := getBlob(t, context.Background(), stalled, dref, size)
		body = resp.Body
		if _, err := io.ReadFull(body, make([]byte, limit)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the download to stall", func() bool { return stalled.StalledFetches() == 1 })
	})
	if body != nil {
		defer body.Close()
		if n, err := io.Copy(io.Discard, body); err == nil {
			t.Errorf("abandoned download completed (%d more bytes) after registry cleanup", n)
		}
		if n := stalled.stalling.Load(); n != 0 {
			t.Errorf("%d stalled handlers still running after cleanup", n)
		}
	}
}

func TestRegistryCorruptBlob(t *testing.T) {
	t.Parallel()
	const size = 5000
	reg := StartRegistry(t, RegistryOptions{})
	bad, badRef := pushBlob(t, reg, "test/bad", size)
	good := static.NewLayer([]byte("an intact blob\n"), types.OCIUncompressedLayer)
	repo, err := name.NewRepository(reg.Ref("test/good"), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(repo, good, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	gd, _ := good.Digest()
	reg.CorruptBlob(badRef.DigestStr())
	want := blobBytes(t, bad)

	read := func(dref name.Digest, n int) []byte {
		resp := getBlob(t, t.Context(), reg, dref, n)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	got := read(badRef, size)
	if len(got) != size {
		t.Fatalf("corrupt blob: %d bytes, want %d", len(got), size)
	}
	var diff []int
	for i := range got {
		if got[i] != want[i] {
			diff = append(diff, i)
		}
	}
	if len(diff) == 0 {
		t.Fatal("corrupt blob served intact")
	}
	t.Logf("bytes flipped at %v", diff)
	// The stored blob is untouched: a second download is corrupted the
	// same way rather than flipped back.
	if again := read(badRef, size); !bytes.Equal(again, got) {
		t.Error("two downloads of the corrupt blob differ")
	}
	if b := read(repo.Digest(gd.String()), int(mustSize(t, good))); string(b) != "an intact blob\n" {
		t.Errorf("other blob served as %q", b)
	}
	if c := reg.BlobFetches(badRef.DigestStr()); c != 2 {
		t.Errorf("BlobFetches = %d, want 2", c)
	}

	// A client that verifies digests notices.
	rl, err := remote.Layer(badRef, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rl.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	if err == nil {
		t.Error("ggcr read a corrupt blob without a digest error")
	} else {
		t.Logf("ggcr: %v", err)
	}
}

func mustSize(t *testing.T, l v1.Layer) int64 {
	t.Helper()
	n, err := l.Size()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
