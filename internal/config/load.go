package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	toml "github.com/pelletier/go-toml/v2"
)

// ValueError is returned by a value's parser; the loader adds the key and file.
type ValueError struct {
	Value  string
	Reason string
}

func (e *ValueError) Error() string { return fmt.Sprintf("%q is %s", e.Value, e.Reason) }

// unknownKeysError is a file that parsed but has keys berth does not read.
// The known keys were decoded all the same, so their values can still be
// validated and every problem reported at once.
type unknownKeysError struct{ msg string }

func (e *unknownKeysError) Error() string { return e.msg }

// Load reads the TOML file at path over the defaults. A missing file is not an
// error when mustExist is false (the default path may legitimately be absent);
// any unknown key, wrong type or unparsable value is, and the error names the
// file, the line and the key. With unknown keys only, the returned config
// holds the values of the known ones.
func Load(path string, mustExist bool) (Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !mustExist {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("config file %s: %w", path, err)
	}
	if err := decode(data, &cfg); err != nil {
		var unknown *unknownKeysError
		if !errors.As(err, &unknown) {
			cfg = Default()
		}
		return cfg, fmt.Errorf("config file %s: %w", path, err)
	}
	if cfg.Version == 0 {
		cfg.Version = CurrentVersion
	}
	return cfg, nil
}

func decode(data []byte, cfg *Config) error {
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(cfg)
	if err == nil {
		return nil
	}
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var msgs []string
		for _, e := range strict.Errors {
			row, _ := e.Position()
			msgs = append(msgs, fmt.Sprintf("line %d: unknown key %q (see docs/config.md for the keys berth reads)", row, joinKey(e.Key())))
		}
		return &unknownKeysError{msg: strings.Join(msgs, "; ")}
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if key := joinKey(de.Key()); key != "" {
			return fmt.Errorf("line %d: key %q: %s", row, key, msg)
		}
		return fmt.Errorf("line %d: %s", row, msg)
	}
	return err
}

func joinKey(k toml.Key) string { return strings.Join(k, ".") }

// TOML renders the config as a TOML document, as `berth config` prints it.
func (c Config) TOML() (string, error) {
	b, err := toml.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("render config as TOML: %w", err)
	}
	return string(b), nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
