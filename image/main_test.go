package image_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-runtime/berth/conformance/framework"
	"github.com/berth-runtime/berth/image"
)

func TestMain(m *testing.M) { framework.Main(m) }

// testStore opens an image store in a temp dir; registryConfigDir may be "".
func testStore(t testing.TB, opts image.Options) *image.Store {
	t.Helper()
	framework.RequireRoot(t) // overlay snapshots need root
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "image")
	}
	if opts.RegistryConfigDir == "" {
		opts.RegistryConfigDir = filepath.Join(t.TempDir(), "certs.d")
	}
	if opts.Log == nil && os.Getenv("BERTH_TEST_VERBOSE") != "" {
		opts.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := image.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		for _, m := range mustMounts(t, opts.Dir) {
			t.Errorf("mount left behind: %s", m)
		}
	})
	return s
}

func mustMounts(t testing.TB, dir string) []string {
	mounts, err := framework.MountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	return mounts
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
