package httpapi

// The Service owns its Prometheus registry (not the global default), so
// several nodes in one process keep separate numbers.

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftkv/raftkv/internal/node"
)

type httpMetrics struct {
	registry *prometheus.Registry
	handler  http.Handler

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newHTTPMetrics builds the registry: the Go and process collectors, the
// HTTP instruments, and extra (the node's and the cluster's).
func newHTTPMetrics(extra ...prometheus.Collector) *httpMetrics {
	m := &httpMetrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_http_requests_total",
			Help: "HTTP requests served, by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "raftkv_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, forwarding included, by route template and method.",
			Buckets: node.LatencyBuckets,
		}, []string{"route", "method"}),
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.duration,
	)
	m.registry.MustRegister(extra...)
	m.handler = promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		// A collector that fails (say, the configuration read timed out)
		// leaves its metrics out; the rest are still served.
		ErrorHandling:       promhttp.ContinueOnError,
		Timeout:             10 * time.Second,
		MaxRequestsInFlight: 4,
	})
	return m
}

// Registry is the Prometheus registry /metrics serves; callers may add
// their own collectors.
func (s *Service) Registry() *prometheus.Registry { return s.metrics.registry }

func (s *Service) handleMetrics(w http.ResponseWriter, r *http.Request, _ params) error {
	s.metrics.handler.ServeHTTP(w, r)
	return nil
}
