package image_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/berth-runtime/berth/conformance/framework"
	"github.com/berth-runtime/berth/image"
)

// benchImage is a BenchmarkPull image pushed to the benchmark's registry.
type benchImage struct {
	ref          string
	id           string   // config digest
	layers       []string // layer digests
	compressed   int64    // sum of the layer blob sizes
	uncompressed int64    // sum of the layer tar sizes
}

// pushBenchImage builds the image from files with the given layer
// compression, pushes it as repoTag and returns what the benchmarks need;
// the built image itself is dropped (the registry keeps its blobs).
func pushBenchImage(b *testing.B, reg *framework.Registry, repoTag, compression string, files []framework.File) benchImage {
	b.Helper()
	img := framework.MustBuildImage(b, framework.ImageSpec{
		Cmd:         []string{"sh"},
		Files:       files,
		Layers:      framework.PullImageDataLayers + 1,
		Compression: compression,
	})
	layers, err := img.Layers()
	if err != nil {
		b.Fatal(err)
	}
	if len(layers) != framework.PullImageDataLayers+1 {
		b.Fatalf("built %d layers, want %d", len(layers), framework.PullImageDataLayers+1)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		b.Fatal(err)
	}
	bi := benchImage{id: cfg.String()}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			b.Fatal(err)
		}
		size, err := l.Size()
		if err != nil {
			b.Fatal(err)
		}
		rc, err := l.Uncompressed()
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			b.Fatal(err)
		}
		bi.layers = append(bi.layers, d.String())
		bi.compressed += size
		bi.uncompressed += n
	}
	bi.ref, _ = reg.Push(b, repoTag, img)
	b.Logf("%s: %d layers, %.1f MB compressed (%s), %.1f MB uncompressed",
		repoTag, len(layers), float64(bi.compressed)/1e6, compression, float64(bi.uncompressed)/1e6)
	return bi
}

// reportUnpacked reports the uncompressed layer bytes of img per second of
// timed pulls (MB/s-unpacked); b.SetBytes(img.compressed) gives the
// compressed rate (MB/s). It must run after the b.Loop loop: the first
// b.Loop call deletes reported metrics, and b.N is only known at the end.
func reportUnpacked(b *testing.B, img benchImage) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(img.uncompressed)*float64(b.N)/1e6/s, "MB/s-unpacked")
	}
}

// benchColdPulls pulls img into a new, empty store per iteration. Opening
// the store before and closing and deleting it after the pull are not
// timed.
func benchColdPulls(b *testing.B, img benchImage) {
	base := b.TempDir()
	certs := filepath.Join(base, "certs.d")
	if err := os.Mkdir(certs, 0o755); err != nil {
		b.Fatal(err)
	}
	var (
		s          *image.Store
		dir        string
		iter       int
		closeStore = func() {
			if s == nil {
				return
			}
			if err := s.Close(); err != nil {
				b.Errorf("closing store: %v", err)
			}
			s = nil
			for _, m := range mustMounts(b, dir) {
				b.Errorf("mount left behind: %s", m)
			}
			if err := os.RemoveAll(dir); err != nil {
				b.Fatal(err)
			}
		}
	)
	b.Cleanup(closeStore) // when an iteration fails
	b.SetBytes(img.compressed)

	for b.Loop() {
		b.StopTimer()
		iter++
		dir = filepath.Join(base, fmt.Sprintf("store-%d", iter))
		var err error
		if s, err = image.Open(context.Background(), image.Options{Dir: dir, RegistryConfigDir: certs}); err != nil {
			b.Fatal(err)
		}
		// Flush what the previous iteration and the setup left dirty, so
		// that its writeback is not billed to this pull.
		syscall.Sync()
		b.StartTimer()

		got, err := s.Pull(b.Context(), img.ref, nil)

		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if got.ID != img.id {
			b.Fatalf("pulled ID %s, want %s", got.ID, img.id)
		}
		closeStore()
		b.StartTimer()
	}
	reportUnpacked(b, img)
}

// BenchmarkPull measures pulling and unpacking an image of about 100 MB in
// five layers (half random data, half compressible) from the in-process
// registry over loopback:
//
//   - cold: into an empty store (download, decompress, unpack, record);
//   - cold-zstd: the same with zstd instead of gzip layers;
//   - warm: re-pulling the same tag into the store that already holds the
//     image — only the manifest is resolved again, nothing is downloaded or
//     unpacked (checked against the registry's blob counters).
//
// MB/s is compressed layer bytes per second (for warm: per second of the
// no-op re-pull, i.e. an effective rate), MB/s-unpacked uncompressed bytes
// per second. The images are built and pushed once, untimed.
func BenchmarkPull(b *testing.B) {
	framework.RequireRoot(b) // overlay snapshots need root
	reg := framework.StartRegistry(b, framework.RegistryOptions{})
	files := framework.PullImageFiles()
	gz := pushBenchImage(b, reg, "bench/pull:gzip", "gzip", files)
	zst := pushBenchImage(b, reg, "bench/pull:zstd", "zstd", files)

	b.Run("cold", func(b *testing.B) { benchColdPulls(b, gz) })
	b.Run("cold-zstd", func(b *testing.B) { benchColdPulls(b, zst) })
	b.Run("warm", func(b *testing.B) {
		s := testStore(b, image.Options{})
		ctx := b.Context()
		if _, err := s.Pull(ctx, gz.ref, nil); err != nil {
			b.Fatal(err)
		}
		fetched := make([]int, len(gz.layers))
		for i, l := range gz.layers {
			fetched[i] = reg.BlobFetches(l)
		}
		b.SetBytes(gz.compressed)

		for b.Loop() {
			got, err := s.Pull(ctx, gz.ref, nil)
			if err != nil {
				b.Fatal(err)
			}
			if got.ID != gz.id {
				b.Fatalf("pulled ID %s, want %s", got.ID, gz.id)
			}
		}
		reportUnpacked(b, gz)
		for i, l := range gz.layers {
			if n := reg.BlobFetches(l); n != fetched[i] {
				b.Errorf("warm pulls fetched layer %s %d times", l, n-fetched[i])
			}
		}
	})
}
