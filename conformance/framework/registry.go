package framework

import (
	"bytes"
	"crypto/subtle"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RegistryRealm is the realm of the Basic challenge of an auth registry.
const RegistryRealm = "berth-test"

// RegistryOptions configures StartRegistry.
type RegistryOptions struct {
	// Username and Password, when Username is set, make every request
	// (including the /v2/ ping) require HTTP basic auth; otherwise the
	// registry answers 401 with WWW-Authenticate: Basic realm="berth-test".
	Username, Password string
	// BytesPerSecond, when > 0, throttles blob downloads (GET
	// /v2/<name>/blobs/<digest>) to about this rate.
	BytesPerSecond int64
	// StallAfter, when > 0, makes every blob download hang part-way: the
	// registry sends the headers (with the full Content-Length) and at
	// most StallAfter bytes of the body, flushes them, and then sends
	// nothing more, keeping the connection open, until the client goes
	// away or the registry is cleaned up. Blobs of at most StallAfter
	// bytes are served whole. Manifests are never stalled.
	StallAfter int64
	// Verbose logs every registry request through t.Log.
	Verbose bool
}

// Registry is an in-process OCI distribution registry (plain HTTP on
// 127.0.0.1) backed by memory. It is shut down by t.Cleanup.
type Registry struct {
	// Host is "127.0.0.1:port", usable as the registry part of a reference.
	Host string
	// URL is "http://127.0.0.1:port".
	URL string

	opts    RegistryOptions
	closing chan struct{} // closed when the test is cleaning up
	paced   sync.WaitGroup

	stalls   atomic.Int64 // blob GETs that reached StallAfter, ever
	stalling atomic.Int64 // handlers hanging right now

	mu           sync.Mutex
	blobGets     map[string]int
	activeBlobs  int // blob GETs being served now
	peakBlobs    int // most blob GETs ever served at once
	manifestGets map[string]int
	corrupt      map[string]bool
}

// StartRegistry starts a registry on a random port of 127.0.0.1.
func StartRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	r := &Registry{
		opts:         opts,
		closing:      make(chan struct{}),
		blobGets:     map[string]int{},
		manifestGets: map[string]int{},
		corrupt:      map[string]bool{},
	}
	logw := &testLogWriter{t: t, enabled: opts.Verbose}
	inner := registry.New(registry.Logger(log.New(logw, "registry: ", 0)))

	// httptest listens on 127.0.0.1 with a random port.
	srv := httptest.NewUnstartedServer(r.handler(inner))
	srv.Config.ErrorLog = log.New(logw, "registry http: ", 0)
	srv.Start()
	r.URL = srv.URL
	r.Host = srv.Listener.Addr().String()
	t.Cleanup(func() {
		close(r.closing) // unblock throttled and stalled downloads
		srv.Close()
		logw.stop()
	})
	return r
}

// Auth is the authenticator to use with remote.WithAuth for this registry
// (authn.Anonymous when no credentials are configured).
func (r *Registry) Auth() authn.Authenticator {
	if r.opts.Username == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: r.opts.Username, Password: r.opts.Password}
}

// Ref returns the full reference for repoAndTag ("test/busybox:1.0" ->
// "127.0.0.1:port/test/busybox:1.0").
func (r *Registry) Ref(repoAndTag string) string {
	return r.Host + "/" + strings.TrimPrefix(repoAndTag, "/")
}

// Push uploads img as repoAndTag (e.g. "test/busybox:1.0", or a
// "repo@sha256:..." reference) and returns the full reference and the
// manifest digest.
func (r *Registry) Push(t testing.TB, repoAndTag string, img v1.Image) (ref, digest string) {
	t.Helper()
	ref = r.Ref(repoAndTag)
	nref, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatalf("Push %s: %v", ref, err)
	}
	if err := remote.Write(nref, img, remote.WithAuth(r.Auth()), remote.WithContext(t.Context())); err != nil {
		t.Fatalf("Push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("Push %s: digest: %v", ref, err)
	}
	return ref, d.String()
}

