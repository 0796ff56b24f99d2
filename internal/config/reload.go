package config

import (
	"reflect"
	"slices"
	"strings"
)

// What a reload (SIGHUP) may change in a running daemon. The daemon reads
// the file again with the same flags, validates it like at start, and then
// applies the keys below; every other key that changed needs a restart and
// is reported as such. docs/config.md says the same per key.

// Reloadable reports whether a running daemon applies a change of key
// (dotted, as in Changes) on reload.
func Reloadable(key string) bool {
	switch key {
	case "log.level", "image.pinned_images", "image.registry_config_dir":
		return true
	}
	return false
}

// WithReloaded returns c with the reloadable keys taken from next: the
// config in force after a reload of next.
func (c Config) WithReloaded(next Config) Config {
	c.Log.Level = next.Log.Level
	c.Image.PinnedImages = slices.Clone(next.Image.PinnedImages)
	c.Image.RegistryConfigDir = next.Image.RegistryConfigDir
	return c
}

// Changes lists the keys whose values differ between a and b, dotted as in
// the file ("image.pinned_images"), in the order of the Config struct. An
// absent list and an empty one are the same.
func Changes(a, b Config) []string {
	var out []string
	diffStruct(reflect.ValueOf(a), reflect.ValueOf(b), "", &out)
	return out
}

func diffStruct(a, b reflect.Value, prefix string, out *[]string) {
	t := a.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fa, fb := a.Field(i), b.Field(i)
		if fa.Kind() == reflect.Struct {
			diffStruct(fa, fb, prefix+name+".", out)
			continue
		}
		if fa.Kind() == reflect.Slice && fa.Len() == 0 && fb.Len() == 0 {
			continue
		}
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			*out = append(*out, prefix+name)
		}
	}
}

// File is the config file Resolve reads: --config, else the default path.
func (f *Flags) File() string {
	if f.configFile.set {
		return f.configFile.value
	}
	return DefaultConfigFile
}

// LoadFile reads the config file Resolve reads, over the defaults, without
// the flags and without validation: what the file alone says.
func (f *Flags) LoadFile() (Config, error) {
	return Load(f.File(), f.configFile.set)
}

// ResolveForReload is Resolve for a reload: the same file and flags. It
// also returns what the file alone says (LoadFile), so that the caller can
// tell an operator who edited a key that a flag overrides why nothing
// changed: flags keep winning on a reload, as at start.
func (f *Flags) ResolveForReload() (cfg, file Config, err error) {
	path := f.File()
	file, err = Load(path, f.configFile.set)
	cfg, err = f.resolveLoaded(file, path, err)
	if err != nil {
		return Config{}, Config{}, err
	}
	return cfg, file, nil
}

// SetBy returns the flag that set key ("log.level" is set by --log-level),
// if one was given.
func (f *Flags) SetBy(key string) (string, bool) {
	for _, o := range f.overrides {
		if o.key == key && o.isSet() {
			return o.flag, true
		}
	}
	return "", false
}
