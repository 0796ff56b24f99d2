package config

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// Flags holds the command-line overrides. Register them on a FlagSet, parse,
// then Resolve: flags override the file, the file overrides the defaults.
type Flags struct {
	configFile stringValue
	overrides  []override
}

// override binds one flag to one config key.
type override struct {
	flag  string
	key   string
	isSet func() bool
	apply func(*Config)
}

// RegisterFlags defines berth's daemon flags on fs. Their names are an
// interface: tests and operators script them.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.Var(&f.configFile, "config", "config file (TOML; default "+DefaultConfigFile+", which may be absent)")
	str := func(name, key, usage string, field func(*Config) *string) {
		v := &stringValue{}
		fs.Var(v, name, usage)
		f.overrides = append(f.overrides, override{flag: name, key: key, isSet: func() bool { return v.set },
			apply: func(c *Config) { *field(c) = v.value }})
	}
	str("listen", "listen", "CRI endpoint, a unix:// URL (default "+DefaultListen+")", func(c *Config) *string { return &c.Listen })
	str("listen-group", "listen_group", "group (name or GID) that owns the CRI socket (default: root's)", func(c *Config) *string { return &c.ListenGroup })
	str("root", "root", "directory for persistent data (default "+DefaultRoot+")", func(c *Config) *string { return &c.Root })
	str("state", "state", "directory for runtime state (default "+DefaultState+")", func(c *Config) *string { return &c.State })
	str("registry-config-dir", "image.registry_config_dir", "registry hosts in containerd's certs.d/<host>/hosts.toml layout (default "+DefaultRegistryConfigDir+")",
		func(c *Config) *string { return &c.Image.RegistryConfigDir })
	str("cni-conf-dir", "cni.conf_dir", "CNI network config directory (default "+DefaultCNIConfDir+")", func(c *Config) *string { return &c.CNI.ConfDir })
	str("streaming-address", "streaming.address", "exec/attach/port-forward server address (default "+DefaultStreamingAddress+")",
		func(c *Config) *string { return &c.Streaming.Address })
	str("cgroup-driver", "cgroup_driver", "cgroupfs or systemd (default cgroupfs)", func(c *Config) *string { return &c.CgroupDriver })
	str("metrics-address", "metrics.address", "Prometheus metrics address, host:port (default: off; see docs/config.md for non-loopback)",
		func(c *Config) *string { return &c.Metrics.Address })
	str("log-level", "log.level", "debug, info, warn or error (default info)", func(c *Config) *string { return &c.Log.Level })
	str("log-format", "log.format", "text or json (default text)", func(c *Config) *string { return &c.Log.Format })

	bins := &listValue{}
	fs.Var(bins, "cni-bin-dir", "CNI plugin directory; repeat for several (default "+strings.Join(DefaultCNIBinDirs(), " and ")+")")
	f.overrides = append(f.overrides, override{flag: "cni-bin-dir", key: "cni.bin_dirs", isSet: func() bool { return len(bins.values) > 0 },
		apply: func(c *Config) { c.CNI.BinDirs = append([]string(nil), bins.values...) }})
	return f
}

// Resolve loads the config file, applies the flags that were given and
// validates the result.
func (f *Flags) Resolve() (Config, error) {
	path := f.File()
	cfg, err := Load(path, f.configFile.set)
	return f.resolveLoaded(cfg, path, err)
}

// resolveLoaded finishes Resolve on what Load returned. A file whose only
// fault is unknown keys is validated as well, so that every problem is
// reported at once.
func (f *Flags) resolveLoaded(cfg Config, path string, loadErr error) (Config, error) {
	var unknown *unknownKeysError
	if loadErr != nil && !errors.As(loadErr, &unknown) {
		return cfg, loadErr
	}
	cfg, err := f.applyAndValidate(cfg, path)
	if loadErr != nil {
		return cfg, errors.Join(loadErr, err)
	}
	return cfg, err
}

// applyAndValidate applies the flags that were given to cfg, read from
// path, and validates the result.
func (f *Flags) applyAndValidate(cfg Config, path string) (Config, error) {
	origins := Origins{Flags: map[string]string{}}
	if fileExists(path) {
		origins.File = path
	}
	for _, o := range f.overrides {
		if o.isSet() {
			o.apply(&cfg)
			origins.Flags[o.key] = o.flag
		}
	}
	if err := cfg.Validate(origins); err != nil {
		return cfg, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

type stringValue struct {
	value string
	set   bool
}

func (v *stringValue) String() string { return v.value }
func (v *stringValue) Set(s string) error {
	v.value, v.set = s, true
	return nil
}

type listValue struct{ values []string }

func (v *listValue) String() string { return strings.Join(v.values, ",") }
func (v *listValue) Set(s string) error {
	v.values = append(v.values, s)
	return nil
}