// PushIndex uploads idx and all its images as repoAndTag and returns the
// full reference and the index digest.
func (r *Registry) PushIndex(t testing.TB, repoAndTag string, idx v1.ImageIndex) (ref, digest string) {
	t.Helper()
	ref = r.Ref(repoAndTag)
	nref, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatalf("PushIndex %s: %v", ref, err)
	}
	if err := remote.WriteIndex(nref, idx, remote.WithAuth(r.Auth()), remote.WithContext(t.Context())); err != nil {
		t.Fatalf("PushIndex %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatalf("PushIndex %s: digest: %v", ref, err)
	}
	return ref, d.String()
}

// BlobFetches returns how many authorized GET requests for the blob with
// the given digest ("sha256:...") the registry has received, in any
// repository. HEAD requests and uploads are not counted.
func (r *Registry) BlobFetches(digest string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobGets[digest]
}

// PeakBlobDownloads is the largest number of blob downloads the registry
// served at the same time.
func (r *Registry) PeakBlobDownloads() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peakBlobs
}

// ManifestFetches returns how many authorized GET requests for the
// manifest reference (a tag or a digest) the registry has received, in any
// repository.
func (r *Registry) ManifestFetches(reference string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.manifestGets[reference]
}

// CorruptBlob makes every later download of the blob with the given digest
// ("sha256:...") serve the right length with one byte in the middle of the
// body flipped, so that clients see a digest mismatch. The stored blob is
// not changed; uploads and HEAD requests are not affected.
func (r *Registry) CorruptBlob(digest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.corrupt[digest] = true
}

// StalledFetches returns how many blob GET requests have reached
// RegistryOptions.StallAfter and hung (whether or not they have ended
// since).
func (r *Registry) StalledFetches() int {
	return int(r.stalls.Load())
}

// classify splits /v2/<name>/{blobs,manifests}/<ref> requests.
func classify(p string) (kind, ref string) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", ""
	}
	elems := strings.Split(rest, "/")
	if len(elems) < 3 {
		return "", ""
	}
	kind, ref = elems[len(elems)-2], elems[len(elems)-1]
	switch {
	case kind == "blobs" && strings.Contains(ref, ":"):
		return kind, ref
	case kind == "manifests" && ref != "":
		return kind, ref
	}
	return "", ""
}

