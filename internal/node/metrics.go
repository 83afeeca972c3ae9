package node

// Prometheus instrumentation of one node: its Raft state read at scrape
// time, the latency and outcome of every proposed command, and snapshot
// and restore timings. The collectors belong to the Node; the HTTP layer
// registers them in the registry it serves (see Collectors), so several
// nodes in one process (the in-process test cluster) keep separate
// numbers.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftkv/raftkv/internal/fsm"
)

// Outcome label values of raftkv_apply_commands_total.
const (
	applyApplied     = "applied"     // committed and applied (a failed compare or an absent key included)
	applyNotLeader   = "not_leader"  // not proposed: this node does not lead
	applyUnavailable = "unavailable" // not proposed: queue full, transfer in progress, shutting down
	applyUnknown     = "unknown"     // proposed, commit not confirmed in time
	applyError       = "error"       // anything else
)

// metrics are the node's own collectors.
type metrics struct {
	applyDuration    prometheus.Histogram
	applyTotal       *prometheus.CounterVec
	snapshotDuration prometheus.Histogram
	snapshotTotal    *prometheus.CounterVec
	restoreDuration  prometheus.Histogram
	restoreTotal     *prometheus.CounterVec
	leaderChanges    prometheus.Counter
	storageFailures  *prometheus.CounterVec
	leaseExpiries    prometheus.Counter // leases.go
}

// LatencyBuckets are the histogram buckets of every request-latency metric
// (here and in the HTTP layer): from a cached read (sub-millisecond) to a
// request that waits out a deadline (seconds); a write costs a few fsyncs
// in between.
var LatencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// snapshotBuckets span a small store (milliseconds) to a large one (minutes).
var snapshotBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

func newMetrics() *metrics {
	m := &metrics{
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raftkv_apply_duration_seconds",
			Help:    "Time from proposing a command on the leader to its being committed and applied there.",
			Buckets: LatencyBuckets,
		}),
		applyTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_apply_commands_total",
			Help: "Commands this node was asked to propose, by outcome (applied, not_leader, unavailable, unknown, error).",
		}, []string{"outcome"}),
		snapshotDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raftkv_snapshot_duration_seconds",
			Help:    "Time to capture and persist one snapshot of the state machine.",
			Buckets: snapshotBuckets,
		}),
		snapshotTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_snapshots_total",
			Help: "Snapshots of the state machine taken by this node, by outcome (ok, error).",
		}, []string{"outcome"}),
		restoreDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raftkv_snapshot_restore_duration_seconds",
			Help:    "Time to restore the state machine from a snapshot (at start, or one sent by the leader).",
			Buckets: snapshotBuckets,
		}),
		restoreTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_snapshot_restores_total",
			Help: "Snapshot restores into the state machine, by outcome (ok, error).",
		}, []string{"outcome"}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_raft_leader_changes_total",
			Help: "Times this node saw the leader change (including to none).",
		}),
		storageFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_storage_failures_total",
			Help: "Writes this node's volume refused or failed, by store (log, stable, snapshot).",
		}, []string{"store"}),
		leaseExpiries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_lease_expiries_total",
			Help: "Leases (TTL keys' own included) this node expired while it led.",
		}),
	}
	for _, s := range []string{storeLog, storeStable, storeSnapshot} {
		m.storageFailures.WithLabelValues(s)
	}
	// Export every outcome from the start, so a rate() over a series that
	// has not happened yet reads 0 rather than "no data".
	for _, o := range []string{applyApplied, applyNotLeader, applyUnavailable, applyUnknown, applyError} {
		m.applyTotal.WithLabelValues(o)
	}
	for _, o := range []string{"ok", "error"} {
		m.snapshotTotal.WithLabelValues(o)
		m.restoreTotal.WithLabelValues(o)
	}
	return m
}

// applyOutcome classes one command's outcome for raftkv_apply_commands_total.
func applyOutcome(err error) string {
	switch {
	case err == nil:
		return applyApplied
	case errors.Is(err, ErrNotLeader):
		return applyNotLeader
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrShutdown), errors.Is(err, ErrStorageUnavailable):
		return applyUnavailable
	case errors.Is(err, ErrOutcomeUnknown):
		return applyUnknown
	}
	return applyError
}

func outcomeLabel(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// Collectors returns the node's Prometheus collectors: Raft state and FSM
// size read at scrape time, apply latency and outcomes, snapshot and
// restore counts and durations, and hashicorp/raft's own go-metrics (a
// process-wide collector, see raftMetrics). Register them in one registry
// per node.
func (n *Node) Collectors() []prometheus.Collector {
	out := []prometheus.Collector{
		stateCollector{n: n},
		n.metrics.applyDuration, n.metrics.applyTotal,
		n.metrics.snapshotDuration, n.metrics.snapshotTotal,
		n.metrics.restoreDuration, n.metrics.restoreTotal,
		n.metrics.leaderChanges, n.metrics.storageFailures,
		n.metrics.leaseExpiries,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftkv_leases",
			Help: "Leases in this replica's state, TTL keys' own included (at most 10,000).",
		}, func() float64 { return float64(n.fsm.LeaseCount()) }),
	}
	if c := raftMetrics(); c != nil {
		out = append(out, c)
	}
	return out
}

