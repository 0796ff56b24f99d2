package monitor

// The events stream: a subscriber first gets the current state of every
// container, then each change. A subscriber that cannot keep up is dropped
// (its connection closed; it reconnects and gets the current state again)
// rather than ever blocking the monitor.

import (
	"encoding/json"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/berth-runtime/berth/sandbox/monitorapi"
)

const (
	// subscriberBuffer is how many events a subscriber may lag behind.
	subscriberBuffer = 64
	// eventWriteTimeout drops a subscriber that does not read.
	eventWriteTimeout = 10 * time.Second
)

// subscriber is one open events connection.
type subscriber struct {
	conn *net.UnixConn
	ch   chan monitorapi.Event
	gone bool // guarded by monitor.mu
	// pending counts the events queued or being written: a renewal waits
	// for none.
	pending atomic.Int32
}

// dropLocked ends the subscription; its writer then closes the connection.
// The caller holds monitor.mu.
func (s *subscriber) dropLocked() {
	if !s.gone {
		s.gone = true
		close(s.ch)
	}
}

// subscribe serves an events connection until it ends. It calls started
// once the current state is sent.
func (m *monitor) subscribe(conn *net.UnixConn, started func()) {
	_ = conn.SetDeadline(time.Time{})
	s := &subscriber{conn: conn, ch: make(chan monitorapi.Event, subscriberBuffer)}
	m.mu.Lock()
	select {
	case <-m.stopped:
		m.mu.Unlock()
		_ = conn.Close()
		return
	default:
	}
	// Taken with the registration under one lock: nothing is missed or
	// sent twice.
	var initial []monitorapi.Event
	for _, st := range m.statesLocked() {
		switch st.Status {
		case monitorapi.StatusRunning:
			initial = append(initial, monitorapi.Event{Type: monitorapi.EventStarted, State: st})
		case monitorapi.StatusStopped:
			initial = append(initial, monitorapi.Event{Type: monitorapi.EventExited, State: st})
		}
	}
	m.subs[s] = struct{}{}
	m.mu.Unlock()

	go m.watchClosed(s)
	enc := json.NewEncoder(conn)
	for _, ev := range initial {
		if !s.send(enc, ev) {
			m.unsubscribe(s)
			return
		}
	}
	started()
	m.pump(s, enc)
}

// pump writes s's events until it ends.
func (m *monitor) pump(s *subscriber, enc *json.Encoder) {
	defer m.unsubscribe(s)
	for ev := range s.ch {
		ok := s.send(enc, ev)
		s.pending.Add(-1)
		if !ok {
			return
		}
	}
}

// send writes one event.
func (s *subscriber) send(enc *json.Encoder, ev monitorapi.Event) bool {
	_ = s.conn.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
	if err := enc.Encode(ev); err != nil {
		slog.Debug("events subscriber gone", "error", err)
		return false
	}
	return true
}

// unsubscribe ends s and closes its connection.
func (m *monitor) unsubscribe(s *subscriber) {
	m.mu.Lock()
	delete(m.subs, s)
	s.dropLocked()
	m.mu.Unlock()
	_ = s.conn.Close()
}

// watchClosed notices a subscriber that hung up (it sends nothing after
// its request), so it does not linger until the next event.
func (m *monitor) watchClosed(s *subscriber) {
	var b [1]byte
	_, _ = s.conn.Read(b[:])
	m.mu.Lock()
	delete(m.subs, s)
	s.dropLocked()
	m.mu.Unlock()
}

// emitLocked sends c's current state as an event of type t to every
// subscriber. The caller holds monitor.mu.
func (m *monitor) emitLocked(t monitorapi.EventType, c *container) {
	ev := monitorapi.Event{Type: t, State: c.st}
	for s := range m.subs {
		s.pending.Add(1)
		select {
		case s.ch <- ev:
		default:
			s.pending.Add(-1)
			slog.Warn("events subscriber too slow; dropping it")
			delete(m.subs, s)
			s.dropLocked()
		}
	}
}
