package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-runtime/berth/internal/podholder"
	"github.com/berth-runtime/berth/internal/reaper"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Holder is the process that is PID 1 of a pod's PID namespace (pid: POD).
// Without it the namespace could not outlive its first container; it
// never needs an image: it is the lean monitor binary ("berth-monitor
// pod-holder", internal/podholder), a small Go process.
type Holder struct {
	PID int `json:"pid"`
	// StartTime (clock ticks since boot, /proc/<pid>/stat field 22) tells
	// our holder from an unrelated process that reused its PID.
	StartTime uint64 `json:"start_time"`
	// Pin is the bind mount of its PID namespace, for containers to join.
	Pin string `json:"pin"`
}

// sandboxOOMScoreAdj is what kubelet and containerd give a pod's infra process.
const sandboxOOMScoreAdj = -998

// startHolder starts the pod's PID namespace holder in a new session (so it
// outlives a daemon restart), moves it into the pod cgroup and pins its PID
// namespace at dir/pid.
func startHolder(ctx context.Context, bin []string, dir string, cg *PodCgroup) (*Holder, error) {
	if len(bin) == 0 || bin[0] == "" {
		return nil, fmt.Errorf("%w: no berth-monitor binary to run the pod's PID namespace holder (runtime.monitor_path)", errdefs.ErrFailedPrecondition)
	}
	cmd := exec.Command(bin[0], append(bin[1:], podholder.Command, "--dir", dir)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the pod's PID namespace holder: %w", err)
	}
	h := &Holder{PID: cmd.Process.Pid, Pin: filepath.Join(dir, "pid")}
	// Reap it if it exits while this daemon is its parent; after a daemon
	// restart, init is.
	reaper.Reap(cmd.Process)
	start, err := processStartTime(h.PID)
	if err == nil && cg != nil {
		err = cg.AddProcess(h.PID)
	}
	if err == nil {
		h.StartTime = start
		// Like an infra container, the holder should be the last thing the
		// OOM killer picks (-998, as containerd gives sandboxes), clamped to
		// what this process may set.
		adj := strconv.Itoa(ClampOOMScoreAdj(sandboxOOMScoreAdj))
		err = os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", h.PID), []byte(adj), 0)
	}
	if err == nil {
		err = pinNamespace(fmt.Sprintf("/proc/%d/ns/pid", h.PID), h.Pin)
	}
	if err != nil {
		_ = stopHolder(ctx, h)
		return nil, fmt.Errorf("pod PID namespace: %w", err)
	}
	return h, nil
}

// stopHolder ends the holder (and with it every process in the pod's PID
// namespace) and unpins the namespace. A holder already gone is success.
func stopHolder(ctx context.Context, h *Holder) error {
	if h == nil {
		return nil
	}
	if exists, zombie := holderState(h); exists && !zombie {
		if err := unix.Kill(h.PID, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("stop PID namespace holder %d: %w", h.PID, err)
		}
	}
	// Wait until it is reaped (by this daemon, or by init after a daemon
	// restart), not just dead: a zombie still counts in the pod cgroup,
	// which cannot be removed before.
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		if exists, _ := holderState(h); !exists {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("PID namespace holder %d did not exit: %w", h.PID, ctx.Err())
		case <-time.After(delay):
		}
	}
	return unpinNamespace(h.Pin)
}

// holderState reports whether h's process still exists (the same process,
// not a new one that reused its PID) and whether it is a zombie.
func holderState(h *Holder) (exists, zombie bool) {
	if h.PID <= 0 {
		return false, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", h.PID))
	if err != nil {
		return false, false
	}
	fields := statFields(string(b))
	if len(fields) < 20 {
		return false, false
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil || start != h.StartTime {
		return false, false
	}
	return true, fields[0] == "Z"
}

func processStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	fields := statFields(string(b))
	if len(fields) < 20 {
		return 0, fmt.Errorf("%w: unexpected /proc/%d/stat", errdefs.ErrUnknown, pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// statFields returns /proc/<pid>/stat from the state field (3rd) on; the
// command name before it may contain spaces and parentheses.
func statFields(stat string) []string {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(stat[i+1:])
}

func pinNamespace(src, pin string) error {
	f, err := os.OpenFile(pin, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("create namespace pin %s: %w", pin, err)
	}
	f.Close()
	if err := unix.Mount(src, pin, "", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(pin)
		return fmt.Errorf("pin %s at %s: %w", src, pin, err)
	}
	return nil
}

func unpinNamespace(pin string) error {
	if pin == "" {
		return nil
	}
	if err := unix.Unmount(pin, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpin %s: %w", pin, err)
	}
	if err := os.Remove(pin); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pin %s: %w", pin, err)
	}
	return nil
}
