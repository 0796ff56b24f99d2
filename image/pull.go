package image

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/containerd/v2/core/transfer"
	"github.com/containerd/containerd/v2/core/unpack"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/semaphore"
)

// Pull fetches ref (tag, digest or short name) for this platform, unpacks its
// layers into committed overlay snapshots and records it under the requested
// name, its repo digest and its ID. Identical concurrent pulls (same name,
// same credentials) share one download. An image pulled by digest that is
// already present returns at once; a tag is re-resolved, but only what is
// missing is downloaded.
func (s *Store) Pull(ctx context.Context, ref string, auth *Auth) (Image, error) {
	named, err := normalizeRef(ref)
	if err != nil {
		return Image{}, err
	}
	name := named.String()
	if _, digested := named.(reference.Digested); digested {
		if img, err := s.Get(ctx, name); err == nil && s.unpacked(ctx, img) {
			return img, nil
		}
	}
	img, err := s.flights.do(ctx, name+"\x00"+auth.fingerprint(), func(ctx context.Context) (Image, error) {
		return s.pull(ctx, named, auth)
	})
	if err != nil && ctx.Err() != nil {
		return Image{}, fmt.Errorf("pull %s: %w", name, err)
	}
	return img, err
}

// unpacked reports whether the image's top snapshot exists.
func (s *Store) unpacked(ctx context.Context, img Image) bool {
	_, err := s.snapshotter.Stat(namespaces.WithNamespace(ctx, Namespace), img.ChainID)
	return err == nil
}

func (s *Store) pull(ctx context.Context, named reference.Named, auth *Auth) (_ Image, retErr error) {
	name := named.String()
	start := time.Now()
	ctx = namespaces.WithNamespace(ctx, Namespace)
	obs := s.observer()
	obs.PullStarted(name)
	defer func() { obs.PullDone(name, time.Since(start), retErr) }()

	// The lease keeps what this pull downloads and unpacks from garbage
	// collection until the image records reference it; if berth dies
	// first, the next start deletes the lease and collects the rest.
	lease, err := s.leases.Create(ctx, leases.WithRandomID(), leases.WithLabels(map[string]string{pullLeaseLabel: name}))
	if err != nil {
		return Image{}, fmt.Errorf("start pull of %s: %w", name, err)
	}
	ctx = leases.WithLease(ctx, lease.ID)
	defer func() {
		cleanup := context.WithoutCancel(ctx)
		if err := s.leases.Delete(cleanup, lease); err != nil {
			s.log.WarnContext(ctx, "could not release pull lease; it is removed at the next start", "image", name, "error", err)
		}
		if retErr != nil {
			// Partial downloads and snapshots of a failed pull go now.
			if err := s.collectGarbage(cleanup); err != nil {
				s.log.WarnContext(ctx, "garbage collection after a failed pull", "image", name, "error", err)
			}
		}
	}()

	prog := &progress{timeout: s.opts.ProgressTimeout, onBytes: obs.PullBytes}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go prog.watch(ctx, name, cancel)
	go prog.report(ctx, s.log, name, s.progressLogInterval())

	desc, err := s.fetchAndUnpack(ctx, named, auth, prog)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause // the stall watchdog, not the RPC, ended the pull
		}
		return Image{}, classifyPullError(name, err)
	}
	img, err := s.record(ctx, named, desc)
	if err != nil {
		return Image{}, err
	}
	s.log.InfoContext(ctx, "pulled image", "image", name, "id", img.ID, "bytes", prog.bytes.Load(),
		"layers_done", prog.layersDone.Load(), "layers", prog.layers.Load(), "took", time.Since(start))
	return img, nil
}

