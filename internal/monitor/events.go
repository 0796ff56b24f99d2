package monitor

// The events stream: a subscriber first gets the current state of every
// container, then each change. A subscriber that cannot keep up is dropped
// (its connection closed; it reconnects and gets the current state again)
// rather than ever blocking the monitor.

import (
	"encoding/json"
	"log/slog"
	"net"
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
	conn net.Conn
	ch   chan monitorapi.Event
	gone bool // guarded by monitor.mu
}

// dropLocked ends the subscription; its writer then closes the connection.
// The caller holds monitor.mu.
func (s *subscriber) dropLocked() {
	if !s.gone {
		s.gone = true
		close(s.ch)
	}
}

// subscribe serves an events connection until it ends.
func (m *monitor) subscribe(conn *net.UnixConn) {
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
	defer func() {
		m.mu.Lock()
		delete(m.subs, s)
		s.dropLocked()
		m.mu.Unlock()
		_ = conn.Close()
	}()
	enc := json.NewEncoder(conn)
	send := func(ev monitorapi.Event) bool {
		_ = conn.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		if err := enc.Encode(ev); err != nil {
			slog.Debug("events subscriber gone", "error", err)
			return false
		}
		return true
	}
	for _, ev := range initial {
		if !send(ev) {
			return
		}
	}
	for ev := range s.ch {
		if !send(ev) {
			return
		}
	}
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
		select {
		case s.ch <- ev:
		default:
			slog.Warn("events subscriber too slow; dropping it")
			delete(m.subs, s)
			s.dropLocked()
		}
	}
}
