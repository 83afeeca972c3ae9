package httpapi

// Request instrumentation: every request is counted and timed by route
// template, and logged at debug level with its route, status, duration,
// the leader it was handed to and a request id. The Service owns its
// Prometheus registry (not the global default), so several nodes in one
// process keep separate numbers.

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/node"
)

// HeaderRequestID correlates a request's log lines across nodes: taken
// from the client when present, and passed on when forwarding.
const HeaderRequestID = "X-Request-Id"

// routeUnmatched labels requests that matched no route (404 and 405), so
// arbitrary paths cannot blow up the metrics' cardinality.
const routeUnmatched = "unmatched"

// Kinds of forwarded requests (label "kind" of raftkv_forwarded_requests_total).
const (
	forwardProxy     = "proxy"          // the client's request re-sent to the leader as it is
	forwardApply     = "peer_apply"     // a batch of writes on /internal/apply
	forwardReadIndex = "peer_readindex" // a read-index request on /internal/readindex
)

// Outcomes of a forward (label "outcome").
const (
	forwardOK       = "ok"       // the leader answered (for a proxy: whatever its status)
	forwardNotSent  = "not_sent" // failed before the request was written: nothing reached the leader
	forwardTimeout  = "timeout"  // no answer before the deadline
	forwardLost     = "lost"     // broke after sending: the answer was lost
	forwardRefused  = "refused"  // the leader answered 503 (peer protocol)
	forwardBadReply = "error"    // any other failure
)

type httpMetrics struct {
	registry *prometheus.Registry
	handler  http.Handler

	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	forwards        *prometheus.CounterVec
	forwardDuration *prometheus.HistogramVec
}

func newHTTPMetrics(n *node.Node) *httpMetrics {
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
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_forwarded_requests_total",
			Help: "Round trips to the leader, by kind (proxy, peer_apply, peer_readindex) and outcome (ok, not_sent, timeout, lost, refused, error). A peer round trip carries a batch of requests.",
		}, []string{"kind", "outcome"}),
		forwardDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "raftkv_forward_duration_seconds",
			Help:    "Time of one round trip to the leader, by kind.",
			Buckets: node.LatencyBuckets,
		}, []string{"kind"}),
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.duration, m.forwards, m.forwardDuration,
	)
	if n != nil { // nil: HTTP instruments only, for handler tests
		m.registry.MustRegister(n.Collectors()...)
	}
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

func (s *Service) handleMetrics(w http.ResponseWriter, r *http.Request) {
	s.metrics.handler.ServeHTTP(w, r)
}

// recordForward counts one round trip to the leader.
func (s *Service) recordForward(kind string, start time.Time, err error) {
	s.metrics.forwards.WithLabelValues(kind, forwardOutcome(err)).Inc()
	s.metrics.forwardDuration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
}

func forwardOutcome(err error) string {
	switch {
	case err == nil:
		return forwardOK
	case errors.Is(err, ErrLeaderUnreachable):
		return forwardNotSent
	case errors.Is(err, ErrForwardTimeout):
		return forwardTimeout
	case errors.Is(err, node.ErrUnavailable):
		return forwardRefused
	case errors.Is(err, ErrForwardUnknown), errors.Is(err, ErrForwardFailed):
		return forwardLost
	}
	return forwardBadReply
}

// observedWriter records what the request log and the metrics need. The
// router's middleware fills in the route; forwarding fills in the leader.
type observedWriter struct {
	http.ResponseWriter
	status      int
	route       string
	forwardedTo string
	requestID   string // set once asked for
}

// id is the request's id (see requestID), the same every time it is asked.
func (o *observedWriter) id(r *http.Request) string {
	if o.requestID == "" {
		o.requestID = requestID(r)
	}
	return o.requestID
}

// requestIDOf is the id of the request w answers, for passing it on.
func requestIDOf(w http.ResponseWriter, r *http.Request) string {
	if o, ok := w.(*observedWriter); ok {
		return o.id(r)
	}
	return requestID(r)
}

func (o *observedWriter) WriteHeader(code int) {
	if o.status == 0 {
		o.status = code
	}
	o.ResponseWriter.WriteHeader(code)
}

func (o *observedWriter) Write(b []byte) (int, error) {
	if o.status == 0 {
		o.status = http.StatusOK
	}
	return o.ResponseWriter.Write(b)
}

// Flush and Unwrap keep streaming answers (profiles, large bodies) working
// through the wrapper; Hijack keeps connection takeover possible.
func (o *observedWriter) Flush() {
	if f, ok := o.ResponseWriter.(http.Flusher); ok {
		if o.status == 0 {
			o.status = http.StatusOK
		}
		f.Flush()
	}
}

func (o *observedWriter) Unwrap() http.ResponseWriter { return o.ResponseWriter }

func (o *observedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := o.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, http.ErrNotSupported
}

// noteRoute is the router middleware that names the matched route.
func noteRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o, ok := w.(*observedWriter); ok {
			if route := mux.CurrentRoute(r); route != nil {
				if t, err := route.GetPathTemplate(); err == nil {
					o.route = t
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// noteForward records, for the request log, the leader a request was
// handed to.
func noteForward(w http.ResponseWriter, leader string) {
	if o, ok := w.(*observedWriter); ok {
		o.forwardedTo = leader
	}
}

// finishRequest counts, times and (at debug level) logs one request.
func (s *Service) finishRequest(o *observedWriter, r *http.Request, start time.Time) {
	elapsed := time.Since(start)
	route := o.route
	if route == "" {
		route = routeUnmatched
	}
	status := o.status
	if status == 0 {
		status = http.StatusOK // a handler that wrote nothing answered 200
	}
	code := strconv.Itoa(status)
	s.metrics.requests.WithLabelValues(route, r.Method, code).Inc()
	s.metrics.duration.WithLabelValues(route, r.Method).Observe(elapsed.Seconds())

	if !s.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		return
	}
	s.log.WithFields(logrus.Fields{
		"method":       r.Method,
		"route":        route,
		"status":       status,
		"duration_ms":  float64(elapsed.Microseconds()) / 1000,
		"forwarded_to": o.forwardedTo,
		"request_id":   o.id(r),
	}).Debug("request")
}

// requestID is the client's Idempotency-Key or X-Request-Id, else a fresh
// id: this process's random prefix and a counter.
func requestID(r *http.Request) string {
	if v := r.Header.Get(HeaderIdempotencyKey); v != "" {
		return v
	}
	if v := r.Header.Get(HeaderRequestID); v != "" {
		return v
	}
	return requestIDPrefix + strconv.FormatUint(requestSeq.Add(1), 10)
}

var (
	requestSeq      atomic.Uint64
	requestIDPrefix = func() string {
		var b [4]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:]) + "-"
	}()
)

// peerKind names a peer-protocol path for the forward metrics.
func peerKind(path string) string {
	if path == pathReadIndex {
		return forwardReadIndex
	}
	return forwardApply
}
