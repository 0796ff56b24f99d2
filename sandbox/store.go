package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-runtime/berth/internal/atomicfile"
)

// recordStore keeps one JSON file per sandbox under <root>/sandboxes, written
// atomically before the RPC that changed it returns. It lives in the root,
// not the state dir, so that sandboxes are still known after a reboot.
type recordStore struct{ dir string }

func (r recordStore) path(id string) string { return filepath.Join(r.dir, id+".json") }

func (r recordStore) save(s *Sandbox) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode sandbox %s: %w", s.ID, err)
	}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(r.path(s.ID), b, 0o600)
}

func (r recordStore) delete(id string) error {
	if err := os.Remove(r.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove sandbox record %s: %w", id, err)
	}
	return atomicfile.SyncDir(r.dir)
}

// loadAll reads every record; unreadable ones are returned as errors by
// file name and do not stop the others from loading.
func (r recordStore) loadAll() ([]*Sandbox, map[string]error) {
	entries, err := os.ReadDir(r.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	bad := map[string]error{}
	if err != nil {
		bad[r.dir] = err
		return nil, bad
	}
	var out []*Sandbox
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.dir, name))
		var s Sandbox
		if err == nil {
			err = json.Unmarshal(b, &s)
		}
		if err == nil && s.ID+".json" != name {
			err = fmt.Errorf("record names sandbox %q", s.ID)
		}
		if err != nil {
			bad[name] = err
			continue
		}
		out = append(out, &s)
	}
	return out, bad
}
