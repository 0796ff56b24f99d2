package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/berth-runtime/berth/cri"
	"github.com/berth-runtime/berth/internal/config"
	"github.com/berth-runtime/berth/internal/version"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// maxMsgSize matches what kubelet's CRI client allows (16 MiB): large List
// responses on dense nodes must not fail.
const maxMsgSize = 16 << 20

// serve runs the daemon until SIGTERM or SIGINT; SIGHUP reloads the config
// (cfg, resolved from flags). Containers are not touched on the way out:
// their monitors own them, and a restarted berth re-attaches.
func serve(flags *config.Flags, cfg config.Config, logOut io.Writer) error {
	log, level := newLogger(cfg, logOut)
	ctx := context.Background()
	systemd := newNotifier()
	sdNotify := func(state string) {
		if err := systemd.notify(state); err != nil {
			log.Warn("could not tell systemd the daemon's state", "state", state, "error", err)
		}
	}
	// SIGHUP from the start: Go's default for it is to exit, and recovery
	// can take a while. One that comes before berth serves is handled as a
	// reload once it does. SIGTERM and SIGINT keep their default (exit at
	// once) until then: there is nothing in flight to wait for.
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGHUP)
	defer signal.Stop(signals)

	for _, dir := range []string{cfg.Root, cfg.State} {
		// 0711: other users may traverse to what is shared with them but
		// not list which pods and images the node has.
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	// One daemon per root, per state dir and per socket: two would corrupt
	// each other's state or steal each other's clients.
	for _, lockPath := range []string{
		filepath.Join(cfg.Root, "berth.lock"),
		filepath.Join(cfg.State, "berth.lock"),
	} {
		lock, err := acquireLock(lockPath, lockWait)
		if err != nil {
			return err
		}
		defer lock.Close()
	}
	gid, err := config.LookupGroup(cfg.ListenGroup) // validated at load
	if err != nil {
		return fmt.Errorf("listen_group %q: %w", cfg.ListenGroup, err)
	}
	listener, err := listenUnix(cfg.SocketPath(), gid)
	if err != nil {
		return err
	}
	defer listener.Close()

	// Metrics are off unless an address is configured: then there is no
	// registry at all and the CRI layer records nothing.
	var reg *prometheus.Registry
	var reloadStats *reloadMetrics
	if cfg.Metrics.Address != "" {
		if reg, err = newRegistry(); err != nil {
			return err
		}
		if reloadStats, err = newReloadMetrics(reg); err != nil {
			return err
		}
	}
	opts := cri.Options{}
	if reg != nil {
		opts.Metrics = reg
	}
	srv, err := cri.New(ctx, cfg, log, opts)
	if err != nil {
		return err
	}
	defer srv.Close()
	g := grpc.NewServer(append(srv.GRPCServerOptions(),
		grpc.MaxRecvMsgSize(maxMsgSize), grpc.MaxSendMsgSize(maxMsgSize))...)
	srv.Register(g)
	var metricsSrv *metricsServer
	if reg != nil {
		if metricsSrv, err = startMetrics(cfg.Metrics, reg, log); err != nil {
			return err
		}
		defer func() {
			if err := metricsSrv.Close(); err != nil {
				log.Warn("metrics server did not stop cleanly", "error", err)
			}
		}()
	}
	// What the file said at start (it validated with the flags, so it
	// loads): a reload compares the file with it to see what was edited.
	startFile, _ := flags.LoadFile()
	reload := &reloader{flags: flags, current: cfg, file: startFile, level: level, target: srv, log: log, metrics: reloadStats}

	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)

	served := make(chan error, 1)
	go func() { served <- g.Serve(listener) }()
	log.Info("berth is serving CRI", "version", version.Berth(), "listen", cfg.Listen, "root", cfg.Root,
		"state", cfg.State, "cgroup_driver", cfg.CgroupDriver, "pid", os.Getpid())
	sdNotify(sdReady)

	for {
		select {
		case err := <-served:
			return fmt.Errorf("gRPC server stopped: %w", err)
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				// The gRPC server keeps serving meanwhile: nothing is
				// stopped or swapped, only settings change.
				log.Info("SIGHUP received: reloading the config")
				sdNotify(sdReloading)
				reload.reload(ctx)
				sdNotify(sdReady)
				continue
			}
			sdNotify(sdStopping)
			log.Info("shutting down: no new requests, waiting for in-flight ones", "signal", sig.String(), "timeout", cfg.ShutdownTimeout.Std())
			gracefulStop(g, cfg.ShutdownTimeout.Std(), log)
			log.Info("berth stopped; containers keep running")
			return nil
		}
	}
}

// gracefulStop lets in-flight RPCs finish for at most timeout, then cuts the
// rest off (long-lived streams would otherwise hold the exit forever).
func gracefulStop(g *grpc.Server, timeout time.Duration, log *slog.Logger) {
	done := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		log.Warn("in-flight requests did not finish in time; closing them", "timeout", timeout)
		g.Stop()
		<-done
	}
}
