package network

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/berth-runtime/berth/internal/atomicfile"
)

// MoveCache moves libcni's cache from an older location (berth kept it in
// the state directory, which a reboot empties) to its place in the root,
// so the pods created before an upgrade keep their DEL. Entries already at
// the new place win; each file is written durably before the old one goes.
// A missing old cache is nothing to do.
func MoveCache(from, to string) error {
	if _, err := os.Stat(from); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if _, err := os.Stat(dst); err == nil {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return atomicfile.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		return fmt.Errorf("move the CNI cache from %s to %s: %w", from, to, err)
	}
	return os.RemoveAll(from)
}
