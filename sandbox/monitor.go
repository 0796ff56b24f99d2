package sandbox

// The pod's monitor process (cmd/berth-monitor): started with the pod, in
// RunPodSandbox beside the namespaces and the CNI ADD (so that the first
// CreateContainer does not wait for it), parent of the pod's containers,
// ended when the pod is removed.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-runtime/berth/internal/reaper"
	"github.com/berth-runtime/berth/sandbox/monitorapi"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Monitor is the record of a pod's monitor process.
type Monitor struct {
	PID int `json:"pid"`
	// StartTime tells our monitor from a process that reused its PID.
	StartTime uint64 `json:"start_time"`
	Socket    string `json:"socket"`
}

// monitorStartTimeout bounds how long a new monitor may take to listen.
const monitorStartTimeout = 10 * time.Second

// monitorClient returns the client of sb's monitor, or NotFound-free nil
// when the pod never had one (no containers were ever created).
func (m *Manager) monitorClient(sb *Sandbox) *monitorapi.Client {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if sb.Monitor == nil {
		return nil
	}
	return monitorapi.NewClient(sb.Monitor.Socket)
}

// ensureMonitor returns a client of sb's monitor, starting the monitor if
// the pod has none (or it is gone). The caller holds sb's lock.
func (m *Manager) ensureMonitor(ctx context.Context, sb *Sandbox) (*monitorapi.Client, error) {
	if mon := sb.Monitor; mon != nil {
		c := monitorapi.NewClient(mon.Socket)
		if h, err := c.Hello(ctx); err == nil && h.Pid == mon.PID {
			m.watchMonitor(sb.ID, c)
			return c, nil
		}
		// A monitor that died before the pod had a container cost nothing
		// (and the pod's containers nothing): start another.
		if m.podHadContainers(sb.ID) || monitorLives(ctx, mon, c) {
			return nil, fmt.Errorf("%w: the monitor of pod sandbox %s (pid %d) is not answering: stop and remove the pod",
				errdefs.ErrUnavailable, sb.ID, mon.PID)
		}
		m.log.WarnContext(ctx, "the pod monitor is gone before the pod had a container; starting another", "pod_id", sb.ID, "monitor_pid", mon.PID)
		m.unwatchMonitor(sb.ID)
	}
	// Pods from before monitors started with them get theirs here.
	mon, err := m.startMonitor(ctx, sb)
	if err != nil {
		return nil, err
	}
	old := sb.Monitor
	m.mu.Lock()
	sb.Monitor = mon
	m.mu.Unlock()
	if err := m.records.save(sb); err != nil {
		m.killMonitor(mon)
		m.mu.Lock()
		sb.Monitor = old
		m.mu.Unlock()
		return nil, err
	}
	return m.monitorStarted(sb.ID, mon), nil
}

// monitorStarted counts a recorded new monitor and follows its events.
func (m *Manager) monitorStarted(podID string, mon *Monitor) *monitorapi.Client {
	m.observer().MonitorStarted(podID)
	c := monitorapi.NewClient(mon.Socket)
	m.watchMonitor(podID, c)
	return c
}

// podHadContainers says whether any container of the pod got past
// creating: one the monitor created, ran or saw exit.
func (m *Manager) podHadContainers(podID string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, e := range m.containers {
		if e.rec.SandboxID == podID && e.rec.State != ContainerCreating {
			return true
		}
	}
	return false
}

// startMonitorAsync starts sb's monitor in the background and returns what
// waits for it. Without a monitor binary (tests of pods alone) it starts
// none, and CreateContainer says why.
func (m *Manager) startMonitorAsync(ctx context.Context, sb *Sandbox) (await func() (*Monitor, error)) {
	if m.opts.MonitorBinary == "" {
		return func() (*Monitor, error) { return nil, nil }
	}
	type result struct {
		mon *Monitor
		err error
	}
	done := make(chan result, 1)
	go func() {
		mon, err := m.startMonitor(ctx, sb)
		done <- result{mon, err}
	}()
	return func() (*Monitor, error) {
		r := <-done
		return r.mon, r.err
	}
}

// startMonitor runs the monitor binary for sb in a session of its own (so
// it outlives this daemon), in the pod cgroup, and waits until it listens.
func (m *Manager) startMonitor(ctx context.Context, sb *Sandbox) (*Monitor, error) {
	if m.opts.MonitorBinary == "" {
		return nil, fmt.Errorf("%w: no berth-monitor binary configured (runtime.monitor_path)", errdefs.ErrFailedPrecondition)
	}
	logFile, err := os.OpenFile(filepath.Join(sb.Dir, "monitor.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("monitor log: %w", err)
	}
	defer logFile.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	args := append(append([]string(nil), m.opts.MonitorArgs...),
		"--dir", sb.Dir, "--pod", sb.ID, "--helper", m.opts.MonitorHelper, "--log-level", m.opts.MonitorLogLevel)
	cmd := exec.Command(m.opts.MonitorBinary, args...)
	// One P is all a monitor needs; set here, it spares the monitor the
	// re-exec it does to get it otherwise.
	cmd.Env = append(os.Environ(), "BERTH_MONITOR_READY_FD=3", "GOMAXPROCS=1")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = sb.Dir
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: start the pod monitor %s: %v", errdefs.ErrFailedPrecondition, m.opts.MonitorBinary, err)
	}
	mon := &Monitor{PID: cmd.Process.Pid, Socket: filepath.Join(sb.Dir, monitorapi.SocketName)}
	// Reap it should it exit while this daemon is its parent.
	reaper.Reap(cmd.Process)
	fail := func(err error) (*Monitor, error) {
		m.killMonitor(mon)
		if tail := logTail(logFile.Name(), 512); tail != "" {
			err = fmt.Errorf("%w; its log ends: %s", err, tail)
		}
		return nil, fmt.Errorf("pod monitor of sandbox %s: %w", sb.ID, err)
	}
	if mon.StartTime, err = processStartTime(mon.PID); err != nil {
		return fail(err)
	}
	if err := LoadPodCgroup(sb.Cgroup).AddProcess(mon.PID); err != nil {
		return fail(err)
	}
	// As the parent of the pod's containers it should be the OOM killer's
	// last choice, like a shim or conmon.
	adj := strconv.Itoa(ClampOOMScoreAdj(sandboxOOMScoreAdj))
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", mon.PID), []byte(adj), 0); err != nil {
		return fail(err)
	}
	if err := awaitReady(ctx, readyR); err != nil {
		return fail(err)
	}
	return mon, nil
}

