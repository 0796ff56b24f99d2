package image_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-runtime/berth/conformance/framework"
	"github.com/berth-runtime/berth/image"
)

// lockedBuffer is a log sink the pull's goroutines and the test share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// pullRecorder is an image.Observer that keeps what it was told.
type pullRecorder struct {
	mu       sync.Mutex
	started  int
	bytes    int
	done     []error
	inFlight int
	peak     int
}

func (r *pullRecorder) PullStarted(string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started++
	r.inFlight++
	r.peak = max(r.peak, r.inFlight)
}

func (r *pullRecorder) PullBytes(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bytes += n
}

func (r *pullRecorder) PullDone(_ string, _ time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight--
	r.done = append(r.done, err)
}

// A pull slower than the progress interval logs its progress, with the
// image name, bytes and layers, and reports its bytes to the observer.
func TestLongPullLogsProgress(t *testing.T) {
	logs := &lockedBuffer{}
	rec := &pullRecorder{}
	s := testStore(t, image.Options{
		Log:                 slog.New(slog.NewTextHandler(logs, nil)),
		ProgressLogInterval: 200 * time.Millisecond,
		Observer:            rec,
	})
	reg := framework.StartRegistry(t, framework.RegistryOptions{BytesPerSecond: 512 << 10})
	img := framework.MustBuildImage(t, framework.ImageSpec{Layers: 2,
		Files: []framework.File{{Path: "/data", Content: sfRandom(1<<20, 7)}}})
	ref, _ := reg.Push(t, "test/progress:1", img)
	if _, err := s.Pull(ctxT(t), ref, nil); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	var progress []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `msg="pulling image"`) {
			progress = append(progress, line)
		}
	}
	if len(progress) < 2 {
		t.Fatalf("a pull of seconds logged %d progress lines at a 200ms interval:\n%s", len(progress), out)
	}
	for _, want := range []string{"image=" + ref, "bytes=", "total_bytes=", "layers_done=", "layers="} {
		if !strings.Contains(progress[0], want) {
			t.Errorf("progress line lacks %q: %s", want, progress[0])
		}
	}
	if !strings.Contains(out, `msg="pulled image"`) || !strings.Contains(out, "layers=") {
		t.Errorf("no final line with the layers:\n%s", out)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.started != 1 || len(rec.done) != 1 || rec.done[0] != nil || rec.inFlight != 0 {
		t.Errorf("observer: started %d, done %v, in flight %d", rec.started, rec.done, rec.inFlight)
	}
	if rec.bytes < 1<<20 {
		t.Errorf("observer saw %d bytes, want at least the 1 MiB of random data", rec.bytes)
	}
}

// A quick pull logs no progress line: only long pulls need one.
func TestQuickPullLogsNoProgress(t *testing.T) {
	logs := &lockedBuffer{}
	s := testStore(t, image.Options{Log: slog.New(slog.NewTextHandler(logs, nil))})
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	ref, _ := reg.Push(t, "test/quick:1", framework.MustBuildImage(t, framework.ImageSpec{}))
	if _, err := s.Pull(ctxT(t), ref, nil); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), `msg="pulling image"`) {
		t.Errorf("a quick pull logged progress:\n%s", logs)
	}
}

func TestSetPinnedRemarksImages(t *testing.T) {
	s := testStore(t, image.Options{})
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	ref, _ := reg.Push(t, "test/pin:1", framework.MustBuildImage(t, framework.ImageSpec{}))
	ctx := ctxT(t)
	got, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	pinned := func() bool {
		img, err := s.Get(ctx, got.ID)
		if err != nil {
			t.Fatal(err)
		}
		return img.Pinned
	}
	if pinned() {
		t.Fatal("pinned before any pin")
	}
	s.SetPinned([]string{ref})
	if !pinned() {
		t.Fatal("not pinned after SetPinned")
	}
	s.SetPinned([]string{"busybox"})
	if pinned() {
		t.Fatal("still pinned after its pin was dropped")
	}
}

// The registry config directory can be switched while the store runs: the
// next pull reads its hosts.toml there.
func TestSetRegistryConfigDirTakesEffectOnNextPull(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "certs.d")
	s := testStore(t, image.Options{RegistryConfigDir: empty})
	upstream := framework.StartRegistry(t, framework.RegistryOptions{})
	mirror := framework.StartRegistry(t, framework.RegistryOptions{})
	// Only the mirror has the image, under the same repository.
	img := framework.MustBuildImage(t, framework.ImageSpec{})
	mirror.Push(t, "test/mirrored:1", img)
	cfgDigest, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	ref := upstream.Ref("test/mirrored:1")
	ctx := ctxT(t)
	if _, err := s.Pull(ctx, ref, nil); err == nil {
		t.Fatal("pulled from an upstream that lacks the image")
	}
	mirrors := filepath.Join(t.TempDir(), "mirrors.d")
	writeHostsTOML(t, mirrors, upstream, mirror)
	s.SetRegistryConfigDir(mirrors)
	if _, err := s.Pull(ctx, ref, nil); err != nil {
		t.Fatalf("pull through the mirror of the new registry config dir: %v", err)
	}
	if mirror.BlobFetches(cfgDigest.String()) == 0 {
		t.Error("the mirror served no image config")
	}
}

// writeHostsTOML makes mirror the first host tried for upstream's images.
func writeHostsTOML(t *testing.T, dir string, upstream, mirror *framework.Registry) {
	t.Helper()
	hostDir := filepath.Join(dir, upstream.Host)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	content := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", upstream.URL, mirror.URL)
	if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
