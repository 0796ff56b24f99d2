package sandbox

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
)

// A reservation ties kubelet's identity of a pod attempt (name, namespace,
// uid, attempt) to the sandbox made for it. kubelet retries a RunPodSandbox
// that timed out on its side with the same request; instead of the "name is
// reserved" error containerd users know, the retry waits for the first call
// and gets its sandbox.
type reservation struct {
	hash string
	done chan struct{} // closed when the first call finished
	id   string        // set on success
	err  error         // set on failure
}

// reserve claims the pod attempt for cfg. first is true when the caller must
// create the sandbox; otherwise the returned reservation belongs to an
// earlier identical request.
func (m *Manager) reserve(cfg Config) (res *reservation, first bool, err error) {
	key := cfg.Metadata.reservationKey()
	hash := cfg.hash()
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.reserved[key]; ok {
		if r.hash != hash {
			owner := r.id
			if owner == "" {
				owner = "one still being created"
			}
			return nil, false, fmt.Errorf("%w: pod %s/%s (uid %s, attempt %d) already has sandbox %s, made from a different config",
				errdefs.ErrAlreadyExists, cfg.Metadata.Namespace, cfg.Metadata.Name, cfg.Metadata.UID, cfg.Metadata.Attempt, owner)
		}
		return r, false, nil
	}
	r := &reservation{hash: hash, done: make(chan struct{})}
	m.reserved[key] = r
	return r, true, nil
}

// finishReservation publishes the first call's outcome. A failed attempt
// frees the name so that kubelet's next try starts afresh.
func (m *Manager) finishReservation(md Metadata, r *reservation, sb *Sandbox, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		r.err = err
		delete(m.reserved, md.reservationKey())
	} else {
		r.id = sb.ID
	}
	close(r.done)
}

// awaitReservation waits for the first call of an identical request.
func (m *Manager) awaitReservation(ctx context.Context, r *reservation) (Sandbox, error) {
	select {
	case <-r.done:
	case <-ctx.Done():
		return Sandbox{}, ctx.Err()
	}
	if r.err != nil {
		return Sandbox{}, r.err
	}
	return m.Get(r.id)
}

// reserveExisting records the reservation of a sandbox loaded at start.
func (m *Manager) reserveExisting(sb *Sandbox) {
	r := &reservation{hash: sb.ConfigHash, done: make(chan struct{}), id: sb.ID}
	close(r.done)
	m.reserved[sb.Config.Metadata.reservationKey()] = r
}
