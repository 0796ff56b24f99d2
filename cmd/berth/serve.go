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
	"google.golang.org/grpc"
)

// maxMsgSize matches what kubelet's CRI client allows (16 MiB): large List
// responses on dense nodes must not fail.
const maxMsgSize = 16 << 20

// serve runs the daemon until SIGTERM or SIGINT. Containers are not touched on
// the way out: their monitors own them, and a restarted berth re-attaches.
func serve(cfg config.Config, logOut io.Writer) error {
	log := newLogger(cfg, logOut)
	ctx := context.Background()

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

	srv, err := cri.New(ctx, cfg, log, cri.Options{})
	if err != nil {
		return err
	}
	defer srv.Close()
	g := grpc.NewServer(append(cri.ServerOptions(log),
		grpc.MaxRecvMsgSize(maxMsgSize), grpc.MaxSendMsgSize(maxMsgSize))...)
	srv.Register(g)

	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(signals)

	served := make(chan error, 1)
	go func() { served <- g.Serve(listener) }()
	log.Info("berth is serving CRI", "version", version.Berth(), "listen", cfg.Listen, "root", cfg.Root,
		"state", cfg.State, "cgroup_driver", cfg.CgroupDriver, "pid", os.Getpid())

	for {
		select {
		case err := <-served:
			return fmt.Errorf("gRPC server stopped: %w", err)
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				// Without this, Go's default for SIGHUP would kill the daemon.
				log.Warn("SIGHUP received: config reload is not supported yet; the running config stays in effect")
				continue
			}
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