// stateCollector reads the node's Raft and FSM state at scrape time. It
// uses only raft's lock-free accessors and one bounded configuration read:
// raft.Stats would wait on raft's main loop without a deadline.
type stateCollector struct{ n *Node }

var (
	descState = prometheus.NewDesc("raftkv_raft_state",
		"1 for this node's current Raft state (follower, candidate, leader, shutdown), 0 for the others.", []string{"state"}, nil)
	descTerm        = prometheus.NewDesc("raftkv_raft_term", "Current Raft term.", nil, nil)
	descCommitIndex = prometheus.NewDesc("raftkv_raft_commit_index", "Highest log index this node knows to be committed.", nil, nil)
	descApplied     = prometheus.NewDesc("raftkv_raft_applied_index", "Index of the last log entry the state machine applied.", nil, nil)
	descLastIndex   = prometheus.NewDesc("raftkv_raft_last_log_index", "Index of the last entry in this node's log.", nil, nil)
	descContact     = prometheus.NewDesc("raftkv_raft_last_contact_seconds",
		"Seconds since this node last heard from the leader; 0 on the leader; absent if it never has.", nil, nil)
	descHasLeader = prometheus.NewDesc("raftkv_raft_has_leader", "1 if this node knows a leader, else 0.", nil, nil)
	descMembers   = prometheus.NewDesc("raftkv_raft_members",
		"Members of the latest Raft configuration, by suffrage (voter, learner, staging).", []string{"suffrage"}, nil)
	descKeys  = prometheus.NewDesc("raftkv_fsm_keys", "Keys in this node's replica.", nil, nil)
	descBytes = prometheus.NewDesc("raftkv_fsm_bytes", "Sum of key and value lengths in this node's replica.", nil, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descTerm, descCommitIndex, descApplied, descLastIndex, descContact, descHasLeader, descMembers, descKeys, descBytes} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.n.raft
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	state := r.State()
	for _, s := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		v := 0.0
		if s == state {
			v = 1
		}
		gauge(descState, v, stateName(s))
	}
	gauge(descTerm, float64(r.CurrentTerm()))
	gauge(descCommitIndex, float64(r.CommitIndex()))
	gauge(descApplied, float64(c.n.fsm.AppliedIndex()))
	gauge(descLastIndex, float64(r.LastIndex()))
	if since, ok := c.n.SinceLeaderContact(); ok {
		gauge(descContact, since.Seconds())
	}
	hasLeader := 0.0
	if _, id := r.LeaderWithID(); id != "" {
		hasLeader = 1
	}
	gauge(descHasLeader, hasLeader)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	conf, err := c.n.configuration(ctx)
	cancel()
	if err == nil {
		counts := map[raft.ServerSuffrage]int{}
		for _, s := range conf.Servers {
			counts[s.Suffrage]++
		}
		for _, s := range []raft.ServerSuffrage{raft.Voter, raft.Nonvoter, raft.Staging} {
			gauge(descMembers, float64(counts[s]), suffrageName(s))
		}
	}
	st := c.n.fsm.Stats()
	gauge(descKeys, float64(st.Keys))
	gauge(descBytes, float64(st.Bytes))
}

func stateName(s raft.RaftState) string {
	switch s {
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	case raft.Leader:
		return "leader"
	}
	return "shutdown"
}

// instrumentedFSM is the state machine as raft sees it: the FSM itself
// (ApplyBatch is promoted unchanged) with snapshot and restore timed.
type instrumentedFSM struct {
	*fsm.FSM
	m *metrics
	// restoreFailed, if set, hears of every failed Restore before raft
	// does (node.go: raft panics on a failed online restore).
	restoreFailed func(error)
}

var _ raft.BatchingFSM = instrumentedFSM{}

func (f instrumentedFSM) Snapshot() (raft.FSMSnapshot, error) {
	start := time.Now()
	s, err := f.FSM.Snapshot()
	if err != nil {
		f.m.snapshotDone(start, err)
		return nil, err
	}
	return &timedSnapshot{FSMSnapshot: s, start: start, m: f.m}, nil
}

func (f instrumentedFSM) Restore(rc io.ReadCloser) (err error) {
	start := time.Now()
	// A snapshot the FSM cannot decode fails the restore rather than kill
	// the process here: raft answers a failed install with an error and
	// tries an older snapshot at start. The FSM replaces its state only
	// after the whole snapshot decoded.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: the snapshot could not be decoded: %v", ErrCorruptState, p)
		}
		f.m.restoreDuration.Observe(time.Since(start).Seconds())
		f.m.restoreTotal.WithLabelValues(outcomeLabel(err)).Inc()
		if err != nil && f.restoreFailed != nil {
			f.restoreFailed(err)
		}
	}()
	return f.FSM.Restore(rc)
}

// timedSnapshot counts a snapshot once it is persisted: capture (an O(1)
// clone) plus writing it out.
type timedSnapshot struct {
	raft.FSMSnapshot
	start time.Time
	m     *metrics
}

func (s *timedSnapshot) Persist(sink raft.SnapshotSink) error {
	err := s.FSMSnapshot.Persist(sink)
	s.m.snapshotDone(s.start, err)
	return err
}

func (m *metrics) snapshotDone(start time.Time, err error) {
	if err == nil {
		m.snapshotDuration.Observe(time.Since(start).Seconds())
	}
	m.snapshotTotal.WithLabelValues(outcomeLabel(err)).Inc()
}
