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

// record is what a recordStore keeps: sandboxes and containers.
type record interface {
	recordID() string
}

func (s *Sandbox) recordID() string { return s.ID }

// recordStore keeps one JSON file per record under a directory of the root
// (<root>/sandboxes, <root>/containers), written atomically before the RPC
// that changed it returns. It lives in the root, not the state dir, so that
// sandboxes and containers are still known after a reboot.
type recordStore[T any, P interface {
	*T
	record
}] struct{ dir string }

func (r recordStore[T, P]) path(id string) string { return filepath.Join(r.dir, id+".json") }

func (r recordStore[T, P]) save(rec P) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode record %s: %w", rec.recordID(), err)
	}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(r.path(rec.recordID()), b, 0o600)
}

func (r recordStore[T, P]) delete(id string) error {
	if err := os.Remove(r.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove record %s: %w", id, err)
	}
	return atomicfile.SyncDir(r.dir)
}

// loadAll reads every record; unreadable ones are returned as errors by
// file name and do not stop the others from loading.
func (r recordStore[T, P]) loadAll() ([]P, map[string]error) {
	entries, err := os.ReadDir(r.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	bad := map[string]error{}
	if err != nil {
		bad[r.dir] = err
		return nil, bad
	}
	var out []P
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.dir, name))
		rec := P(new(T))
		if err == nil {
			err = json.Unmarshal(b, rec)
		}
		if err == nil && rec.recordID()+".json" != name {
			err = fmt.Errorf("record names %q", rec.recordID())
		}
		if err != nil {
			bad[name] = err
			continue
		}
		out = append(out, rec)
	}
	return out, bad
}
