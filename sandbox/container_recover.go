package sandbox

import (
	"context"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
)

// recoverContainers loads the container records at start, after the
// sandboxes: a CreateContainer cut off by a crash is rolled back, a
// container whose sandbox is gone is removed, and the monitors of the pods
// are followed again (their first events bring every container's state up
// to date, including exits that happened while berth was down). A pod whose
// monitor did not survive (a reboot) has its containers reported exited.
func (m *Manager) recoverContainers(ctx context.Context) {
	ctrs, bad := m.ctrRecords.loadAll()
	for name, err := range bad {
		m.log.ErrorContext(ctx, "skipping unreadable container record", "file", name, "error", err)
	}
	for _, c := range ctrs {
		log := m.log.With("pod_id", c.SandboxID, "container_id", c.ID)
		sb := m.sandboxes[c.SandboxID]
		if c.State == ContainerCreating || sb == nil {
			if err := m.cleanupContainer(ctx, sb, c); err != nil {
				log.ErrorContext(ctx, "could not clean up a container left half-made or without its pod; retrying at the next start", "error", err)
				continue
			}
			if err := m.ctrRecords.delete(c.ID); err != nil {
				log.ErrorContext(ctx, "could not delete the record of a cleaned-up container", "error", err)
			}
			log.InfoContext(ctx, "removed a container left half-made or without its pod", "state", c.State)
			m.reportContainerCleanup(c.State)
			continue
		}
		name := nameKey(sb, c.Config.Metadata)
		m.containers[c.ID] = newContainerEntry(c, name)
		m.ctrNames[name] = c.ID
	}
	for _, sb := range m.sandboxes {
		mon := sb.Monitor
		if mon == nil {
			continue
		}
		client := monitorapi.NewClient(mon.Socket)
		if monitorLives(ctx, mon, client) {
			m.watchMonitor(sb.ID, client)
			continue
		}
		m.monitorDied(sb.ID, mon.PID)
	}
}
