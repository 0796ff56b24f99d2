package sandbox

// Usage of pod sandboxes for the CRI stats RPCs: the pod cgroup's counters,
// a CPU rate against the previous sample, and the pod network's interfaces.

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/berth-runtime/berth/network"
	"github.com/containerd/errdefs"
)

// PodStats is a sandbox's usage at one moment.
type PodStats struct {
	// Sandbox is a copy of the sandbox as it was listed.
	Sandbox Sandbox
	Cgroup  *CgroupStats
	// CPUNanoCores is the CPU usage rate in nanocores (CPU nanoseconds per
	// second) since the previous sample of this sandbox at least
	// minRateWindow older; 0 on the first sample.
	CPUNanoCores uint64
	// Interfaces are the counters of every interface of the pod's network
	// namespace but loopback, read at NetworkTimestamp. Only ready
	// sandboxes with a network namespace of their own have them.
	Interfaces       []network.IfaceStats
	NetworkTimestamp time.Time
	// DefaultInterface names the pod network's interface (eth0) when it is
	// among Interfaces.
	DefaultInterface string
}

// Stats returns the usage of a sandbox by ID or unique ID prefix. A sandbox
// whose cgroup or (while ready) network namespace is gone is
// errdefs.ErrNotFound, like a missing sandbox.
func (m *Manager) Stats(ctx context.Context, idOrPrefix string) (*PodStats, error) {
	sb, err := m.Get(idOrPrefix)
	if err != nil {
		return nil, err
	}
	m.dropRemovedStats()
	return m.podStats(ctx, sb)
}

// ListStats returns the usage of the sandboxes matching f, oldest first.
// Sandboxes removed while being read, or whose cgroup or network namespace
// vanished (kubelet deletes a stopped pod's cgroup before it removes the
// sandbox), are left out rather than failing everyone's stats.
func (m *Manager) ListStats(ctx context.Context, f Filter) ([]PodStats, error) {
	m.dropRemovedStats()
	sbs := m.List(f)
	out := make([]PodStats, 0, len(sbs))
	for _, sb := range sbs {
		ps, err := m.podStats(ctx, sb)
		if errdefs.IsNotFound(err) {
			m.log.DebugContext(ctx, "no stats for pod sandbox", "pod_id", sb.ID, "error", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *ps)
	}
	return out, nil
}

func (m *Manager) podStats(ctx context.Context, sb Sandbox) (*PodStats, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cg, err := LoadPodCgroup(sb.Cgroup).Stats()
	if err != nil {
		return nil, fmt.Errorf("stats of pod sandbox %s: %w", sb.ID, err)
	}
	out := &PodStats{Sandbox: sb, Cgroup: cg, CPUNanoCores: m.stats.cpuRate(sb.ID, cg.Timestamp, cg.CPUUsageNanos)}
	if sb.State != StateReady || sb.Config.HostNetwork || sb.NetNS == "" {
		// A host-network pod's interfaces are the node's: kubelet reports
		// those as node stats, not as the pod's.
		return out, nil
	}
	ifaces, err := network.InterfaceStats(sb.NetNS)
	if errdefs.IsNotFound(err) && !m.isReady(sb.ID) {
		// Stopped since it was listed: report it as the stopped sandbox it
		// now is, without network, rather than not at all.
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("network stats of pod sandbox %s: %w", sb.ID, err)
	}
	out.Interfaces, out.NetworkTimestamp = ifaces, time.Now()
	if slices.ContainsFunc(ifaces, func(i network.IfaceStats) bool { return i.Name == network.DefaultInterface }) {
		out.DefaultInterface = network.DefaultInterface
	}
	return out, nil
}

func (m *Manager) isReady(id string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	sb, ok := m.sandboxes[id]
	return ok && sb.State == StateReady
}

// dropRemovedStats forgets the CPU samples of sandboxes and containers that
// no longer exist.
func (m *Manager) dropRemovedStats() {
	m.mu.RLock()
	defer m.mu.RUnlock()
	m.stats.retain(func(id string) bool {
		_, sb := m.sandboxes[id]
		_, ctr := m.containers[id]
		return sb || ctr
	})
}

// minRateWindow is the shortest window a CPU rate is computed over. Callers
// poll independently (kubelet's summary every 10s, its /metrics/cadvisor on
// each scrape): a call just after another would otherwise replace a
// 10-second average with a noisy millisecond one, and shorten the window of
// the next call too.
const minRateWindow = time.Second

// statsCache keeps each sandbox's previous CPU sample, to turn the
// cumulative usage into a rate. Its zero value is ready to use; its lock is
// never held while taking Manager.mu.
type statsCache struct {
	mu   sync.Mutex
	prev map[string]cpuSample
}

type cpuSample struct {
	at    time.Time
	usage uint64 // cumulative CPU nanoseconds
	rate  uint64 // nanocores over the window that ended at `at`
}

// cpuRate records usage (cumulative CPU nanoseconds) taken at `at` and
// returns the rate since the previous sample of the sandbox.
func (c *statsCache) cpuRate(id string, at time.Time, usage uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.prev == nil {
		c.prev = map[string]cpuSample{}
	}
	prev, ok := c.prev[id]
	cur := cpuSample{at: at, usage: usage}
	switch window := at.Sub(prev.at); {
	case !ok:
		// The first sample: there is no rate to give yet.
	case window < minRateWindow:
		// Too close to the previous sample (or taken before it by a
		// concurrent caller): repeat its rate and keep it as the base.
		return prev.rate
	case usage < prev.usage:
		// The counter restarted (a cgroup made anew under the same path):
		// this sample is a new first one.
	default:
		cur.rate = uint64(float64(usage-prev.usage) * float64(time.Second) / float64(window))
	}
	c.prev[id] = cur
	return cur.rate
}

// retain drops the samples of sandboxes keep says are gone.
func (c *statsCache) retain(keep func(id string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.prev {
		if !keep(id) {
			delete(c.prev, id)
		}
	}
}
