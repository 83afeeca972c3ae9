package cluster

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftkv/raftkv/internal/node"
)

// Kinds of round trips to the leader (label "kind" of
// raftkv_forwarded_requests_total).
const (
	kindProxy     = "proxy"          // a client's request re-sent to the leader as it is
	kindApply     = "peer_apply"     // a batch of writes on /internal/apply
	kindReadIndex = "peer_readindex" // a read-index request on /internal/readindex
)

// Outcomes of a round trip (label "outcome").
const (
	outcomeOK       = "ok"       // the leader answered (for a proxy: whatever its status)
	outcomeNotSent  = "not_sent" // failed before the request was written: nothing reached the leader
	outcomeTimeout  = "timeout"  // no answer before the deadline
	outcomeLost     = "lost"     // broke after sending: the answer was lost
	outcomeRefused  = "refused"  // the leader answered 503 (peer protocol)
	outcomeBadReply = "error"    // any other failure
)

type forwardMetrics struct {
	forwards *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newForwardMetrics() *forwardMetrics {
	return &forwardMetrics{
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_forwarded_requests_total",
			Help: "Round trips to the leader, by kind (proxy, peer_apply, peer_readindex) and outcome (ok, not_sent, timeout, lost, refused, error). A peer round trip carries a batch of requests.",
		}, []string{"kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "raftkv_forward_duration_seconds",
			Help:    "Time of one round trip to the leader, by kind.",
			Buckets: node.LatencyBuckets,
		}, []string{"kind"}),
	}
}

func (m *forwardMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.forwards, m.duration}
}

// record counts one round trip to the leader.
func (m *forwardMetrics) record(kind string, start time.Time, err error) {
	m.forwards.WithLabelValues(kind, outcomeLabel(err)).Inc()
	m.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
}

func outcomeLabel(err error) string {
	switch {
	case err == nil:
		return outcomeOK
	case errors.Is(err, ErrLeaderUnreachable):
		return outcomeNotSent
	case errors.Is(err, ErrForwardTimeout):
		return outcomeTimeout
	case errors.Is(err, node.ErrUnavailable):
		return outcomeRefused
	case errors.Is(err, ErrForwardUnknown), errors.Is(err, ErrForwardFailed):
		return outcomeLost
	}
	return outcomeBadReply
}
