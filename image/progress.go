package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// progress counts the bytes a pull receives from registries and cancels the
// pull when downloads are open but no byte arrived for timeout. Unpacking or
// waiting between requests never counts as a stall. It also counts the
// manifest's layers and those downloaded, for the progress log.
type progress struct {
	timeout  time.Duration
	bytes    atomic.Uint64
	inflight atomic.Int64
	// onBytes is told of every read (the Observer's PullBytes).
	onBytes func(int)

	layers     atomic.Int64 // layers of the manifest being pulled
	layerBytes atomic.Int64 // their total (compressed) size
	layersDone atomic.Int64 // layers downloaded (or found in the content store)
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
	if n > 0 {
		b.p.bytes.Add(uint64(n))
		if b.p.onBytes != nil {
			b.p.onBytes(n)
		}
	}
	return n, err
}

func (b *countingBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.p.inflight.Add(-1)
	}
	return b.ReadCloser.Close()
}

// countLayers wraps the pull's fetch handler: the layers a manifest names
// are the pull's total, and each layer the handler got is one done. Layers
// whose snapshot is already on the node are not fetched again, so done
// may stay below the total of an image that shares layers with another.
func (p *progress) countLayers(h images.Handler) images.Handler {
	return images.HandlerFunc(func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		children, err := h.Handle(ctx, desc)
		switch {
		case err != nil && !errors.Is(err, images.ErrSkipDesc):
		case images.IsManifestType(desc.MediaType):
			for _, c := range children {
				if images.IsLayerType(c.MediaType) {
					p.layers.Add(1)
					p.layerBytes.Add(c.Size)
				}
			}
		case images.IsLayerType(desc.MediaType):
			p.layersDone.Add(1)
		}
		return children, err
	})
}

// report logs the pull's progress every interval until ctx ends, so that
// an operator sees a long pull advance (or not): quick pulls log nothing.
func (p *progress) report(ctx context.Context, log *slog.Logger, ref string, interval time.Duration) {
	start := time.Now()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			log.InfoContext(ctx, "pulling image", "image", ref, "bytes", p.bytes.Load(), "total_bytes", p.layerBytes.Load(),
				"layers_done", p.layersDone.Load(), "layers", p.layers.Load(), "elapsed", time.Since(start).Round(time.Second))
		}
	}
}
