package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// cluster is the one cluster of the test process, made by TestMain when
// the suite is enabled; nil otherwise.
var cluster *Cluster

// TestMain brings the cluster up once, runs the scenarios against it and
// tears it down.
func TestMain(m *testing.M) {
	if !Enabled() {
		os.Exit(m.Run()) // every scenario skips, saying why
	}
	os.Exit(runWithCluster(m))
}

func runWithCluster(m *testing.M) (code int) {
	dir, err := os.MkdirTemp("", "berth-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The pods' root runs as root but must be able to search down to
	// kubelet volumes and berth's state.
	if err := os.Chmod(dir, 0o711); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tb := NewMainTB("TestMain", dir, os.Stderr)
	c := NewCluster(dir)
	defer func() {
		start := time.Now()
		tb.RunCleanups()
		fmt.Fprintf(os.Stderr, "e2e: cluster torn down in %v\n", time.Since(start).Round(time.Millisecond))
		if tb.Failed() {
			code = 1
		}
		if os.Getenv(KeepLogsEnv) == "1" || code != 0 {
			if c.Berth != nil { // its log is in a framework temp dir
				_ = os.Rename(c.Berth.LogPath, filepath.Join(c.LogDir, "berth.log"))
			}
			fmt.Fprintf(os.Stderr, "e2e: logs kept in %s\n", c.LogDir)
			removeAllBut(dir, "logs")
		} else {
			os.RemoveAll(dir)
		}
	}()
	start := time.Now()
	if err := tb.RunSetup(func() { c.Start(tb) }); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cluster setup failed after %v: %v\n%s", time.Since(start).Round(time.Millisecond), err, c.LogTails(40))
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: cluster up in %v\n", time.Since(start).Round(time.Millisecond))
	cluster = c
	return m.Run()
}

// removeAllBut empties dir except for the entry keep.
func removeAllBut(dir, keep string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != keep {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// getCluster returns the cluster, or skips t when the suite is not enabled.
func getCluster(t *testing.T) *Cluster {
	t.Helper()
	if cluster == nil {
		t.Skipf("end-to-end tests need a real kubelet and control plane: run `make e2e` (or set %s=1, %s and BERTH_CNI_PLUGINS, as root)", GateEnv, K8sBinEnv)
	}
	cluster.LogOnFailure(t)
	return cluster
}
