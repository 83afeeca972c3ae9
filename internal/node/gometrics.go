package node

import (
	"sync"

	gometrics "github.com/hashicorp/go-metrics"
	gmprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// hashicorp/raft reports its internals (commit time, FSM apply time,
// replication RPCs, elections, …) through github.com/hashicorp/go-metrics,
// whose sink is one global per process. raftMetrics installs a Prometheus
// sink as that global, once, and returns it as a collector that any number
// of registries may register.
//
// Because the sink is process-wide, raft's metrics (named raft_*) are the
// sum over every node in the process. The daemon runs one node per
// process, so there they are that node's; only the in-process test cluster
// mixes them. The raftkv_* metrics are per node in every case.

var (
	raftSinkOnce sync.Once
	raftSink     prometheus.Collector
)

// raftMetrics returns the process-wide collector of hashicorp/raft's
// go-metrics, installing the sink on first use; nil if it could not be
// installed. Open calls it before raft starts, so no early metric is lost.
func raftMetrics() prometheus.Collector {
	raftSinkOnce.Do(func() {
		// The sink registers itself in the registry it is given: give it a
		// private one, never the global default, so nothing is exported
		// except through the registries that register it explicitly.
		sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{
			Registerer: prometheus.NewRegistry(),
			Name:       "raftkv_raft_go_metrics_sink",
			// Never expire: raft's metric set is small and bounded, and a
			// counter that vanished between events would read as a reset.
			Expiration: 0,
		})
		if err != nil {
			// Registering in a fresh registry cannot collide; keep raft
			// running without its metrics rather than fail the node.
			return
		}
		conf := gometrics.DefaultConfig("")
		conf.EnableHostname = false       // no host name glued into metric names
		conf.EnableRuntimeMetrics = false // the Go collector covers the runtime
		if _, err := gometrics.NewGlobal(conf, sink); err != nil {
			return
		}
		raftSink = sink
	})
	return raftSink
}
