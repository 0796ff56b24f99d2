package sandbox

import (
	"sync"
	"time"
)

// EventType is a lifecycle change of a container or a sandbox, as the CRI's
// GetContainerEvents reports them.
type EventType int

// Event types (values as in the CRI's ContainerEventType).
const (
	EventContainerCreated EventType = 0
	EventContainerStarted EventType = 1
	EventContainerStopped EventType = 2
	EventContainerDeleted EventType = 3
)

// Event is one lifecycle change. For sandbox events ContainerID is "" and
// Sandbox says so.
type Event struct {
	Type        EventType
	ContainerID string
	SandboxID   string
	// Sandbox: the event is about the pod sandbox itself.
	Sandbox bool
	At      time.Time
}

// eventBufferSize is how many events a slow subscriber may lag behind
// before it is dropped (kubelet then relists).
const eventBufferSize = 1024

// eventBus fans events out to subscribers without ever blocking a publisher.
type eventBus struct {
	mu   sync.Mutex
	subs map[chan Event]struct{}
}

// Subscribe returns a channel of events from now on, and a function that
// ends the subscription. The channel is closed when the subscription ends,
// also when the subscriber fell too far behind.
func (m *Manager) Subscribe() (<-chan Event, func()) {
	b := &m.events
	ch := make(chan Event, eventBufferSize)
	b.mu.Lock()
	if b.subs == nil {
		b.subs = map[chan Event]struct{}{}
	}
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	return ch, func() { b.drop(ch) }
}

func (b *eventBus) drop(ch chan Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[ch]; ok {
		delete(b.subs, ch)
		close(ch)
	}
}

// publish sends ev to every subscriber; one whose buffer is full is dropped.
func (m *Manager) publish(ev Event) {
	b := &m.events
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- ev:
		default:
			delete(b.subs, ch)
			close(ch)
			m.log.Warn("dropping a container event subscriber that fell behind")
		}
	}
}
