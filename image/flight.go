package image

import (
	"context"
	"sync"
)

// flights merges identical concurrent pulls: the first caller starts the
// work, later ones wait for its result. The work runs on its own context,
// cancelled only when every caller waiting for it has gone, so one client
// giving up never fails another's pull.
type flights struct {
	// life ends when the store closes: it cancels every pull in flight.
	life context.Context
	wg   sync.WaitGroup

	mu     sync.Mutex
	active map[string]*flight
}

type flight struct {
	cancel  context.CancelFunc
	waiters int
	done    chan struct{}
	img     Image
	err     error
}

// do runs fn once per key at a time and returns its result to every caller
// whose context is still live.
func (f *flights) do(ctx context.Context, key string, fn func(context.Context) (Image, error)) (Image, error) {
	f.mu.Lock()
	if f.active == nil {
		f.active = map[string]*flight{}
	}
	fl, ok := f.active[key]
	if !ok {
		workCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		stopOnClose := context.AfterFunc(f.life, cancel)
		fl = &flight{cancel: cancel, done: make(chan struct{})}
		f.active[key] = fl
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer stopOnClose()
			fl.img, fl.err = fn(workCtx)
			f.mu.Lock()
			if f.active[key] == fl {
				delete(f.active, key)
			}
			f.mu.Unlock()
			cancel()
			close(fl.done)
		}()
	}
	fl.waiters++
	f.mu.Unlock()

	select {
	case <-fl.done:
		return fl.img, fl.err
	case <-ctx.Done():
		f.mu.Lock()
		fl.waiters--
		if fl.waiters == 0 {
			// Nobody wants it any more: stop it, and let a new caller
			// start afresh rather than join a cancelled pull.
			fl.cancel()
			if f.active[key] == fl {
				delete(f.active, key)
			}
		}
		f.mu.Unlock()
		return Image{}, ctx.Err()
	}
}
