package sandbox

// Startup reconciliation: after the records are loaded, whatever berth made
// that no record owns any more is found and removed — left by a crash
// between making a resource and recording it, or by a teardown that could
// not finish. Each kind is found from where berth puts it, never from the
// records alone:
//
//   - pod directories under <state>/sandboxes (namespace pins, pod files,
//     the monitor's socket), and the monitors and PID namespace holders
//     whose --dir names one of them;
//   - container bundles under <state>/containers (rootfs and image-volume
//     mounts) and the volumes directories under <root>/volumes;
//   - writable snapshots and image-volume views in the image store (by the
//     containers' leases);
//   - the pod cgroup of a pod directory no record owns (only those: other
//     berth daemons on the host may have cgroups under the same parent);
//   - CNI attachments in libcni's cache (DEL releases their addresses).
//
// Nothing found is a normal start; what was removed is logged, one line
// per kind, and a failure is logged and retried at the next start.

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/berth-runtime/berth/internal/podholder"
	"github.com/berth-runtime/berth/sandbox/monitorapi"
)

// reconcileReport counts what reconciliation removed, by kind.
type reconcileReport map[string][]string

func (r reconcileReport) add(kind, id string) { r[kind] = append(r[kind], id) }

// reconcile removes what no record owns. It runs at start, before the
// server takes requests, so nothing is being made concurrently.
func (m *Manager) reconcile(ctx context.Context) reconcileReport {
	rep := reconcileReport{}
	knownPod := func(id string) bool { _, ok := m.sandboxes[id]; return ok }
	knownCtr := func(id string) bool { _, ok := m.containers[id]; return ok }

	// Processes first: a monitor holds containers (and their mounts). A
	// pod's recorded monitor and holder stay; any other (of an unknown pod,
	// or one a crash started but never recorded) goes.
	for _, p := range m.findPodProcesses() {
		if sb := m.sandboxes[p.podID]; sb != nil {
			if !p.holder && sb.Monitor != nil && sb.Monitor.PID == p.pid {
				continue
			}
			if p.holder && sb.PIDHolder != nil && sb.PIDHolder.PID == p.pid {
				continue
			}
		}
		if p.holder {
			if err := stopHolder(ctx, &Holder{PID: p.pid, StartTime: p.startTime}); err != nil {
				m.log.ErrorContext(ctx, "could not stop a PID namespace holder no pod records", "pod_id", p.podID, "pid", p.pid, "error", err)
				continue
			}
			rep.add("holder", p.podID)
			continue
		}
		orphan := &Sandbox{ID: p.podID, Monitor: &Monitor{PID: p.pid, StartTime: p.startTime, Socket: filepath.Join(p.dir, monitorapi.SocketName)}}
		if err := m.stopMonitor(ctx, orphan); err != nil {
			m.log.ErrorContext(ctx, "could not stop a monitor no pod records", "pod_id", p.podID, "pid", p.pid, "error", err)
			continue
		}
		rep.add("monitor", p.podID)
	}

	if m.opts.Rootfs != nil { // nil only in tests of pods alone
		m.reconcileContainers(ctx, rep, knownCtr)
	}
	m.reconcilePods(ctx, rep, knownPod)
	for _, kind := range slices.Sorted(maps.Keys(rep)) {
		m.log.InfoContext(ctx, "startup reconciliation removed leftovers", "kind", kind, "count", len(rep[kind]), "ids", rep[kind])
	}
	return rep
}

// reconcileContainers removes container bundles, snapshots and volumes
// that no container record owns.
func (m *Manager) reconcileContainers(ctx context.Context, rep reconcileReport, knownCtr func(string) bool) {
	for _, id := range listDir(filepath.Join(m.opts.State, "containers")) {
		if knownCtr(id) {
			continue
		}
		c := &Container{ID: id, Dir: filepath.Join(m.opts.State, "containers", id)}
		if err := m.cleanupContainer(ctx, nil, c); err != nil {
			m.log.ErrorContext(ctx, "could not remove the bundle of an unknown container", "container_id", id, "error", err)
			continue
		}
		rep.add("container bundle", id)
	}
	if owners, err := m.opts.Rootfs.RootfsOwners(ctx); err != nil {
		m.log.ErrorContext(ctx, "cannot list the containers' snapshots", "error", err)
	} else {
		for _, id := range owners {
			if knownCtr(id) {
				continue
			}
			err := errors.Join(m.opts.Rootfs.RemoveRootfs(ctx, id), m.opts.Rootfs.RemoveImageVolumes(ctx, id))
			if err != nil {
				m.log.ErrorContext(ctx, "could not remove the snapshots of an unknown container", "container_id", id, "error", err)
				continue
			}
			rep.add("container snapshot", id)
		}
	}
	for _, id := range listDir(filepath.Join(m.opts.Root, "volumes")) {
		if knownCtr(id) {
			continue
		}
		if err := os.RemoveAll(m.volumesDir(id)); err != nil {
			m.log.ErrorContext(ctx, "could not remove the volumes of an unknown container", "container_id", id, "error", err)
			continue
		}
		rep.add("container volumes", id)
	}
}

// reconcilePods removes pod directories (with their cgroups under berth's
// default parent) and CNI attachments that no sandbox record owns.
func (m *Manager) reconcilePods(ctx context.Context, rep reconcileReport, knownPod func(string) bool) {
	for _, id := range listDir(filepath.Join(m.opts.State, "sandboxes")) {
		if knownPod(id) {
			continue
		}
		dir := filepath.Join(m.opts.State, "sandboxes", id)
		sb := &Sandbox{ID: id, Dir: dir, NetNS: filepath.Join(dir, "netns")}
		if cg, err := podCgroupPath(m.opts.CgroupDriver, "", id); err == nil {
			sb.Cgroup = CgroupState{Driver: m.opts.CgroupDriver, Path: cg, Owned: true}
		}
		if err := m.teardown(ctx, sb); err != nil {
			m.log.ErrorContext(ctx, "could not remove the directory of an unknown pod", "pod_id", id, "error", err)
			continue
		}
		rep.add("pod directory", id)
	}
	if m.opts.Network != nil {
		released, err := m.opts.Network.ReleaseOrphans(ctx, knownPod)
		for _, id := range released {
			rep.add("pod network", id)
		}
		if err != nil {
			m.log.ErrorContext(ctx, "could not release the network of every unknown pod", "error", err)
		}
	}
}

// listDir lists the entries of dir; a missing dir has none.
func listDir(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// podProcess is a monitor or PID namespace holder of a pod of this berth:
// its --dir is a pod directory under this state directory.
type podProcess struct {
	pid       int
	startTime uint64
	podID     string
	dir       string
	holder    bool
}

// findPodProcesses scans /proc for this berth's monitors and holders.
func (m *Manager) findPodProcesses() []podProcess {
	base := filepath.Join(m.opts.State, "sandboxes") + "/"
	var out []podProcess
	for _, name := range listDir("/proc") {
		pid, err := strconv.Atoi(name)
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", name, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		i := slices.Index(args, "--dir")
		if i < 0 || i+1 >= len(args) || !strings.HasPrefix(args[i+1], base) {
			continue
		}
		id := strings.TrimPrefix(args[i+1], base)
		if id == "" || strings.Contains(id, "/") {
			continue
		}
		start, err := processStartTime(pid)
		if err != nil {
			continue
		}
		out = append(out, podProcess{pid: pid, startTime: start, podID: id, dir: args[i+1],
			holder: slices.Contains(args, podholder.Command)})
	}
	return out
}
