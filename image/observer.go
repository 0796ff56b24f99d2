package image

import "time"

// DefaultProgressLogInterval is how often a pull still running logs its
// progress, as containerd's CRI plugin does.
const DefaultProgressLogInterval = 5 * time.Second

// Observer is told about the pulls that download, for metrics: cri wires it
// to Prometheus, this package knows nothing of it. PullBytes is called for
// every read from a registry, so all methods must be quick.
type Observer interface {
	// PullStarted: a pull of ref begins downloading (a pull joined by
	// identical concurrent ones, or of a digest present, starts none).
	PullStarted(ref string)
	// PullBytes: n more bytes arrived from a registry.
	PullBytes(n int)
	// PullDone: the pull of ref ended after took, with err (nil on success).
	PullDone(ref string, took time.Duration, err error)
}

type nopObserver struct{}

func (nopObserver) PullStarted(string)                    {}
func (nopObserver) PullBytes(int)                         {}
func (nopObserver) PullDone(string, time.Duration, error) {}

// observer returns the configured Observer, or one that does nothing.
func (s *Store) observer() Observer {
	if s.opts.Observer == nil {
		return nopObserver{}
	}
	return s.opts.Observer
}

// progressLogInterval is Options.ProgressLogInterval or its default.
func (s *Store) progressLogInterval() time.Duration {
	if d := s.opts.ProgressLogInterval; d > 0 {
		return d
	}
	return DefaultProgressLogInterval
}
