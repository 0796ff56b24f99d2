package main

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/berth-runtime/berth/internal/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeTarget records what a reload hands the CRI server.
type fakeTarget struct {
	mu      sync.Mutex
	applied []config.Config
}

func (f *fakeTarget) Reload(_ context.Context, cfg config.Config) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, cfg)
}

type reloadFixture struct {
	path   string
	r      *reloader
	target *fakeTarget
	logs   *bytes.Buffer
}

// newReloadFixture is a reloader as serve makes it, over a config file
// with content and the given extra flags.
func newReloadFixture(t *testing.T, content string, args ...string) *reloadFixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "berth.toml")
	writeConfig(t, path, content)
	fs := flag.NewFlagSet("berth", flag.ContinueOnError)
	flags := config.RegisterFlags(fs)
	if err := fs.Parse(append([]string{"--config", path}, args...)); err != nil {
		t.Fatal(err)
	}
	cfg, err := flags.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	file, err := flags.LoadFile()
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	log, level := newLogger(cfg, logs)
	reg := prometheus.NewRegistry()
	stats, err := newReloadMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	target := &fakeTarget{}
	return &reloadFixture{path: path, target: target, logs: logs,
		r: &reloader{flags: flags, current: cfg, file: file, level: level, target: target, log: log, metrics: stats}}
}

func writeConfig(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReloadAppliesReloadableKeys(t *testing.T) {
	f := newReloadFixture(t, "[log]\nlevel = \"info\"\n")
	writeConfig(t, f.path, "[log]\nlevel = \"debug\"\n[image]\npinned_images = [\"busybox\"]\nregistry_config_dir = \"/etc/mirrors\"\n")
	if !f.r.reload(context.Background()) {
		t.Fatalf("valid reload refused:\n%s", f.logs)
	}
	if f.r.level.Level() != slog.LevelDebug {
		t.Errorf("log level %v after reloading debug", f.r.level.Level())
	}
	if len(f.target.applied) != 1 {
		t.Fatalf("server got %d reloads, want 1", len(f.target.applied))
	}
	got := f.target.applied[0]
	if !slices.Equal(got.Image.PinnedImages, []string{"busybox"}) || got.Image.RegistryConfigDir != "/etc/mirrors" {
		t.Errorf("server got %+v", got.Image)
	}
	logs := f.logs.String()
	for _, want := range []string{"config reloaded", "log.level", "image.pinned_images", "image.registry_config_dir"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "need a restart") {
		t.Errorf("only reloadable keys changed, yet a restart is asked for:\n%s", logs)
	}
	if v := testutil.ToFloat64(f.r.metrics.total.WithLabelValues("success")); v != 1 {
		t.Errorf("berth_config_reloads_total{result=success} = %v", v)
	}
}

func TestReloadNamesKeysThatNeedARestart(t *testing.T) {
	f := newReloadFixture(t, "")
	writeConfig(t, f.path, "root = \"/srv/berth\"\n[log]\nformat = \"json\"\nlevel = \"warn\"\n")
	if !f.r.reload(context.Background()) {
		t.Fatalf("valid reload refused:\n%s", f.logs)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "need a restart") || !strings.Contains(logs, "root") || !strings.Contains(logs, "log.format") {
		t.Errorf("restart keys not named:\n%s", logs)
	}
	// The level applied; root and format stay as they run.
	if f.r.level.Level() != slog.LevelWarn || f.r.current.Root != config.DefaultRoot || f.r.current.Log.Format != "text" {
		t.Errorf("in force after reload: level %v, %+v", f.r.level.Level(), f.r.current)
	}
	// Still not in effect at the next reload: named again.
	f.logs.Reset()
	f.r.reload(context.Background())
	if !strings.Contains(f.logs.String(), "root") {
		t.Errorf("second reload forgot that root still needs a restart:\n%s", f.logs)
	}
}

// Turning the level down still shows that the reload happened.
func TestReloadConfirmationSurvivesQuieterLevel(t *testing.T) {
	f := newReloadFixture(t, "[log]\nlevel = \"info\"\n")
	writeConfig(t, f.path, "[log]\nlevel = \"error\"\n")
	if !f.r.reload(context.Background()) {
		t.Fatalf("valid reload refused:\n%s", f.logs)
	}
	if f.r.level.Level() != slog.LevelError || !strings.Contains(f.logs.String(), "config reloaded") {
		t.Fatalf("level %v; log:\n%s", f.r.level.Level(), f.logs)
	}
	f.logs.Reset()
	f.r.log.Warn("quiet now")
	if f.logs.Len() != 0 {
		t.Fatalf("a warning got through level error: %s", f.logs)
	}
}

func TestInvalidReloadKeepsRunningConfig(t *testing.T) {
	for name, content := range map[string]string{
		"syntax":      "[log\nlevel = \"debug\"\n",
		"unknown key": "[log]\nlevel = \"debug\"\nlevle = \"warn\"\n",
		"bad value":   "[log]\nlevel = \"debug\"\n[image]\nmax_concurrent_downloads = 0\n",
	} {
		t.Run(name, func(t *testing.T) {
			f := newReloadFixture(t, "[log]\nlevel = \"info\"\n")
			before := f.r.current
			writeConfig(t, f.path, content)
			if f.r.reload(context.Background()) {
				t.Fatal("invalid file accepted")
			}
			if f.r.level.Level() != slog.LevelInfo || len(f.target.applied) != 0 || len(config.Changes(before, f.r.current)) != 0 {
				t.Fatalf("a refused reload changed something: level %v, %d server reloads", f.r.level.Level(), len(f.target.applied))
			}
			logs := f.logs.String()
			if !strings.Contains(logs, "config reload refused") || !strings.Contains(logs, f.path) {
				t.Errorf("refusal not logged with the file:\n%s", logs)
			}
			if v := testutil.ToFloat64(f.r.metrics.successful); v != 0 {
				t.Errorf("berth_config_last_reload_successful = %v after a refusal", v)
			}
			// Fixed, the next reload applies.
			writeConfig(t, f.path, "[log]\nlevel = \"debug\"\n")
			if !f.r.reload(context.Background()) || f.r.level.Level() != slog.LevelDebug {
				t.Fatalf("fixed file not applied:\n%s", logs)
			}
		})
	}
}

func TestReloadExplainsFlagOverrides(t *testing.T) {
	f := newReloadFixture(t, "[log]\nlevel = \"info\"\n", "--log-level", "warn")
	writeConfig(t, f.path, "[log]\nlevel = \"debug\"\n")
	if !f.r.reload(context.Background()) {
		t.Fatalf("valid reload refused:\n%s", f.logs)
	}
	if f.r.level.Level() != slog.LevelWarn {
		t.Errorf("flag --log-level warn lost to the file: level %v", f.r.level.Level())
	}
	if !strings.Contains(f.logs.String(), "log.level (flag --log-level)") {
		t.Errorf("the flag override is not explained:\n%s", f.logs)
	}
}

func TestProblemsSplitsEveryProblem(t *testing.T) {
	f := newReloadFixture(t, "")
	writeConfig(t, f.path, "bogus = 1\n[log]\nlevel = \"loud\"\nformat = \"xml\"\n")
	_, _, err := f.r.flags.ResolveForReload()
	if err == nil {
		t.Fatal("accepted")
	}
	p := problems(err)
	if len(p) != 3 {
		t.Fatalf("want 3 problems (unknown key, level, format), got %d: %q", len(p), p)
	}
}
