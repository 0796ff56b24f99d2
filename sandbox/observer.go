package sandbox

// What the manager tells an operator's metrics: an Observer is called on
// events (monitors started and lost, leftovers cleaned at start), and
// Counts is read at scrape time. This package knows nothing of Prometheus;
// cri wires the Observer to it.

import "strings"

// Observer receives the manager's countable events. Its methods are called
// on the manager's paths, some with its lock held: they must be quick and
// must not call back into the manager.
type Observer interface {
	// MonitorStarted: a pod's monitor process was started.
	MonitorStarted(podID string)
	// MonitorDied: a pod's monitor was found gone while berth followed it
	// (or at start); lost is the number of running containers that cost.
	MonitorDied(podID string, lost int)
	// RolledBack: at start, a RunPodSandbox or CreateContainer that a
	// crash cut off was undone; kind is "pod_sandbox" or "container".
	RolledBack(kind string)
	// OrphansRemoved: at start, reconciliation removed n leftovers of one
	// kind that no record owned ("monitor", "pod_directory", ...).
	OrphansRemoved(kind string, n int)
}

// Kinds of RolledBack.
const (
	RollbackPodSandbox = "pod_sandbox"
	RollbackContainer  = "container"
)

// nopObserver is the Observer of a manager given none.
type nopObserver struct{}

func (nopObserver) MonitorStarted(string)      {}
func (nopObserver) MonitorDied(string, int)    {}
func (nopObserver) RolledBack(string)          {}
func (nopObserver) OrphansRemoved(string, int) {}

// observer returns the configured Observer, or one that does nothing.
func (m *Manager) observer() Observer {
	if m.opts.Observer == nil {
		return nopObserver{}
	}
	return m.opts.Observer
}

// Counts is how many pods and containers the manager has, by state, and how
// many pods have a monitor.
type Counts struct {
	Pods       map[State]int
	Containers map[ContainerState]int
	Monitors   int
}

// Counts counts the pods and containers by state. It only reads the
// in-memory maps under the read lock (no copies, no I/O), so a metrics
// scrape never holds up a request for long.
func (m *Manager) Counts() Counts {
	c := Counts{Pods: map[State]int{}, Containers: map[ContainerState]int{}}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, sb := range m.sandboxes {
		c.Pods[sb.State]++
		if sb.Monitor != nil {
			c.Monitors++
		}
	}
	for _, e := range m.containers {
		c.Containers[e.rec.State]++
	}
	return c
}

// reportReconciled tells the observer what reconciliation removed, by kind
// ("pod directory" becomes "pod_directory": label values without spaces).
func (m *Manager) reportReconciled(rep reconcileReport) {
	for kind, ids := range rep {
		m.observer().OrphansRemoved(strings.ReplaceAll(kind, " ", "_"), len(ids))
	}
}

// reportContainerCleanup tells the observer of a container record removed
// at start: a CreateContainer cut off by a crash (still creating) is a
// rollback, a container whose pod is gone an orphan.
func (m *Manager) reportContainerCleanup(state ContainerState) {
	if state == ContainerCreating {
		m.observer().RolledBack(RollbackContainer)
		return
	}
	m.observer().OrphansRemoved("container_record", 1)
}
