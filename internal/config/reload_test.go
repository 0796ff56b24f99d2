package config

import (
	"flag"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestChangesNamesDottedKeys(t *testing.T) {
	a := Default()
	b := Default()
	b.Log.Level = "debug"
	b.Image.PinnedImages = []string{"busybox"}
	b.Root = "/srv/berth"
	b.Metrics.Address = "127.0.0.1:9323"
	got := Changes(a, b)
	want := []string{"root", "log.level", "image.pinned_images", "metrics.address"}
	if !slices.Equal(got, want) {
		t.Fatalf("Changes = %v, want %v", got, want)
	}
	if c := Changes(a, a); len(c) != 0 {
		t.Fatalf("a config differs from itself: %v", c)
	}
	// An absent list and an empty one say the same.
	b = Default()
	b.Image.PinnedImages = nil
	if c := Changes(a, b); len(c) != 0 {
		t.Fatalf("nil and empty pinned_images differ: %v", c)
	}
}

func TestWithReloadedTakesExactlyTheReloadableKeys(t *testing.T) {
	old := Default()
	next := Default()
	next.Log.Level = "warn"
	next.Log.Format = "json"
	next.Image.PinnedImages = []string{"busybox"}
	next.Image.RegistryConfigDir = "/etc/other/certs.d"
	next.Image.MaxConcurrentDownloads = 9
	next.CNI.ConfDir = "/etc/other/net.d"
	got := old.WithReloaded(next)
	for _, key := range Changes(got, next) {
		if Reloadable(key) {
			t.Errorf("reloadable key %s not taken from the reloaded config", key)
		}
	}
	for _, key := range Changes(old, got) {
		if !Reloadable(key) {
			t.Errorf("key %s changed by a reload, but it needs a restart", key)
		}
	}
	if want := []string{"log.format", "cni.conf_dir", "image.max_concurrent_downloads"}; !slices.Equal(Changes(got, next), want) {
		t.Errorf("left for a restart: %v, want %v", Changes(got, next), want)
	}
}

// Every reloadable key is a key of the file (a typo in Reloadable would
// silently make a key need a restart).
func TestReloadableKeysExist(t *testing.T) {
	text, err := Default().TOML()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"log.level", "image.pinned_images", "image.registry_config_dir"} {
		section, name, _ := strings.Cut(key, ".")
		if !Reloadable(key) || !strings.Contains(text, "["+section+"]") || !strings.Contains(text, "\n"+name+" = ") {
			t.Errorf("%s: not reloadable or not a key of the file", key)
		}
	}
	if Reloadable("root") || Reloadable("log.format") || Reloadable("metrics.address") {
		t.Error("a key that needs a restart is reloadable")
	}
}

func TestResolveForReloadKeepsFlags(t *testing.T) {
	path := writeFile(t, "[log]\nlevel = \"warn\"\n[image]\npinned_images = [\"busybox\"]\n")
	fs := flag.NewFlagSet("berth", flag.ContinueOnError)
	f := RegisterFlags(fs)
	if err := fs.Parse([]string{"--config", path, "--log-level", "debug", "--root", "/srv/berth"}); err != nil {
		t.Fatal(err)
	}
	cfg, file, err := f.ResolveForReload()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != "debug" || cfg.Root != "/srv/berth" || !slices.Equal(cfg.Image.PinnedImages, []string{"busybox"}) {
		t.Fatalf("flags must still override the file: %+v", cfg)
	}
	if file.Log.Level != "warn" || file.Root != DefaultRoot {
		t.Fatalf("the file alone says level warn and the default root: %+v", file)
	}
	if fl, ok := f.SetBy("log.level"); !ok || fl != "log-level" {
		t.Fatalf("SetBy(log.level) = %q, %v", fl, ok)
	}
	if _, ok := f.SetBy("image.pinned_images"); ok {
		t.Fatal("no flag sets image.pinned_images")
	}
	if f.File() != path {
		t.Fatalf("File() = %q, want %q", f.File(), path)
	}
	if alone, err := f.LoadFile(); err != nil || alone.Log.Level != "warn" {
		t.Fatalf("LoadFile: %+v %v", alone.Log, err)
	}
}

// An unknown key does not hide the invalid values beside it: a reload (or
// a start) reports every problem at once.
func TestUnknownKeysAndInvalidValuesReportedTogether(t *testing.T) {
	path := writeFile(t, "bogus = 1\n[log]\nlevel = \"loud\"\n")
	_, err := resolve(t, "--config", path)
	if err == nil {
		t.Fatal("accepted an invalid file")
	}
	for _, want := range []string{`"bogus"`, `"log.level"`, "loud", path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
	// A syntax error stops at the syntax: nothing else can be trusted.
	path = writeFile(t, "[log\nlevel = \"loud\"\n")
	if _, err := resolve(t, "--config", path); err == nil || strings.Contains(err.Error(), "loud") {
		t.Fatalf("syntax error: %v", err)
	}
}

func TestMetricsValidation(t *testing.T) {
	cases := []struct {
		toml string
		want string // "" for valid
	}{
		{"[metrics]\naddress = \"127.0.0.1:9323\"\n", ""},
		{"[metrics]\naddress = \"0.0.0.0:9323\"\n", ""},
		{"[metrics]\naddress = \"127.0.0.1:9323\"\nenable_pprof = true\n", ""},
		{"[metrics]\naddress = \"[::1]:9323\"\nenable_pprof = true\n", ""},
		{"[metrics]\naddress = \"localhost:9323\"\nenable_pprof = true\n", ""},
		{"[metrics]\naddress = \":9323\"\nenable_pprof = true\n", "loopback"},
		{"[metrics]\naddress = \"10.1.2.3:9323\"\nenable_pprof = true\n", "loopback"},
		{"[metrics]\nenable_pprof = true\n", "needs metrics.address"},
		{"[metrics]\naddress = \"127.0.0.1\"\n", "host:port"},
		{"[metrics]\naddress = \"127.0.0.1:0\"\n", "1 to 65535"},
		{"[metrics]\naddress = \"127.0.0.1:70000\"\n", "1 to 65535"},
	}
	for _, tc := range cases {
		_, err := resolve(t, "--config", writeFile(t, tc.toml))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q refused: %v", tc.toml, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: want an error about %q, got %v", tc.toml, tc.want, err)
		}
	}
}

func TestMetricsOffByDefault(t *testing.T) {
	if d := Default(); d.Metrics.Address != "" || d.Metrics.EnablePprof {
		t.Fatalf("metrics must be off by default: %+v", d.Metrics)
	}
	// And the shipped file keeps them off.
	if _, err := os.Stat("../../contrib/berth.toml"); err == nil {
		cfg, err := Load("../../contrib/berth.toml", true)
		if err != nil || cfg.Metrics.Address != "" || cfg.Metrics.EnablePprof {
			t.Fatalf("contrib/berth.toml: %+v %v", cfg.Metrics, err)
		}
	}
}