func (r *Registry) handler(inner http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !r.authorized(req) {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+RegistryRealm+`"`)
			w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`+"\n")
			return
		}
		kind, ref := "", ""
		if req.Method == http.MethodGet {
			kind, ref = classify(req.URL.Path)
		}
		switch kind {
		case "blobs":
			r.mu.Lock()
			r.blobGets[ref]++
			r.activeBlobs++
			r.peakBlobs = max(r.peakBlobs, r.activeBlobs)
			corrupt := r.corrupt[ref]
			r.mu.Unlock()
			defer func() {
				r.mu.Lock()
				r.activeBlobs--
				r.mu.Unlock()
			}()
			// The body goes inner -> stall -> corrupt -> pace -> client.
			if r.opts.BytesPerSecond > 0 {
				r.paced.Add(1)
				defer r.paced.Done()
				w = &pacedWriter{
					ResponseWriter: w,
					req:            req,
					closing:        r.closing,
					bps:            r.opts.BytesPerSecond,
				}
			}
			if corrupt {
				w = &corruptWriter{ResponseWriter: w}
			}
			if r.opts.StallAfter > 0 {
				w = &stallWriter{ResponseWriter: w, req: req, r: r, limit: r.opts.StallAfter}
			}
		case "manifests":
			r.mu.Lock()
			r.manifestGets[ref]++
			r.mu.Unlock()
		}
		inner.ServeHTTP(w, req)
	})
}

func (r *Registry) authorized(req *http.Request) bool {
	if r.opts.Username == "" {
		return true
	}
	u, p, ok := req.BasicAuth()
	if !ok {
		return false
	}
	uok := subtle.ConstantTimeCompare([]byte(u), []byte(r.opts.Username)) == 1
	pok := subtle.ConstantTimeCompare([]byte(p), []byte(r.opts.Password)) == 1
	return uok && pok
}

// errStopped is returned by a pacedWriter whose client went away or whose
// registry is shutting down.
type errStopped struct{ cause error }

func (e errStopped) Error() string { return "throttled write stopped: " + e.cause.Error() }

// pacedWriter writes at about bps bytes per second, in small flushed
// chunks, giving up as soon as the request context is done or the
// registry shuts down.
type pacedWriter struct {
	http.ResponseWriter
	req     *http.Request
	closing <-chan struct{}
	bps     int64

	start   time.Time
	written int64
}

// chunkSize is about 1/20 s worth of data.
func (p *pacedWriter) chunkSize() int {
	return int(max(1, min(p.bps/20, 64<<10)))
}

func (p *pacedWriter) Write(b []byte) (int, error) {
	if p.start.IsZero() {
		p.start = time.Now()
	}
	total := 0
	for len(b) > 0 {
		due := p.start.Add(time.Duration(float64(p.written) / float64(p.bps) * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-p.req.Context().Done():
				timer.Stop()
				return total, errStopped{p.req.Context().Err()}
			case <-p.closing:
				timer.Stop()
				return total, errStopped{http.ErrServerClosed}
			}
		} else if err := p.req.Context().Err(); err != nil {
			return total, errStopped{err}
		}
		n := min(len(b), p.chunkSize())
		m, err := p.ResponseWriter.Write(b[:n])
		total += m
		p.written += int64(m)
		if err != nil {
			return total, err
		}
		if f, ok := p.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		b = b[n:]
	}
	return total, nil
}

func (p *pacedWriter) Flush() {
	if f, ok := p.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (p *pacedWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// flush flushes w if it can.
func flush(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// isSuccess reports whether status (0: not written yet, so 200) is 2xx.
func isSuccess(status int) bool {
	return status == 0 || status/100 == 2
}

// stallWriter passes the first limit bytes of a successful response body
// through, flushes them, and then blocks until the request ends or the
// registry shuts down.
type stallWriter struct {
	http.ResponseWriter
	req     *http.Request
	r       *Registry
	limit   int64
	status  int
	written int64
}

func (s *stallWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *stallWriter) Write(b []byte) (int, error) {
	if !isSuccess(s.status) {
		return s.ResponseWriter.Write(b)
	}
	total := 0
	if rem := s.limit - s.written; rem > 0 {
		n := int(min(int64(len(b)), rem))
		m, err := s.ResponseWriter.Write(b[:n])
		total += m
		s.written += int64(m)
		if err != nil {
			return total, err
		}
		b = b[n:]
	}
	if len(b) == 0 {
		return total, nil
	}
	// There is more to send: hang.
	flush(s.ResponseWriter)
	s.r.stalling.Add(1)
	s.r.stalls.Add(1)
	defer s.r.stalling.Add(-1)
	select {
	case <-s.req.Context().Done():
		return total, errStopped{s.req.Context().Err()}
	case <-s.r.closing:
		return total, errStopped{http.ErrServerClosed}
	}
}

func (s *stallWriter) Flush() { flush(s.ResponseWriter) }

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *stallWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// corruptWriter flips one byte in the middle of a successful response body
// (by its Content-Length; the first byte when that is unknown), on a copy:
// the registry's stored blob stays intact.
type corruptWriter struct {
	http.ResponseWriter
	status  int
	at      int64 // offset of the byte to flip, set at the first Write
	offset  int64 // bytes written so far
	started bool
}

func (c *corruptWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *corruptWriter) Write(b []byte) (int, error) {
	if !isSuccess(c.status) {
		return c.ResponseWriter.Write(b)
	}
	if !c.started {
		c.started = true
		if n, err := strconv.ParseInt(c.Header().Get("Content-Length"), 10, 64); err == nil && n > 0 {
			c.at = n / 2
		}
	}
	if i := c.at - c.offset; i >= 0 && i < int64(len(b)) {
		cp := bytes.Clone(b)
		cp[i] ^= 0xff
		b = cp
	}
	n, err := c.ResponseWriter.Write(b)
	c.offset += int64(n)
	return n, err
}

func (c *corruptWriter) Flush() { flush(c.ResponseWriter) }

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *corruptWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// testLogWriter forwards registry logs to t.Log while the test runs.
type testLogWriter struct {
	t       testing.TB
	mu      sync.Mutex
	enabled bool
}

func (w *testLogWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.enabled {
		w.t.Log(strings.TrimSuffix(string(b), "\n"))
	}
	return len(b), nil
}

func (w *testLogWriter) stop() {
	w.mu.Lock()
	w.enabled = false
	w.mu.Unlock()
}
