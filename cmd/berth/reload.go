package main

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/berth-runtime/berth/internal/config"
	"github.com/prometheus/client_golang/prometheus"
)

// reloadTarget is what a reload changes in the running daemon besides its
// log level: the CRI server (cri.Server.Reload).
type reloadTarget interface {
	Reload(ctx context.Context, cfg config.Config)
}

// reloader applies the config file again on SIGHUP, without stopping the
// gRPC server: requests in flight and new ones are served throughout.
type reloader struct {
	flags *config.Flags
	// current is the config in force: the startup values of keys that
	// need a restart, the last reloaded values of the others.
	current config.Config
	// file is what the file alone said when last applied (flags aside).
	file    config.Config
	level   *slog.LevelVar
	target  reloadTarget
	log     *slog.Logger
	metrics *reloadMetrics // nil when metrics are off
}

// reload reads and validates the config file with the daemon's flags. An
// invalid file changes nothing: every problem is logged and the running
// config stays. A valid one has its reloadable keys applied; the keys that
// changed but need a restart are named in the log. It reports success.
func (r *reloader) reload(ctx context.Context) bool {
	file := r.flags.File()
	next, nextFile, err := r.flags.ResolveForReload()
	if err != nil {
		r.log.ErrorContext(ctx, "config reload refused: the running config stays in effect",
			"file", file, "problems", problems(err))
		r.metrics.record(false)
		return false
	}
	var applied, restart []string
	for _, key := range config.Changes(r.current, next) {
		if config.Reloadable(key) {
			applied = append(applied, key)
		} else {
			restart = append(restart, key)
		}
	}
	var shadowed []string
	for _, key := range config.Changes(r.file, nextFile) {
		if flag, ok := r.flags.SetBy(key); ok {
			shadowed = append(shadowed, key+" (flag --"+flag+")")
		}
	}
	if len(shadowed) > 0 {
		r.log.WarnContext(ctx, "config reload: keys changed in the file are set by flags, which keep winning", "keys", shadowed)
	}
	if len(restart) > 0 {
		r.log.WarnContext(ctx, "config reload: these keys changed but need a restart of berth; their running values stay",
			"keys", restart)
	}
	// The confirmation is logged at the more verbose of the two levels:
	// an operator who turns the level down still sees the reload happen.
	quieter := parseLevel(next.Log.Level) > r.level.Level()
	if !quieter {
		setLogLevel(r.level, next.Log.Level)
	}
	r.target.Reload(ctx, next)
	r.current = r.current.WithReloaded(next)
	r.file = nextFile
	if applied == nil {
		applied = []string{}
	}
	r.log.InfoContext(ctx, "config reloaded", "file", file, "applied", applied, "log_level", next.Log.Level)
	if quieter {
		setLogLevel(r.level, next.Log.Level)
	}
	r.metrics.record(true)
	return true
}

// problems splits a config error into its problems, one per line of the
// log's list: the loader joins them with newlines or "; ".
func problems(err error) []string {
	var out []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line == "invalid configuration:" {
			continue
		}
		out = append(out, line)
	}
	return out
}

// reloadMetrics count reloads, as Prometheus counts its own.
type reloadMetrics struct {
	total       *prometheus.CounterVec
	successful  prometheus.Gauge
	lastSuccess prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) (*reloadMetrics, error) {
	m := &reloadMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_config_reloads_total",
			Help: "Config reloads (SIGHUP), by result (success or failure).",
		}, []string{"result"}),
		successful: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_config_last_reload_successful",
			Help: "1 if the last config reload (or the start) applied its file, 0 if it was refused.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_config_last_reload_success_timestamp_seconds",
			Help: "When the config was last applied (the start or a reload), as a Unix time.",
		}),
	}
	m.total.WithLabelValues("success")
	m.total.WithLabelValues("failure")
	m.successful.Set(1)
	m.lastSuccess.SetToCurrentTime()
	for _, c := range []prometheus.Collector{m.total, m.successful, m.lastSuccess} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *reloadMetrics) record(ok bool) {
	if m == nil {
		return
	}
	if !ok {
		m.total.WithLabelValues("failure").Inc()
		m.successful.Set(0)
		return
	}
	m.total.WithLabelValues("success").Inc()
	m.successful.Set(1)
	m.lastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
}
