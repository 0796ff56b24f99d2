package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-runtime/berth/network"
	"github.com/berth-runtime/berth/sandbox/monitorapi"
)

// recover loads the sandbox records at start. A sandbox whose creation a
// crash cut off is rolled back (its resources released, CNI DEL included);
// a ready sandbox whose network namespace did not survive (a reboot) is
// marked not ready, as kubelet expects, and can be removed cleanly.
func (m *Manager) recover(ctx context.Context) {
	// A crash during a record's atomic write leaves its temporary file;
	// nothing writes records yet, so every one is such a leftover.
	for _, dir := range []string{m.records.dir, m.ctrRecords.dir} {
		m.removeTempRecords(ctx, dir)
	}
	sandboxes, bad := m.records.loadAll()
	for name, err := range bad {
		m.log.ErrorContext(ctx, "skipping unreadable sandbox record", "file", name, "error", err)
	}
	var procs []podProcess // this berth's monitors and holders, looked up once if needed
	procsRead := false
	for _, sb := range sandboxes {
		log := m.log.With("pod_id", sb.ID)
		if sb.State == StateCreating {
			if sb.PIDHolder == nil || sb.Monitor == nil {
				if !procsRead {
					procs, procsRead = m.findPodProcesses(), true
				}
				adoptUnrecorded(sb, procs)
			}
			if err := m.teardown(ctx, sb); err != nil {
				log.ErrorContext(ctx, "could not roll back an interrupted RunPodSandbox; retrying at the next start", "error", err)
				continue
			}
			if err := m.records.delete(sb.ID); err != nil {
				log.ErrorContext(ctx, "could not delete the record of a rolled-back sandbox", "error", err)
			}
			log.InfoContext(ctx, "rolled back an interrupted RunPodSandbox")
			m.observer().RolledBack(RollbackPodSandbox)
			continue
		}
		if sb.State == StateReady && !sb.Config.HostNetwork && !network.NetNSExists(sb.NetNS) {
			sb.State = StateNotReady
			if err := m.records.save(sb); err != nil {
				log.ErrorContext(ctx, "could not record a sandbox as not ready", "error", err)
			}
			log.InfoContext(ctx, "pod sandbox lost its network namespace (reboot?): not ready")
		}
		m.sandboxes[sb.ID] = sb
		m.reserveExisting(sb)
	}
	m.recoverContainers(ctx)
	m.reportReconciled(m.reconcile(ctx))
}

// removeTempRecords deletes the temporary files atomicfile.WriteFile left in
// a record directory (".<id>.json.tmp-<n>") when berth died mid-write.
func (m *Manager) removeTempRecords(ctx context.Context, dir string) {
	for _, name := range listDir(dir) {
		if !strings.HasPrefix(name, ".") || !strings.Contains(name, ".json.tmp-") {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !os.IsNotExist(err) {
			m.log.ErrorContext(ctx, "could not remove a record's leftover temporary file", "file", name, "error", err)
			continue
		}
		m.log.InfoContext(ctx, "removed a record's temporary file left by a crash", "file", name)
	}
}

// adoptUnrecorded gives a sandbox whose creation a crash cut off the PID
// namespace holder and the monitor it had started but not yet recorded,
// found by their --dir, so that the rollback ends them: they are in the
// pod cgroup, which cannot be removed while they live.
func adoptUnrecorded(sb *Sandbox, procs []podProcess) {
	for _, p := range procs {
		if p.podID != sb.ID {
			continue
		}
		switch {
		case p.holder && sb.PIDHolder == nil:
			sb.PIDHolder = &Holder{PID: p.pid, StartTime: p.startTime, Pin: filepath.Join(p.dir, "pid")}
		case !p.holder && sb.Monitor == nil:
			sb.Monitor = &Monitor{PID: p.pid, StartTime: p.startTime, Socket: filepath.Join(p.dir, monitorapi.SocketName)}
		}
	}
}
