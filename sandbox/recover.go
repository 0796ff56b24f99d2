package sandbox

import (
	"context"

	"github.com/berth-runtime/berth/network"
)

// recover loads the sandbox records at start. A sandbox whose creation a
// crash cut off is rolled back (its resources released, CNI DEL included);
// a ready sandbox whose network namespace did not survive (a reboot) is
// marked not ready, as kubelet expects, and can be removed cleanly.
func (m *Manager) recover(ctx context.Context) {
	sandboxes, bad := m.records.loadAll()
	for name, err := range bad {
		m.log.ErrorContext(ctx, "skipping unreadable sandbox record", "file", name, "error", err)
	}
	for _, sb := range sandboxes {
		log := m.log.With("pod_id", sb.ID)
		if sb.State == StateCreating {
			if err := m.teardown(ctx, sb); err != nil {
				log.ErrorContext(ctx, "could not roll back an interrupted RunPodSandbox; retrying at the next start", "error", err)
				continue
			}
			if err := m.records.delete(sb.ID); err != nil {
				log.ErrorContext(ctx, "could not delete the record of a rolled-back sandbox", "error", err)
			}
			log.InfoContext(ctx, "rolled back an interrupted RunPodSandbox")
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
	m.reconcile(ctx)
}
