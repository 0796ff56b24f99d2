package sandbox

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
)

// Rootfs makes and removes containers' writable layers (image.Store).
type Rootfs interface {
	// PrepareRootfs creates the container's writable snapshot on the image
	// and returns how to mount it; uidMap and gidMap ("0:100000:65536"),
	// when set, ID-map it for a container in a user namespace.
	PrepareRootfs(ctx context.Context, containerID, imageRefOrID, uidMap, gidMap string) ([]mount.Mount, error)
	// RemoveRootfs deletes the snapshot; a missing one is success.
	RemoveRootfs(ctx context.Context, containerID string) error
	// PrepareImageVolume creates a read-only view of an image for the
	// container's n-th mount (an image volume) and returns how to mount it.
	PrepareImageVolume(ctx context.Context, containerID string, n int, imageRefOrID string) ([]mount.Mount, error)
	// RemoveImageVolumes deletes the container's image-volume views, which
	// must be unmounted; none is success.
	RemoveImageVolumes(ctx context.Context, containerID string) error
	// RootfsUsage is the writable layer's size in bytes and inodes.
	RootfsUsage(ctx context.Context, containerID string) (bytes, inodes uint64, err error)
	// SnapshotDir is where the writable layers live (for filesystem stats).
	SnapshotDir() string
	// RootfsOwners lists the containers with a writable layer or image
	// volumes in the store.
	RootfsOwners(ctx context.Context) ([]string, error)
}

// containerEntry is the in-memory side of a container record.
type containerEntry struct {
	// rec is read and written under Manager.mu.
	rec *Container
	// name is kubelet's name of the container, reserved while it exists.
	name string
	// lifecycle serialises Start, Stop, Remove and Update of the container.
	lifecycle sync.Mutex
	// saveMu orders record writes, so the last change is the one on disk.
	saveMu sync.Mutex
	// exited is closed once the container has exited (or is gone).
	exited     chan struct{}
	exitedOnce sync.Once
}

func newContainerEntry(c *Container, name string) *containerEntry {
	e := &containerEntry{rec: c, name: name, exited: make(chan struct{})}
	if c.State == ContainerExited {
		e.markExited()
	}
	return e
}

func (e *containerEntry) markExited() { e.exitedOnce.Do(func() { close(e.exited) }) }

// saveContainer persists the entry's current record.
func (m *Manager) saveContainer(e *containerEntry) error {
	e.saveMu.Lock()
	defer e.saveMu.Unlock()
	m.mu.RLock()
	snap := e.rec.clone()
	m.mu.RUnlock()
	return m.ctrRecords.save(&snap)
}

// lookupContainer finds a container by full ID or unique ID prefix; one
// still being created is not found.
func (m *Manager) lookupContainer(idOrPrefix string) (*containerEntry, error) {
	if idOrPrefix == "" {
		return nil, fmt.Errorf("%w: container ID is empty", errdefs.ErrInvalidArgument)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if e, ok := m.containers[idOrPrefix]; ok && e.rec.State != ContainerCreating {
		return e, nil
	}
	var found *containerEntry
	for id, e := range m.containers {
		if strings.HasPrefix(id, idOrPrefix) && e.rec.State != ContainerCreating {
			if found != nil {
				return nil, fmt.Errorf("%w: container ID prefix %q is ambiguous", errdefs.ErrInvalidArgument, idOrPrefix)
			}
			found = e
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: container %q does not exist", errdefs.ErrNotFound, idOrPrefix)
	}
	return found, nil
}

// GetContainer returns a container by ID or unique ID prefix.
func (m *Manager) GetContainer(idOrPrefix string) (Container, error) {
	e, err := m.lookupContainer(idOrPrefix)
	if err != nil {
		return Container{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return e.rec.clone(), nil
}

// ContainerFilter selects containers for ListContainers; zero fields match all.
type ContainerFilter struct {
	ID        string
	SandboxID string
	State     ContainerState
	Labels    map[string]string
}

func (f ContainerFilter) matches(c *Container) bool {
	if c.State == ContainerCreating {
		return false
	}
	if f.ID != "" && !strings.HasPrefix(c.ID, f.ID) {
		return false
	}
	if f.SandboxID != "" && !strings.HasPrefix(c.SandboxID, f.SandboxID) {
		return false
	}
	if f.State != "" && c.State != f.State {
		return false
	}
	for k, v := range f.Labels {
		if got, ok := c.Config.Spec.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// ListContainers returns the containers f selects.
func (m *Manager) ListContainers(f ContainerFilter) []Container {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Container, 0, len(m.containers))
	for _, e := range m.containers {
		if f.matches(e.rec) {
			out = append(out, e.rec.clone())
		}
	}
	return out
}

// podContainers returns the entries of a pod's containers.
func (m *Manager) podContainers(podID string) []*containerEntry {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*containerEntry
	for _, e := range m.containers {
		if e.rec.SandboxID == podID {
			out = append(out, e)
		}
	}
	return out
}
