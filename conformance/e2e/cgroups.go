package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupHierarchies lists the mounted cgroup hierarchies (every v1
// controller's and the v2 "unified" one of a hybrid host, or the single v2
// one), each once.
func cgroupHierarchies() []string {
	seen := map[string]bool{}
	var out []string
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		dir, err := filepath.EvalSymlinks(filepath.Join("/sys/fs/cgroup", e.Name()))
		if err != nil || seen[dir] {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err == nil {
			seen[dir] = true
			out = append(out, dir)
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		out = []string{"/sys/fs/cgroup"} // pure v2
	}
	return out
}

// PrepareCgroupRoot makes the cgroup /<name> in every hierarchy for the
// kubelet's cgroupRoot, so that its kubepods tree (which it makes in every
// hierarchy) stays inside a cgroup of the suite's own, and registers its
// removal. Call it before starting berth: the cleanup must run after berth
// removed the pods, whose cgroups are below it.
func PrepareCgroupRoot(tb testing.TB, name string) string {
	tb.Helper()
	root := "/" + name
	for _, h := range cgroupHierarchies() {
		dir := filepath.Join(h, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			tb.Fatalf("cgroup root: %v", err)
		}
		// A new v1 cpuset has no CPUs and no memory nodes: nothing could
		// join it or its children.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					tb.Fatalf("cgroup root: %v", err)
				}
			}
		}
	}
	tb.Cleanup(func() { removeCgroupTree(tb, name) })
	return root
}

// removeCgroupTree removes /<name> and everything below it from every
// hierarchy, deepest first. A process still in it (a container berth failed
// to remove) is killed first and reported: it is the suite's own.
func removeCgroupTree(tb testing.TB, name string) {
	for _, h := range cgroupHierarchies() {
		top := filepath.Join(h, name)
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, dir := range dirs {
			killed, err := removeCgroup(dir)
			if len(killed) > 0 {
				tb.Errorf("processes %v were left in cgroup %s after berth removed every pod; killed them", killed, dir)
			}
			if err != nil {
				tb.Errorf("remove cgroup %s: %v", dir, err)
			}
		}
	}
}

// removeCgroup removes one cgroup directory, killing what is left in it,
// and returns the PIDs it killed.
func removeCgroup(dir string) (killed []int, err error) {
	for i := 0; i < 200; i++ {
		if err = os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return killed, nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return killed, err
		}
		if b, rerr := os.ReadFile(filepath.Join(dir, "cgroup.procs")); rerr == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, perr := strconv.Atoi(f); perr == nil && unix.Kill(pid, unix.SIGKILL) == nil && !slices.Contains(killed, pid) {
					killed = append(killed, pid)
				}
			}
		}
		time.Sleep(25 * time.Millisecond) // killed processes leave asynchronously
	}
	return killed, err
}
