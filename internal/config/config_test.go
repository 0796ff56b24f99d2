package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "berth.toml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func resolve(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("berth", flag.ContinueOnError)
	f := RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return f.Resolve()
}

func TestDefaultsAreValid(t *testing.T) {
	if err := Default().Validate(Origins{}); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestMissingDefaultFileMeansDefaults(t *testing.T) {
	cfg, err := Load(filepath.Join(t.TempDir(), "absent.toml"), false)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Listen != DefaultListen || cfg.Root != DefaultRoot {
		t.Fatalf("got %+v, want defaults", cfg)
	}
}

func TestMissingExplicitFileIsAnError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent.toml")
	_, err := resolve(t, "--config", missing)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("want an error naming %s, got %v", missing, err)
	}
}

func TestFileOverridesDefaults(t *testing.T) {
	path := writeFile(t, `
root = "/srv/berth"
cgroup_driver = "systemd"
shutdown_timeout = "3s"
[cni]
bin_dirs = ["/usr/libexec/cni"]
[log]
format = "json"
`)
	cfg, err := resolve(t, "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Root != "/srv/berth" || cfg.CgroupDriver != "systemd" || cfg.Log.Format != "json" {
		t.Fatalf("file values not applied: %+v", cfg)
	}
	if cfg.ShutdownTimeout.Std() != 3*time.Second {
		t.Fatalf("shutdown_timeout = %v, want 3s", cfg.ShutdownTimeout.Std())
	}
	if got := strings.Join(cfg.CNI.BinDirs, ","); got != "/usr/libexec/cni" {
		t.Fatalf("bin_dirs = %q: the file's list must replace the default, not extend it", got)
	}
	if cfg.State != DefaultState || cfg.Log.Level != "info" {
		t.Fatalf("keys absent from the file must keep their defaults: %+v", cfg)
	}
}

func TestFlagsOverrideFile(t *testing.T) {
	path := writeFile(t, "root = \"/srv/berth\"\n[cni]\nconf_dir = \"/srv/net.d\"\n")
	cfg, err := resolve(t, "--config", path, "--root", "/a", "--cni-bin-dir", "/b1", "--cni-bin-dir", "/b2",
		"--listen", "unix:///tmp/x.sock", "--log-level", "debug", "--metrics-address", "127.0.0.1:9323")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Root != "/a" || cfg.CNI.ConfDir != "/srv/net.d" || cfg.Listen != "unix:///tmp/x.sock" || cfg.Log.Level != "debug" ||
		cfg.Metrics.Address != "127.0.0.1:9323" {
		t.Fatalf("flags not applied over file: %+v", cfg)
	}
	if got := strings.Join(cfg.CNI.BinDirs, ","); got != "/b1,/b2" {
		t.Fatalf("repeated --cni-bin-dir = %q, want /b1,/b2", got)
	}
	if cfg.SocketPath() != "/tmp/x.sock" {
		t.Fatalf("SocketPath = %q", cfg.SocketPath())
	}
}

func TestFileErrorsNameKeyAndFile(t *testing.T) {
	cases := []struct {
		name, content string
		want          []string
	}{
		{"unknown key", "cgroup_drivr = \"systemd\"\n", []string{"unknown key", `"cgroup_drivr"`, "line 1"}},
		{"unknown nested key", "[cni]\nconf_dir = \"/x\"\nbin_dir = \"/y\"\n", []string{"unknown key", `"cni.bin_dir"`, "line 3"}},
		{"unknown section", "[plugins]\nx = 1\n", []string{"unknown key"}},
		{"wrong type", "root = 5\n", []string{`"root"`, "line 1"}},
		{"wrong list type", "[cni]\nbin_dirs = \"/opt/cni/bin\"\n", []string{`"cni.bin_dirs"`}},
		{"bad duration", "shutdown_timeout = \"ten\"\n", []string{`"shutdown_timeout"`, "not a duration"}},
		{"syntax", "root = \n", []string{"line 1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.content)
			_, err := resolve(t, "--config", path)
			if err == nil {
				t.Fatal("accepted an invalid file")
			}
			for _, w := range append(tc.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestInvalidValuesNameTheirOrigin(t *testing.T) {
	path := writeFile(t, "cgroup_driver = \"cgroupsfs\"\nlisten = \"tcp://0.0.0.0:1\"\n")
	_, err := resolve(t, "--config", path, "--log-format", "xml", "--root", "relative/dir")
	if err == nil {
		t.Fatal("accepted invalid values")
	}
	for _, w := range []string{
		`key "cgroup_driver" in ` + path, `"cgroupsfs"`,
		`key "listen" in ` + path,
		"flag --log-format", `"xml"`,
		"flag --root", "absolute path",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	cases := map[string]func(*Config){
		"listen without three slashes": func(c *Config) { c.Listen = "unix://run/berth.sock" },
		"listen path too long":         func(c *Config) { c.Listen = "unix:///" + strings.Repeat("a", 120) },
		"state equals root":            func(c *Config) { c.State = c.Root + "/" },
		"no cni bin dirs":              func(c *Config) { c.CNI.BinDirs = nil },
		"relative cni bin dir":         func(c *Config) { c.CNI.BinDirs = []string{"bin"} },
		"zero shutdown timeout":        func(c *Config) { c.ShutdownTimeout = 0 },
		"bad log level":                func(c *Config) { c.Log.Level = "verbose" },
		"streaming without port":       func(c *Config) { c.Streaming.Address = "127.0.0.1" },
		"streaming port out of range":  func(c *Config) { c.Streaming.Address = "127.0.0.1:70000" },
		"future config version":        func(c *Config) { c.Version = 2 },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := Default()
			mutate(&cfg)
			if err := cfg.Validate(Origins{}); err == nil {
				t.Fatalf("accepted %+v", cfg)
			}
		})
	}
}

func TestTOMLRoundTrip(t *testing.T) {
	cfg := Default()
	cfg.CgroupDriver = CgroupDriverSystemd
	cfg.ShutdownTimeout = Duration(90 * time.Second)
	text, err := cfg.TOML()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Load(writeFile(t, text), true)
	if err != nil {
		t.Fatalf("printed config does not load back: %v\n%s", err, text)
	}
	if back.JSON() != cfg.JSON() {
		t.Fatalf("round trip changed the config:\n%s\n%s", cfg.JSON(), back.JSON())
	}
}

// The shipped default file must load and say exactly what the defaults say.
func TestContribConfigIsTheDefault(t *testing.T) {
	cfg, err := Load("../../contrib/berth.toml", true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.JSON() != Default().JSON() {
		t.Fatalf("contrib/berth.toml differs from the defaults:\n%s\n%s", cfg.JSON(), Default().JSON())
	}
}

// Every key berth reads is documented in docs/config.md.
func TestEveryKeyIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	text, err := Default().TOML()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(text, "\n") {
		key, _, ok := strings.Cut(strings.TrimSpace(line), " = ")
		if !ok {
			continue
		}
		if !strings.Contains(string(doc), "| `"+key+"` |") {
			t.Errorf("config key %q is not documented in docs/config.md", key)
		}
	}
}