// logTail returns the last n bytes of a file, trimmed; "" if unreadable.
func logTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return strings.TrimSpace(string(b))
}

// awaitReady reads the monitor's readiness line.
func awaitReady(ctx context.Context, r *os.File) error {
	deadline := time.Now().Add(monitorStartTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = r.SetReadDeadline(deadline)
	line, err := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case line == "ok":
		return nil
	case line != "":
		return fmt.Errorf("%w: it did not start: %s", errdefs.ErrUnknown, line)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w: it did not listen within %s", context.DeadlineExceeded, time.Until(deadline).Round(time.Second))
	default:
		return fmt.Errorf("%w: it exited before it listened", errdefs.ErrUnknown)
	}
}

// stopMonitor ends sb's monitor once its containers are deleted, and
// forgets it. A monitor already gone is success.
func (m *Manager) stopMonitor(ctx context.Context, sb *Sandbox) error {
	mon := sb.Monitor
	if mon == nil {
		return nil
	}
	m.unwatchMonitor(sb.ID)
	if client := monitorapi.NewClient(mon.Socket); monitorLives(ctx, mon, client) {
		m.removeStrays(ctx, sb.ID, client)
		err := client.Shutdown(ctx)
		if errdefs.IsFailedPrecondition(err) {
			return fmt.Errorf("stop the monitor of pod sandbox %s: %w", sb.ID, err)
		}
		// Gone or not answering: make sure it ends.
		if err != nil || !waitGone(ctx, mon) {
			m.killMonitor(mon)
			if !waitGone(ctx, mon) {
				return fmt.Errorf("the monitor (pid %d) of pod sandbox %s did not end after SIGKILL", mon.PID, sb.ID)
			}
		}
	}
	m.mu.Lock()
	sb.Monitor = nil
	m.mu.Unlock()
	return nil
}

// removeStrays kills and deletes containers the monitor holds that berth
// has no record of: a CreateContainer whose caller gave up while the
// monitor was still creating, so that the rollback's delete came first.
// Without this the monitor would refuse to shut down and the pod could
// never be removed.
func (m *Manager) removeStrays(ctx context.Context, podID string, client *monitorapi.Client) {
	states, err := client.List(ctx)
	if err != nil {
		return
	}
	for _, st := range states {
		m.mu.RLock()
		_, known := m.containers[st.ID]
		m.mu.RUnlock()
		if known {
			continue
		}
		m.log.WarnContext(ctx, "removing a container the pod monitor holds but berth has no record of", "pod_id", podID, "container_id", st.ID)
		_ = client.Kill(ctx, st.ID, int(unix.SIGKILL), true)
		deadline := time.Now().Add(10 * time.Second)
		for err := client.Delete(ctx, st.ID); errdefs.IsFailedPrecondition(err) && time.Now().Before(deadline); err = client.Delete(ctx, st.ID) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// waitGone waits briefly for a monitor that was asked to exit.
func waitGone(ctx context.Context, mon *Monitor) bool {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(2 * time.Second)
	// Gone means reaped, not just exited: a zombie still counts in the pod
	// cgroup, which cannot be removed before.
	for processExists(mon.PID, mon.StartTime) {
		select {
		case <-ctx.Done():
			return false
		case <-deadline:
			return false
		case <-t.C:
		}
	}
	return true
}

// monitorLives tells a monitor that lives from one that died. /proc alone
// cannot: a monitor renewing itself (an exec from one of its threads other
// than the main one) shows as a zombie for a moment, while the kernel
// replaces its thread group leader, and taking it for dead would report
// its running containers exited or leave it running unowned. So a monitor
// that does not look alive must also not answer: a renewing one answers
// once renewed (its listening socket stays open across the exec), a dead
// one's socket refuses at once.
func monitorLives(ctx context.Context, mon *Monitor, client *monitorapi.Client) bool {
	if processAlive(mon.PID, mon.StartTime) {
		return true
	}
	if !processExists(mon.PID, mon.StartTime) {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, monitorStartTimeout)
	defer cancel()
	h, err := client.Hello(ctx)
	return err == nil && h.Pid == mon.PID
}

// killMonitor SIGKILLs a monitor if it still is the process recorded (a
// zombie included: it may be one renewing itself).
func (m *Manager) killMonitor(mon *Monitor) {
	if mon.PID > 0 && (mon.StartTime == 0 || processExists(mon.PID, mon.StartTime)) {
		_ = unix.Kill(mon.PID, unix.SIGKILL)
	}
}

// processAlive says whether pid is still the process that started at
// startTime and has not exited (a zombie counts as gone).
// processExists reports whether the process is there, running or a zombie.
func processExists(pid int, startTime uint64) bool {
	exists, _ := holderState(&Holder{PID: pid, StartTime: startTime})
	return exists
}

func processAlive(pid int, startTime uint64) bool {
	exists, zombie := holderState(&Holder{PID: pid, StartTime: startTime})
	return exists && !zombie
}
