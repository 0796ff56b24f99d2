package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/berth-runtime/berth/internal/config"
	"github.com/berth-runtime/berth/internal/version"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newRegistry is the daemon's own Prometheus registry (never the global
// default one, which any imported library could write to): the Go runtime
// and process collectors and berth's build info. The CRI layer registers
// the rest.
func newRegistry() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "berth_build_info",
		Help: "Always 1; the labels say which berth and CRI API version run.",
		ConstLabels: prometheus.Labels{
			"version": version.Berth(), "cri_api": version.CRIAPIVersion,
		},
	})
	build.Set(1)
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		build,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return reg, nil
}

// metricsServer serves /metrics, and /debug/pprof/ when enabled, over
// plain http on [metrics] address.
type metricsServer struct {
	http   *http.Server
	addr   net.Addr
	served chan error
}

// startMetrics listens on cfg.Address and serves reg there. A listen error
// stops the daemon's start, as a busy CRI socket does: an operator who
// asked for metrics must not get a node that silently has none.
func startMetrics(cfg config.MetricsConfig, reg *prometheus.Registry, log *slog.Logger) (*metricsServer, error) {
	lis, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("metrics.address %s: %w", cfg.Address, err)
	}
	mux := http.NewServeMux()
	// InstrumentMetricHandler adds promhttp_metric_handler_requests_total:
	// the scrapes themselves are visible.
	mux.Handle("/metrics", promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		Registry:          reg,
		EnableOpenMetrics: true,
	})))
	if cfg.EnablePprof {
		// Explicit handlers on our own mux: net/http/pprof's init also
		// registers on http.DefaultServeMux, which berth never serves.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	m := &metricsServer{
		http: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		addr:   lis.Addr(),
		served: make(chan error, 1),
	}
	go func() { m.served <- m.http.Serve(lis) }()
	log.Info("serving metrics", "address", m.addr.String(), "path", "/metrics", "pprof", cfg.EnablePprof)
	return m, nil
}

// Close stops the server, letting a scrape in progress finish for a moment.
func (m *metricsServer) Close() error {
	if m == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := m.http.Shutdown(ctx)
	if serveErr := <-m.served; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}
