package image

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// progress counts the bytes a pull receives from registries and cancels the
// pull when downloads are open but no byte arrived for timeout. Unpacking or
// waiting between requests never counts as a stall.
type progress struct {
	timeout  time.Duration
	bytes    atomic.Uint64
	inflight atomic.Int64
}

// errStalled is the cancel cause of a pull that made no progress.
type errStalled struct {
	ref     string
	timeout time.Duration
	bytes   uint64
}

func (e *errStalled) Error() string {
	return fmt.Sprintf("pull of %s made no progress for %v (after %d bytes): the registry stopped sending data; "+
		"check the registry or raise image.pull_progress_timeout", e.ref, e.timeout, e.bytes)
}

// Is makes a stalled pull a context.DeadlineExceeded for errdefs and gRPC.
func (e *errStalled) Is(target error) bool { return target == context.DeadlineExceeded }

// watch cancels the pull (through cancel) when it stalls; it returns when
// ctx ends.
func (p *progress) watch(ctx context.Context, ref string, cancel context.CancelCauseFunc) {
	tick := max(p.timeout/10, 10*time.Millisecond)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	lastBytes, lastChange := p.bytes.Load(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			n := p.bytes.Load()
			if n != lastBytes || p.inflight.Load() == 0 {
				lastBytes, lastChange = n, now
				continue
			}
			if now.Sub(lastChange) >= p.timeout {
				cancel(&errStalled{ref: ref, timeout: p.timeout, bytes: n})
				return
			}
		}
	}
}

// wrapClient makes the resolver's HTTP client report to p.
func (p *progress) wrapClient(c *http.Client) error {
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = &countingTransport{next: next, p: p}
	return nil
}

type countingTransport struct {
	next http.RoundTripper
	p    *progress
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.p.inflight.Add(1)
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		t.p.inflight.Add(-1)
		return nil, err
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, p: t.p}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	p      *progress
	closed atomic.Bool
}

func (b *countingBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	b.p.bytes.Add(uint64(n))
	return n, err
}

func (b *countingBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.p.inflight.Add(-1)
	}
	return b.ReadCloser.Close()
}
