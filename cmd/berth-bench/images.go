package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-runtime/berth/conformance/framework"
)

// benchRegistry is an in-process registry on loopback (plain HTTP, blobs in
// memory) that counts blob downloads, so that a pull served from a
// runtime's cache is noticed.
type benchRegistry struct {
	// Addr is 127.0.0.1:port; Name is the registry part of the references
	// the runtimes pull (hosts.toml maps it to Addr), or Addr when empty.
	Addr, Name string
	srv        *http.Server

	mu       sync.Mutex
	blobGets map[string]int
}

func startRegistry(listen, regName string) (*benchRegistry, error) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	r := &benchRegistry{Addr: l.Addr().String(), Name: regName, blobGets: map[string]int{}}
	if r.Name == "" {
		r.Name = r.Addr
	}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method == http.MethodGet {
				if i := strings.LastIndex(req.URL.Path, "/blobs/"); i >= 0 {
					r.mu.Lock()
					r.blobGets[req.URL.Path[i+len("/blobs/"):]]++
					r.mu.Unlock()
				}
			}
			inner.ServeHTTP(w, req)
		}),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go r.srv.Serve(l)
	return r, nil
}

func (r *benchRegistry) close() { r.srv.Close() }

// blobFetches is how many times the blob with this digest was downloaded.
func (r *benchRegistry) blobFetches(digest string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobGets[digest]
}

// push uploads img and returns the reference the runtimes pull it by.
func (r *benchRegistry) push(ctx context.Context, repoTag string, img v1.Image) (string, error) {
	ref, err := name.ParseReference(r.Addr+"/"+repoTag, name.Insecure)
	if err != nil {
		return "", err
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("push %s: %w", repoTag, err)
	}
	return r.Name + "/" + repoTag, nil
}

// writeHostsTOML makes dir (a runtime's registry config dir, containerd's
// certs.d layout) send pulls of Name to the registry over plain HTTP.
func (r *benchRegistry) writeHostsTOML(dir string) (string, error) {
	if r.Name == r.Addr {
		return "", nil
	}
	d := filepath.Join(dir, r.Name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", err
	}
	// containerd 1.6 refuses a hosts.toml without a [host] table.
	conf := fmt.Sprintf("# written by berth-bench; removed when it ends\nserver = \"http://%[1]s\"\n\n"+
		"[host.\"http://%[1]s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", r.Addr)
	return d, os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(conf), 0o644)
}

// pullImage describes the pushed pull image.
type pullImage struct {
	ref          string
	layers       []string
	compressed   int64
	uncompressed int64
}

// benchImages are the images of a run, pushed to the registry.
type benchImages struct {
	workload string // busybox, whose `sleep` the pods' containers run
	pause    string // busybox sleeping as entrypoint: a sandbox image for runtimes that need one
	pull     *pullImage
}

// buildImages builds and pushes the images (the pull image only if
// withPull); building the 100 MB image takes a few seconds of CPU.
func buildImages(ctx context.Context, r *benchRegistry, withPull bool) (*benchImages, error) {
	var out benchImages
	var err error
	// Two layers (skeleton, busybox), so that no layer is shared with the
	// pull image, whose base is both in one layer: its pulls must download
	// all five.
	bb, err := framework.BuildImage(framework.ImageSpec{Layers: 2})
	if err != nil {
		return nil, err
	}
	if out.workload, err = r.push(ctx, "berth-bench/busybox:1", bb); err != nil {
		return nil, err
	}
	// busybox's sleep takes no "infinity"; this is 68 years.
	pause, err := framework.BuildImage(framework.ImageSpec{Layers: 2, Entrypoint: []string{"sleep", "2147483647"}})
	if err != nil {
		return nil, err
	}
	if out.pause, err = r.push(ctx, "berth-bench/pause:1", pause); err != nil {
		return nil, err
	}
	if !withPull {
		return &out, nil
	}
	img, err := framework.BuildImage(framework.ImageSpec{Cmd: []string{"sh"}, Files: framework.PullImageFiles(), Layers: framework.PullImageDataLayers + 1})
	if err != nil {
		return nil, err
	}
	p := &pullImage{}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		size, err := l.Size()
		if err != nil {
			return nil, err
		}
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, err
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		p.layers = append(p.layers, d.String())
		p.compressed += size
		p.uncompressed += n
	}
	if p.ref, err = r.push(ctx, "berth-bench/pull:1", img); err != nil {
		return nil, err
	}
	out.pull = p
	return &out, nil
}
