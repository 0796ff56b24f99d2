package image

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/diff"
	"github.com/containerd/containerd/v2/core/diff/apply"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/containerd/v2/plugins/snapshots/overlay"
	"github.com/containerd/platforms"
	bolt "go.etcd.io/bbolt"
)

const (
	// Namespace is the containerd metadata namespace berth keeps its
	// images, leases and snapshots in.
	Namespace = "berth"
	// Snapshotter is the snapshotter key in the metadata store.
	Snapshotter = "overlayfs"

	// pullLeaseLabel marks leases that protect in-progress pulls; any left
	// at start belong to pulls a crash cut off and are removed.
	pullLeaseLabel = "berth.pull"
)

// Options configure the image store.
type Options struct {
	// Dir holds everything: content/, snapshots/, meta.db.
	Dir string
	// RegistryConfigDir is a certs.d-style directory of hosts.toml files.
	RegistryConfigDir string
	// MaxConcurrentDownloads bounds the layers fetched at once per pull.
	MaxConcurrentDownloads int
	// ProgressTimeout cancels a pull that receives no bytes for this long.
	ProgressTimeout time.Duration
	// Pinned are references of images that image GC must never remove.
	Pinned []string
	Log    *slog.Logger
	// ProgressLogInterval is how often a running pull logs its progress
	// (0: DefaultProgressLogInterval).
	ProgressLogInterval time.Duration
	// Observer, if set, is told about pulls (metrics).
	Observer Observer
}

// Store is berth's image store.
type Store struct {
	opts Options
	log  *slog.Logger

	db          *metadata.DB
	bolt        *bolt.DB
	content     content.Store
	snapshotter snapshots.Snapshotter
	images      images.Store
	leases      leases.Manager
	applier     diff.Applier
	platform    platforms.MatchComparer

	flights flights
	// closeFlights ends flights.life.
	closeFlights context.CancelFunc

	// mu guards index, the in-memory view of image records that List and
	// Status read without touching bbolt (kubelet polls them).
	mu    sync.RWMutex
	index *index
}

// Open opens (creating if needed) the image store under opts.Dir, removes
// what interrupted pulls left behind, and loads the image index.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxConcurrentDownloads <= 0 {
		opts.MaxConcurrentDownloads = 3
	}
	if opts.ProgressTimeout <= 0 {
		opts.ProgressTimeout = time.Minute
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create image store: %w", err)
	}
	cs, err := local.NewStore(filepath.Join(opts.Dir, "content"))
	if err != nil {
		return nil, fmt.Errorf("open content store: %w", err)
	}
	// WithRemapIDs: a snapshot labelled with ID mappings (a container in a
	// user namespace) is mounted on ID-mapped layers.
	sn, err := overlay.NewSnapshotter(filepath.Join(opts.Dir, "snapshots", Snapshotter), overlay.WithRemapIDs)
	if err != nil {
		return nil, fmt.Errorf("open overlay snapshotter: %w", err)
	}
	bdb, err := bolt.Open(filepath.Join(opts.Dir, "meta.db"), 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		sn.Close()
		return nil, fmt.Errorf("open image metadata: %w", err)
	}
	db := metadata.NewDB(bdb, cs, map[string]snapshots.Snapshotter{Snapshotter: sn})
	if err := db.Init(ctx); err != nil {
		bdb.Close()
		sn.Close()
		return nil, fmt.Errorf("initialise image metadata: %w", err)
	}
	s := &Store{
		opts:        opts,
		log:         opts.Log,
		db:          db,
		bolt:        bdb,
		content:     db.ContentStore(),
		snapshotter: db.Snapshotter(Snapshotter),
		images:      metadata.NewImageStore(db),
		leases:      metadata.NewLeaseManager(db),
		platform:    platforms.Default(),
	}
	s.applier = apply.NewFileSystemApplier(s.content)
	s.flights.life, s.closeFlights = context.WithCancel(context.WithoutCancel(ctx))
	ctx = namespaces.WithNamespace(ctx, Namespace)
	if err := s.recoverInterruptedPulls(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.reindex(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close cancels the pulls still running, waits for them to clean up after
// themselves, and releases the metadata database and the snapshotter.
func (s *Store) Close() error {
	s.closeFlights()
	s.flights.wg.Wait()
	return errors.Join(s.bolt.Close(), s.db.Snapshotter(Snapshotter).Close())
}

// recoverInterruptedPulls drops the leases of pulls that a crash cut off and
// collects what they had downloaded or unpacked.
func (s *Store) recoverInterruptedPulls(ctx context.Context) error {
	stale, err := s.leases.List(ctx, fmt.Sprintf("labels.%q", pullLeaseLabel))
	if err != nil {
		return fmt.Errorf("list pull leases: %w", err)
	}
	for _, l := range stale {
		if err := s.leases.Delete(ctx, l); err != nil {
			return fmt.Errorf("remove lease of interrupted pull %s: %w", l.Labels[pullLeaseLabel], err)
		}
		s.log.InfoContext(ctx, "removed an interrupted pull", "image", l.Labels[pullLeaseLabel])
	}
	s.sweepSnapshotsAtNextCollection(ctx)
	return s.collectGarbage(ctx)
}

// sweepSnapshotsAtNextCollection makes the next garbage collection compare
// the overlay snapshotter's own snapshots and directories with the metadata
// and remove what the metadata does not know: the snapshot of a Prepare
// that a crash cut off between the overlay snapshotter's commit and the
// metadata's, and its half-made directory. containerd's collector does that
// only for a snapshotter marked dirty, which happens when one of its
// snapshots is removed, so remove a throwaway one. A failure only means the
// orphans wait for the next removal.
func (s *Store) sweepSnapshotsAtNextCollection(ctx context.Context) {
	key := fmt.Sprintf("berth-startup-sweep-%d", time.Now().UnixNano())
	if _, err := s.snapshotter.Prepare(ctx, key, ""); err != nil {
		s.log.WarnContext(ctx, "could not check the snapshotter for snapshots left by a crash", "error", err)
		return
	}
	if err := s.snapshotter.Remove(ctx, key); err != nil {
		s.log.WarnContext(ctx, "could not check the snapshotter for snapshots left by a crash", "error", err)
	}
}

// collectGarbage removes content and snapshots no image or lease references.
func (s *Store) collectGarbage(ctx context.Context) error {
	stats, err := s.db.GarbageCollect(ctx)
	if err != nil {
		return fmt.Errorf("image garbage collection: %w", err)
	}
	s.log.DebugContext(ctx, "image garbage collection", "took", stats.Elapsed())
	return nil
}
