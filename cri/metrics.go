package cri

// Prometheus metrics of the CRI layer and of the packages below it. Those
// packages report through small Observer interfaces (image.Observer,
// network.Observer, sandbox.Observer) and know nothing of Prometheus; this
// file turns their events into collectors registered on the daemon's own
// registry (Options.Metrics), never on the global default one.

import (
	"github.com/berth-runtime/berth/network"
	"github.com/berth-runtime/berth/sandbox"
	"github.com/prometheus/client_golang/prometheus"
)

// Histogram buckets, in seconds, sized for what each one times. Functions,
// not variables: a slice at package level could be changed by anyone.

// rpcBuckets: List and Status take about a millisecond, PullImage minutes.
func rpcBuckets() []float64 {
	return []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
}

// pullBuckets: a cached tag takes a second, a large image many minutes.
func pullBuckets() []float64 {
	return []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}
}

// cniBuckets: ADD and DEL take tens of milliseconds, seconds under iptables
// contention.
func cniBuckets() []float64 {
	return []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
}

// metrics holds the collectors; a nil *metrics (metrics off) records nothing.
type metrics struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	latency  *prometheus.HistogramVec

	pullBytes     prometheus.Counter
	pullDuration  *prometheus.HistogramVec
	pullFailures  *prometheus.CounterVec
	pullsInFlight prometheus.Gauge

	cniDuration *prometheus.HistogramVec
	cniFailures *prometheus.CounterVec

	monitorStarts prometheus.Counter
	monitorDeaths prometheus.Counter
	monitorLost   prometheus.Counter

	rollbacks *prometheus.CounterVec
	orphans   *prometheus.CounterVec
}

// newMetrics makes the collectors and registers them on reg; a nil reg
// gives nil (no metrics).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_cri_requests_total",
			Help: "CRI requests handled, by method and gRPC status code.",
		}, []string{"method", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_cri_request_errors_total",
			Help: "CRI requests that failed, by method and gRPC status code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_cri_request_duration_seconds",
			Help:    "Time to handle a CRI request (for streams, the stream's life), by method.",
			Buckets: rpcBuckets(),
		}, []string{"method"}),

		pullBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_image_pull_bytes_total",
			Help: "Bytes received from registries by image pulls.",
		}),
		pullDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_image_pull_duration_seconds",
			Help:    "Time of image pulls that downloaded, by result (success or failure).",
			Buckets: pullBuckets(),
		}, []string{"result"}),
		pullFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_image_pull_failures_total",
			Help: "Image pulls that failed, by the gRPC status code PullImage returned.",
		}, []string{"code"}),
		pullsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_image_pulls_in_flight",
			Help: "Image pulls downloading now (identical concurrent pulls share one).",
		}),

		cniDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_cni_operation_duration_seconds",
			Help:    "Time of CNI operations on pod networks, by operation (ADD or DEL).",
			Buckets: cniBuckets(),
		}, []string{"operation"}),
		cniFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_cni_operation_failures_total",
			Help: "CNI operations that failed, by operation (ADD or DEL).",
		}, []string{"operation"}),

		monitorStarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_monitor_starts_total",
			Help: "Pod monitors started.",
		}),
		monitorDeaths: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_monitor_deaths_total",
			Help: "Pod monitors found gone while berth followed them or at berth's start (a reboot, a kill).",
		}),
		monitorLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_monitor_lost_containers_total",
			Help: "Running containers reported exited with an unknown end because their pod's monitor died.",
		}),

		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_recovery_rollbacks_total",
			Help: "Creations cut off by a crash and rolled back at start, by kind (pod_sandbox or container).",
		}, []string{"kind"}),
		orphans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_recovery_orphans_removed_total",
			Help: "Leftovers no record owned, removed by reconciliation at start, by kind.",
		}, []string{"kind"}),
	}
	// Series that exist from the start read 0 rather than missing, so
	// rate() and alerts work before the first event.
	for _, op := range []string{network.OpAdd, network.OpDel} {
		m.cniFailures.WithLabelValues(op)
		m.cniDuration.WithLabelValues(op)
	}
	for _, kind := range []string{sandbox.RollbackPodSandbox, sandbox.RollbackContainer} {
		m.rollbacks.WithLabelValues(kind)
	}
	for _, c := range []prometheus.Collector{
		m.requests, m.errors, m.latency,
		m.pullBytes, m.pullDuration, m.pullFailures, m.pullsInFlight,
		m.cniDuration, m.cniFailures,
		m.monitorStarts, m.monitorDeaths, m.monitorLost,
		m.rollbacks, m.orphans,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
