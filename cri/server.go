// Package cri is Berth's CRI v1 gRPC layer: one file per RPC that validates
// the request, translates it, and hands the work to sandbox/, image/ and
// network/. Typed errors (containerd errdefs) become gRPC codes in one place
// (errors.go); interceptors.go adds panic recovery and per-RPC logging.
package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"

	"github.com/berth-runtime/berth/image"
	"github.com/berth-runtime/berth/internal/config"
	"github.com/berth-runtime/berth/network"
	"github.com/berth-runtime/berth/sandbox"
	"github.com/berth-runtime/berth/sandbox/ocispec"
	"github.com/containerd/containerd/v2/pkg/apparmor"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Server implements the CRI RuntimeService and ImageService.
//
// The embedded Unimplemented servers only answer RPCs that a newer cri-api
// adds before Berth knows them; every RPC of the current API is written out
// in this package, if only to say which work will bring it.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	cfg config.Config
	// effective is cfg with the reloaded keys of the last reload (SIGHUP):
	// the config in force, as Status verbose shows it.
	effective atomic.Pointer[config.Config]
	log       *slog.Logger
	podCIDRs  *network.PodCIDRs
	network   *network.Manager
	images    *image.Store
	sandboxes *sandbox.Manager
	// monitorBinary is the berth-monitor the pods run ("" if not found).
	monitorBinary string
	// recursiveReadOnly: the kernel can make mounts recursively read-only.
	recursiveReadOnly bool
	// userNamespaces: the kernel lets pods have user namespaces, with their
	// rootfs on ID-mapped overlay layers.
	userNamespaces bool
	// stream serves the URLs of Exec, Attach and PortForward.
	stream *streamServer
	// metrics are the Prometheus collectors; nil when metrics are off.
	metrics *metrics
}

// Options are settings of a server that are not berth configuration.
type Options struct {
	// MonitorArgs go before the monitor's own arguments: a test binary
	// that serves as the monitor is started as "<binary> monitor ...".
	MonitorArgs []string
	// Metrics, if set, is the registry the server's Prometheus collectors
	// are registered on (the daemon's own, never the global default).
	Metrics prometheus.Registerer
}

// New loads the server's state from the configured root and state
// directories, which the caller has created and locked.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, opts Options) (*Server, error) {
	monitorBinary := findMonitor(cfg.Runtime.MonitorPath)
	helper, err := findHelper()
	if err != nil {
		return nil, err
	}
	log.Info("per-pod processes", "monitor", monitorBinary, "helper", helper)
	m, err := newMetrics(opts.Metrics)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	images, err := image.Open(ctx, image.Options{
		Dir:                    filepath.Join(cfg.Root, "image"),
		RegistryConfigDir:      cfg.Image.RegistryConfigDir,
		MaxConcurrentDownloads: cfg.Image.MaxConcurrentDownloads,
		ProgressTimeout:        cfg.Image.PullProgressTimeout.Std(),
		Pinned:                 cfg.Image.PinnedImages,
		Log:                    log,
		Observer:               m.imageObserver(),
	})
	if err != nil {
		return nil, err
	}
	// libcni's cache lives in the root: after a reboot it still tells how
	// to release the addresses of the pods that were running.
	cniCache := filepath.Join(cfg.Root, "network", "cni-cache")
	if err := network.MoveCache(filepath.Join(cfg.State, "cni-cache"), cniCache); err != nil {
		images.Close()
		return nil, err
	}
	podCIDRs := network.OpenPodCIDRs(ctx, filepath.Join(cfg.Root, "network", "pod-cidrs.json"), log)
	netMgr := network.NewManager(network.ManagerOptions{
		ConfDir:  cfg.CNI.ConfDir,
		BinDirs:  cfg.CNI.BinDirs,
		CacheDir: cniCache,
		Log:      log,
		Observer: m.networkObserver(),
	})
	sandboxes, err := sandbox.NewManager(ctx, sandbox.Options{
		Root:         cfg.Root,
		State:        cfg.State,
		CgroupDriver: cfg.CgroupDriver,
		Handlers:     cfg.Runtime.Handlers,
		ShmSize:      cfg.Runtime.ShmSizeBytes,
		Network:      netMgr,
		PodCIDRs:     podCIDRs,
		Log:          log,
		Rootfs:       images,
		Spec: ocispec.Defaults{
			PidsLimit:          cfg.Runtime.PidsLimit,
			SeccompProfileRoot: cfg.Runtime.SeccompProfileRoot,
			AppArmorEnabled:    apparmor.HostSupports(),
			ClampOOMScoreAdj:   sandbox.ClampOOMScoreAdj,
		},
		MonitorBinary:   monitorBinary,
		MonitorArgs:     opts.MonitorArgs,
		MonitorLogLevel: cfg.Log.Level,
		MonitorHelper:   helper,
		Observer:        m.sandboxObserver(),
	})
	if err != nil {
		images.Close()
		return nil, err
	}
	stream, err := newStreamServer(cfg.Streaming, streamRuntime{sandboxes: sandboxes}, log)
	if err != nil {
		images.Close()
		return nil, err
	}
	if opts.Metrics != nil {
		if err := opts.Metrics.Register(newStateCollector(sandboxes.Counts)); err != nil {
			stream.Close()
			images.Close()
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return &Server{
		cfg:           cfg,
		log:           log,
		podCIDRs:      podCIDRs,
		network:       netMgr,
		images:        images,
		sandboxes:     sandboxes,
		monitorBinary: monitorBinary,
		stream:        stream,
		metrics:       m,

		recursiveReadOnly: kernelHasMountSetattr(),
		userNamespaces:    hostSupportsUserNamespaces(),
	}, nil
}

// MonitorName is the per-pod monitor's executable name.
const MonitorName = "berth-monitor"

// findMonitor locates the berth-monitor binary: the configured path, else
// the one next to the running berth binary (make install puts them
// together), else the one in $PATH. "" when there is none.
func findMonitor(configured string) string {
	if configured != "" {
		return configured
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), MonitorName)
		if unix.Access(p, unix.X_OK) == nil {
			return p
		}
	}
	if p, err := exec.LookPath(MonitorName); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return ""
}

// HelperName is the thin libcontainer helper's executable name.
const HelperName = "berth-helper"

// findHelper locates the monitors' libcontainer helper, which is also every
// container's init: the berth-helper next to the running berth binary
// (make install puts them together), else this daemon's own binary, which
// does the same work but starts slower (it initialises all of berth).
func findHelper() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find berth's own executable: %w", err)
	}
	if p := filepath.Join(filepath.Dir(self), HelperName); unix.Access(p, unix.X_OK) == nil {
		return p, nil
	}
	return self, nil
}

// Close stops the streaming server (ending the streams in progress) and
// releases the stores; call it after the gRPC server has stopped.
func (s *Server) Close() error {
	var err error
	if s.stream != nil {
		err = s.stream.Close()
	}
	return errors.Join(err, s.images.Close())
}

// Register adds both CRI services to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}
