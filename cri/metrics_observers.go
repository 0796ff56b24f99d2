package cri

import (
	"context"
	"path"
	"time"

	"github.com/berth-runtime/berth/image"
	"github.com/berth-runtime/berth/network"
	"github.com/berth-runtime/berth/sandbox"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// GRPCServerOptions are ServerOptions with, when metrics are on, the
// metrics interceptors outermost: they see the final status code, after
// panic recovery and error mapping, and the whole time of the call.
func (s *Server) GRPCServerOptions() []grpc.ServerOption {
	if s.metrics == nil {
		return ServerOptions(s.log)
	}
	// Chained interceptors of several options run in option order, so
	// these come first, outside logging.
	return append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.metrics.unary),
		grpc.ChainStreamInterceptor(s.metrics.stream),
	}, ServerOptions(s.log)...)
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.observeRPC(info.FullMethod, time.Since(start), err)
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	m.observeRPC(info.FullMethod, time.Since(start), err)
	return err
}

// observeRPC counts one call. The method label is the bare RPC name
// ("RunPodSandbox"): gRPC answers unknown methods before any interceptor,
// so the label's values are bounded by the CRI.
func (m *metrics) observeRPC(fullMethod string, took time.Duration, err error) {
	method := path.Base(fullMethod)
	code := status.Code(err)
	m.requests.WithLabelValues(method, code.String()).Inc()
	if code != codes.OK {
		m.errors.WithLabelValues(method, code.String()).Inc()
	}
	m.latency.WithLabelValues(method).Observe(took.Seconds())
}

// imageObserver reports pulls (image.Observer).
type imageObserver struct{ m *metrics }

func (o imageObserver) PullStarted(string) { o.m.pullsInFlight.Inc() }
func (o imageObserver) PullBytes(n int)    { o.m.pullBytes.Add(float64(n)) }

func (o imageObserver) PullDone(_ string, took time.Duration, err error) {
	o.m.pullsInFlight.Dec()
	result := "success"
	if err != nil {
		result = "failure"
		// The code kubelet sees for it: the same mapping as PullImage's.
		o.m.pullFailures.WithLabelValues(status.Code(toStatus(err)).String()).Inc()
	}
	o.m.pullDuration.WithLabelValues(result).Observe(took.Seconds())
}

// networkObserver reports CNI operations (network.Observer).
type networkObserver struct{ m *metrics }

func (o networkObserver) CNIDone(op string, took time.Duration, err error) {
	o.m.cniDuration.WithLabelValues(op).Observe(took.Seconds())
	if err != nil {
		o.m.cniFailures.WithLabelValues(op).Inc()
	}
}

// sandboxObserver reports monitors and recovery (sandbox.Observer).
type sandboxObserver struct{ m *metrics }

func (o sandboxObserver) MonitorStarted(string) { o.m.monitorStarts.Inc() }

func (o sandboxObserver) MonitorDied(_ string, lost int) {
	o.m.monitorDeaths.Inc()
	o.m.monitorLost.Add(float64(lost))
}

func (o sandboxObserver) RolledBack(kind string) { o.m.rollbacks.WithLabelValues(kind).Inc() }

func (o sandboxObserver) OrphansRemoved(kind string, n int) {
	o.m.orphans.WithLabelValues(kind).Add(float64(n))
}

// The observers for the packages below, nil when metrics are off (the
// packages then use their own no-op observer). Typed nils would not be
// nil interfaces, hence the explicit returns.

func (m *metrics) imageObserver() image.Observer {
	if m == nil {
		return nil
	}
	return imageObserver{m}
}

func (m *metrics) networkObserver() network.Observer {
	if m == nil {
		return nil
	}
	return networkObserver{m}
}

func (m *metrics) sandboxObserver() sandbox.Observer {
	if m == nil {
		return nil
	}
	return sandboxObserver{m}
}

// stateCollector reports the pods, containers and monitors there are, read
// from the sandbox manager at scrape time (sandbox.Manager.Counts: only its
// maps, under its read lock), so the numbers are never stale and no event
// can be missed.
type stateCollector struct {
	counts     func() sandbox.Counts
	pods       *prometheus.Desc
	containers *prometheus.Desc
	monitors   *prometheus.Desc
}

func newStateCollector(counts func() sandbox.Counts) *stateCollector {
	return &stateCollector{
		counts: counts,
		pods: prometheus.NewDesc("berth_pod_sandboxes",
			"Pod sandboxes, by state (creating, ready, notready).", []string{"state"}, nil),
		containers: prometheus.NewDesc("berth_containers",
			"Containers, by state (creating, created, running, exited, unknown).", []string{"state"}, nil),
		monitors: prometheus.NewDesc("berth_monitors",
			"Pod monitor processes berth has recorded (one per pod).", nil, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pods
	ch <- c.containers
	ch <- c.monitors
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.counts()
	// Every known state, zeros included, so a series never vanishes.
	pods := map[string]int{string(sandbox.StateCreating): 0, string(sandbox.StateReady): 0, string(sandbox.StateNotReady): 0}
	for st, k := range n.Pods {
		pods[string(st)] += k
	}
	ctrs := map[string]int{}
	for _, st := range []sandbox.ContainerState{sandbox.ContainerCreating, sandbox.ContainerCreated,
		sandbox.ContainerRunning, sandbox.ContainerExited, sandbox.ContainerUnknown} {
		ctrs[string(st)] = 0
	}
	for st, k := range n.Containers {
		ctrs[string(st)] += k
	}
	for st, k := range pods {
		ch <- prometheus.MustNewConstMetric(c.pods, prometheus.GaugeValue, float64(k), st)
	}
	for st, k := range ctrs {
		ch <- prometheus.MustNewConstMetric(c.containers, prometheus.GaugeValue, float64(k), st)
	}
	ch <- prometheus.MustNewConstMetric(c.monitors, prometheus.GaugeValue, float64(n.Monitors))
}
