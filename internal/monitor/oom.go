package monitor

// The OOM killer's count for a container's cgroup, read as libcontainer's
// cgroup managers do (OOMKillCount of opencontainers/cgroups fs and fs2),
// so that an exit can tell whether the OOM killer struck while the
// container ran.

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
)

// oomFile returns the file holding the OOM kill count among the cgroup
// directories of a container (by controller, "" being the cgroup v2 one):
// memory.oom_control of the v1 memory controller, else the v2
// memory.events.
func oomFile(paths map[string]string) string {
	if p := paths["memory"]; p != "" {
		return filepath.Join(p, "memory.oom_control")
	}
	if p := paths[""]; p != "" {
		return filepath.Join(p, "memory.events")
	}
	return ""
}

// oomBaseline finds the container's OOM kill count file and reads the
// count when it is created.
func oomBaseline(id string, paths map[string]string) (string, uint64) {
	file := oomFile(paths)
	if file == "" {
		slog.Warn("no OOM kill report for this container: no memory cgroup", "id", id)
		return "", 0
	}
	n, err := readOOMKills(file)
	if err != nil {
		slog.Warn("cannot read the container's OOM kill count", "id", id, "error", err)
	}
	return file, n
}

// readOOMKills reads the "oom_kill N" line of file (0 if there is none, as
// on kernels older than 4.13).
func readOOMKills(file string) (uint64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("oom_kill ")); ok {
			return strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
		}
	}
	return 0, nil
}