// fetchAndUnpack resolves named, downloads the manifest for this platform
// and its layers (in parallel, bounded), and unpacks each layer as soon as it
// and the ones below it are complete. It returns the resolved descriptor.
func (s *Store) fetchAndUnpack(ctx context.Context, named reference.Named, auth *Auth, prog *progress) (ocispec.Descriptor, error) {
	resolver := s.resolver(ctx, auth, prog.wrapClient)
	resolvedName, desc, err := resolver.Resolve(ctx, named.String())
	if err != nil {
		return desc, err
	}
	if desc.MediaType == images.MediaTypeDockerSchema1Manifest {
		return desc, fmt.Errorf("%w: %s is a Docker schema 1 image, which no current runtime pulls; rebuild and push it with a current tool",
			errdefs.ErrFailedPrecondition, named)
	}
	fetcher, err := resolver.Fetcher(ctx, resolvedName)
	if err != nil {
		return desc, err
	}
	unpacker, err := unpack.NewUnpacker(ctx, s.content, unpack.WithUnpackPlatform(unpack.Platform{
		Platform:       s.platform,
		SnapshotterKey: Snapshotter,
		Snapshotter:    s.snapshotter,
		Applier:        s.applier,
	}))
	if err != nil {
		return desc, fmt.Errorf("prepare unpack: %w", err)
	}
	// The children labels on each manifest and index are the references
	// garbage collection follows from an image record to its config and
	// layers; without them a GC would collect a pulled image's content.
	children := images.SetChildrenMappedLabels(s.content, images.ChildrenHandler(s.content), nil)
	children = images.LimitManifests(images.FilterPlatforms(children, s.platform), s.platform, 1)
	distSource, err := docker.AppendDistributionSourceLabel(s.content, named.String())
	if err != nil {
		return desc, err
	}
	handler := unpacker.Unpack(prog.countLayers(images.Handlers(remotes.FetchHandler(s.content, fetcher), children, distSource)))
	dispatchErr := images.Dispatch(ctx, handler, nil, desc)
	result, unpackErr := unpacker.Wait()
	if err := errors.Join(dispatchErr, unpackErr); err != nil {
		return desc, err
	}
	if result.Unpacks == 0 {
		return desc, fmt.Errorf("%w: %s has no image for %s", errdefs.ErrNotFound, named, s.platformString())
	}
	return desc, nil
}

// resolver builds a docker resolver for one pull: registry hosts from the
// certs.d directory, this pull's credentials, and the progress counter.
func (s *Store) resolver(ctx context.Context, auth *Auth, updateClient func(*http.Client) error) remotes.Resolver {
	opts := docker.ResolverOptions{
		Hosts: config.ConfigureHosts(ctx, config.HostOptions{
			HostDir:      config.HostDirFromRoot(s.registryConfigDir()),
			Credentials:  auth.credentials,
			UpdateClient: updateClient,
		}),
	}
	if auth != nil && auth.RegistryToken != "" {
		opts.Headers = http.Header{"Authorization": {"Bearer " + auth.RegistryToken}}
	}
	r := docker.NewResolver(opts)
	if ro, ok := r.(remotes.ResolverWithOptions); ok {
		// The limiter bounds the layers downloaded at once (containerd's
		// MaxConcurrentDownloads alone only sets ranged-request parallelism
		// within one layer, which berth does not use).
		ro.SetOptions(transfer.WithDownloadLimiter(semaphore.NewWeighted(int64(s.opts.MaxConcurrentDownloads))))
	}
	return r
}

// record creates or moves the image's records — requested name, repo
// digest, ID — to desc and updates the index.
func (s *Store) record(ctx context.Context, named reference.Named, desc ocispec.Descriptor) (Image, error) {
	name := named.String()
	img, err := s.describe(ctx, images.Image{Name: name, Target: desc})
	if err != nil {
		return Image{}, err
	}
	names := []string{name, repoDigest(named, desc.Digest), img.ID}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		rec := images.Image{Name: n, Target: desc}
		if _, err := s.images.Create(ctx, rec); errdefs.IsAlreadyExists(err) {
			_, err = s.images.Update(ctx, rec, "target")
		} else if err != nil {
			return Image{}, fmt.Errorf("record image %s: %w", n, err)
		}
	}
	pinned := s.pinnedSet()
	for _, n := range names {
		s.index.add(n, img, pinned)
	}
	return s.index.byID[img.ID].clone(), nil
}

func (s *Store) platformString() string {
	return platforms.Format(platforms.DefaultSpec())
}
