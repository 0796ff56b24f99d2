package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-runtime/berth/conformance/framework"
)

// cleanup stops both daemons and removes what they left: by then runBench
// has removed the pods through the CRI (which releases IPs, netns, mounts
// and cgroups the supported way), so what follows only sweeps what a
// failure left. Only the bench's own processes, mounts, cgroups and bridge
// are touched: processes by PID or by the work directory in their command
// line, mounts below the work directory, cgroups below the run's prefix.
func (e *compareEnv) cleanup(c *config) error {
	var errs []error
	for _, d := range []*daemon{e.berth, e.containerd} {
		if err := d.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	// Monitors (--dir <state>/...) and shims (-address <socket>) outlive
	// their daemons only when pods were left.
	for _, pid := range processesReferring(e.dir) {
		fmt.Fprintf(os.Stderr, "killing leftover process %d\n", pid)
		_ = syscallKill(pid)
	}
	if err := e.waitMountNSGone(); err != nil {
		errs = append(errs, err)
	}
	if c.cgroupPrefix != "" {
		if err := removeCgroupTree(c.cgroupPrefix, true); err != nil {
			errs = append(errs, err)
		}
	}
	mounts, err := framework.MountsUnder(e.dir)
	if err != nil {
		errs = append(errs, err)
	}
	for _, m := range mounts {
		fmt.Fprintf(os.Stderr, "unmounting leftover %s\n", m)
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	if exec.Command("ip", "link", "show", "dev", e.bridge).Run() == nil {
		if out, err := exec.Command("ip", "link", "del", e.bridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip link del %s: %v: %s", e.bridge, err, out))
		}
	}
	if left, _ := framework.MountsUnder(e.dir); len(left) > 0 {
		errs = append(errs, fmt.Errorf("mounts left under %s, not removing it: %v", e.dir, left))
	} else if c.keep || len(errs) > 0 {
		fmt.Fprintf(os.Stderr, "kept %s (logs: berth/berth.log, containerd/containerd.log)\n", e.dir)
	} else if err := os.RemoveAll(e.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// processesReferring lists processes whose command line contains dir.
func processesReferring(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(dir)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitMountNSGone waits until no process is left in containerd's mount
// namespace (so that its mounts are gone), killing stragglers: only
// containerd and what it started can be in it.
func (e *compareEnv) waitMountNSGone() error {
	if e.ctrdMntNS == "" {
		return nil
	}
	for i := range 100 {
		var in []int
		entries, _ := os.ReadDir("/proc")
		for _, d := range entries {
			pid, err := strconv.Atoi(d.Name())
			if err != nil {
				continue
			}
			if ns, err := os.Readlink(filepath.Join("/proc", d.Name(), "ns", "mnt")); err == nil && ns == e.ctrdMntNS {
				in = append(in, pid)
			}
		}
		if len(in) == 0 {
			return nil
		}
		if i == 50 {
			for _, pid := range in {
				fmt.Fprintf(os.Stderr, "killing process %d left in containerd's mount namespace\n", pid)
				_ = syscallKill(pid)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("processes still in containerd's mount namespace %s", e.ctrdMntNS)
}
