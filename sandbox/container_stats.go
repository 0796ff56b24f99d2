package sandbox

// Usage of containers for the CRI container stats RPCs: the container
// cgroup's counters with a CPU rate, and the writable layer's usage.

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
)

// ContainerStats is a container's usage at one moment.
type ContainerStats struct {
	// Container is a copy of the container as it was listed.
	Container Container
	// Cgroup is nil for a container that is not running (no cgroup).
	Cgroup       *CgroupStats
	CPUNanoCores uint64
	// Writable layer usage, read at WritableTimestamp.
	WritableBytes, WritableInodes uint64
	WritableTimestamp             time.Time
	// WritableMountpoint is the filesystem the writable layer lives on.
	WritableMountpoint string
}

// ContainerStats returns the usage of a container by ID or unique prefix.
func (m *Manager) ContainerStats(ctx context.Context, idOrPrefix string) (*ContainerStats, error) {
	c, err := m.GetContainer(idOrPrefix)
	if err != nil {
		return nil, err
	}
	m.dropRemovedStats()
	return m.containerStats(ctx, c)
}

// ListContainerStats returns the usage of the containers f selects;
// containers removed while being read are left out.
func (m *Manager) ListContainerStats(ctx context.Context, f ContainerFilter) ([]ContainerStats, error) {
	m.dropRemovedStats()
	ctrs := m.ListContainers(f)
	out := make([]ContainerStats, 0, len(ctrs))
	for _, c := range ctrs {
		cs, err := m.containerStats(ctx, c)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *cs)
	}
	return out, nil
}

func (m *Manager) containerStats(ctx context.Context, c Container) (*ContainerStats, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := &ContainerStats{Container: c, WritableMountpoint: m.opts.Rootfs.SnapshotDir()}
	if c.State == ContainerRunning {
		cg, err := LoadPodCgroup(c.Cgroup).Stats()
		switch {
		case errdefs.IsNotFound(err):
			// Exited since it was listed: no cgroup usage to report.
		case err != nil:
			return nil, fmt.Errorf("stats of container %s: %w", c.ID, err)
		default:
			out.Cgroup = cg
			out.CPUNanoCores = m.stats.cpuRate(c.ID, cg.Timestamp, cg.CPUUsageNanos)
		}
	}
	bytes, inodes, err := m.opts.Rootfs.RootfsUsage(ctx, c.ID)
	if err != nil {
		return nil, fmt.Errorf("writable layer usage of container %s: %w", c.ID, err)
	}
	out.WritableBytes, out.WritableInodes, out.WritableTimestamp = bytes, inodes, time.Now()
	return out, nil
}
