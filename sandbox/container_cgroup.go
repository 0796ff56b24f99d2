package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// removeContainerCgroup kills whatever is left in a container's cgroup and
// removes it. The monitor does this when a container exits; this is for a
// container whose monitor is gone (it died, or a reboot came between), so
// that neither its processes nor its cgroup outlive its removal.
func removeContainerCgroup(ctx context.Context, st CgroupState) error {
	if st.Path == "" {
		return nil
	}
	cg := LoadPodCgroup(CgroupState{Driver: st.Driver, Path: st.Path, Owned: true})
	mgr, err := cg.manager()
	if err != nil {
		return err
	}
	if !anyExists(mgr) {
		return nil
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Second)
	for {
		alive := 0
		for _, p := range mgr.GetPaths() {
			pids, err := cgroups.GetAllPids(p)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("list processes of container cgroup %s: %w", st.Path, err)
			}
			for _, pid := range pids {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
			alive += len(pids)
		}
		if alive == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("container cgroup %s: %d processes did not die after SIGKILL", st.Path, alive)
		case <-tick.C:
		}
	}
	return cg.Remove()
}
