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

// monitorLives tells a monitor that survived from one that did not. A
// monitor renewing itself (an exec from one of its threads) shows as a
// zombie for a moment, while the kernel replaces its thread group leader:
// one look at /proc then takes it for dead, and its running containers
// would be reported exited. So a monitor that does not look alive must
// also not answer: a renewing one answers once renewed (it keeps its
// listening socket), a dead one's socket refuses at once.
func monitorLives(ctx context.Context, mon *Monitor, client *monitorapi.Client) bool {
	if processAlive(mon.PID, mon.StartTime) {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, monitorStartTimeout)
	defer cancel()
	_, err := client.Hello(ctx)
	return err == nil
}
