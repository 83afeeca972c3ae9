// Package node runs one Raft member around the raftkv state machine: it opens
// the stores under the volume directory, bootstraps or waits to be joined,
// proposes commands with a per-request deadline, confirms leadership for
// linearizable reads, and changes membership. It knows nothing of HTTP.
package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/logging"
	"github.com/raftkv/raftkv/internal/tlsconfig"
)

// Config is what a Node needs. Zero timing fields keep hashicorp/raft's
// defaults; tests shorten them.
type Config struct {
	ID       string
	Dir      string // holds the log (raft.db or wal/) and snapshots/
	LogStore string // LogStoreBolt (default) or LogStoreWAL
	// WALSegmentSize overrides raft-wal's 64 MiB segments. The WAL drops
	// compacted entries only a whole segment at a time, so tests use small
	// segments to make a compaction take effect.
	WALSegmentSize int
	RaftBind       string // host:port the transport listens on (port 0: any)
	RaftAdvertise  string // host:port peers dial; empty: the bound address
	HTTPAdvertise  string // host:port of this node's API, replicated for forwarding
	Bootstrap      bool   // form a one-node cluster if Dir holds no state

	// RaftTLS, when set, runs the Raft transport over mutual TLS: only
	// peers with a certificate from RaftTLS.CA connect (transport.go).
	RaftTLS *tlsconfig.Material

	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	SnapshotRetain    int

	// CommitTimeout is raft's CommitTimeout (zero: DefaultCommitTimeout).
	CommitTimeout time.Duration

	// History bounds the change history the FSM keeps (zero:
	// fsm.DefaultHistoryLimits).
	History fsm.HistoryLimits

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration

	Logger *logrus.Logger

	// OnFatal stops the process when raft cannot go on without a write that
	// failed (saving the term). Nil: log one line and exit with status 1,
	// which supervisors restart (a Go panic exits 2, which the shipped
	// systemd unit does not). It must not return.
	OnFatal func(error)

	// wrapStore, in tests, wraps the log and stable store (fault injection).
	wrapStore func(logStore) logStore
}

// Node is one running Raft member.
type Node struct {
	cfg       Config
	log       *logrus.Entry
	fsm       *fsm.FSM
	raft      *raft.Raft
	transport *raft.NetworkTransport
	stream    *trackedStream   // the transport's connections, cut on Close
	hold      *voteHold        // nil unless the start-up repair dropped state (votehold.go)
	store     logStore         // the bare store, to close
	stable    raft.StableStore // the store as raft sees it (faultStore), for the cluster id
	health    storageHealth    // storage.go
	guard     guardState       // storage.go: a panic in a store stops the node
	snapshots *raft.FileSnapshotStore
	reads     *readIndex
	metrics   *metrics
	restore   restoreState // restore.go
	tracker   *fsm.Tracker // leases.go

	// A new leader serves linearizable reads only once it has committed an
	// entry of its own term (its registration); readyTerm records that term.
	readyMu   sync.Mutex
	readyTerm uint64
	readyCh   chan struct{} // closed and replaced whenever readyTerm changes

	// clusterID is the cluster's id (identity.go), a string; clusterIDMu
	// serialises recording it.
	clusterID   atomic.Value
	clusterIDMu sync.Mutex

	notifyCh  chan bool
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Open starts a Raft member with its state under cfg.Dir.
func Open(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = logrus.StandardLogger()
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger.WithField("component", "node"),
		fsm:      fsm.New(),
		readyCh:  make(chan struct{}),
		notifyCh: make(chan bool, 16),
		stop:     make(chan struct{}),
		metrics:  newMetrics(),
	}
	n.health.log, n.health.failures = n.log, n.metrics.storageFailures
	if cfg.History != (fsm.HistoryLimits{}) {
		n.fsm.SetHistoryLimits(cfg.History)
	}
	raftMetrics() // before raft starts: its go-metrics sink is process-wide
	if err := n.openRecovered(); err != nil {
		n.closeStores()
		return nil, err
	}
	n.reads = &readIndex{raft: n.raft}
	n.tracker = fsm.NewTracker(n.fsm, nil)
	n.wg.Add(3)
	go n.watchLeadership()
	go n.observeLeader()
	go n.trackLeases()
	return n, nil
}

// openRecovered is open with raft's panics while it restores the volume
// (a snapshot that does not restore, a log entry that cannot be read)
// turned into an error, so the process stops with one line and exit
// status 1, which supervisors restart, rather than a panic's 2.
func (n *Node) openRecovered() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: raft could not start on this volume: %v", ErrCorruptState, p)
		}
		// raft flattens a store's error into text; the store's panic is
		// the cause, and says what to do.
		if de := n.guard.damaged.Load(); err != nil && de != nil {
			err = de
		}
	}()
	return n.open()
}

func (n *Node) open() error {
	cfg := n.cfg
	hlog := logging.HCLog(cfg.Logger, "raft")
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return fmt.Errorf("create volume dir: %w", err)
	}

	store, err := openLogStore(cfg.Dir, cfg.LogStore, cfg.WALSegmentSize, cfg.Logger)
	if err != nil {
		return err
	}
	n.store = store
	if cfg.wrapStore != nil {
		store = cfg.wrapStore(store)
	}
	fatal := cfg.OnFatal
	if fatal == nil {
		fatal = exitOnStorageFailure(n.log)
	}
	n.guard.fatal, n.guard.failures = fatal, n.metrics.storageFailures
	logGuard := &storeGuard{file: logStorePath(cfg.Dir, cfg.LogStore), store: storeLog, guardState: &n.guard}
	fs := &faultStore{logStore: store, h: &n.health, g: logGuard, fatal: fatal}
	n.stable = fs
	if err := n.loadClusterID(); err != nil {
		return err
	}

	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, cfg.SnapshotRetain, hlog.Named("snapshot"))
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	n.snapshots = snaps
	// Before raft opens them: raft falls back past a corrupt snapshot and
	// then panics on a log that no longer reaches back.
	repaired, err := checkSnapshots(cfg.Dir, cfg.ID, snaps, fs, n.log)
	if err != nil {
		return err
	}
	// The log too, read through the store itself (faultStore's GetLog
	// stops the node on a bad entry; here it can still be repaired).
	var snapConf *raft.Configuration
	if metas, err := snaps.List(); err == nil && len(metas) > 0 {
		snapConf = &metas[0].Configuration
	}
	dropped, err := checkLog(cfg.ID, store, snapConf, n.log)
	if err != nil {
		return err
	}
	if dropped != "" {
		repaired = strings.TrimPrefix(repaired+"; "+dropped, "; ")
	}

	var advertise net.Addr
	if cfg.RaftAdvertise != "" {
		if advertise, err = net.ResolveTCPAddr("tcp", cfg.RaftAdvertise); err != nil {
			return fmt.Errorf("resolve raft advertise address %q: %w", cfg.RaftAdvertise, err)
		}
	}
	trans, stream, err := newTransport(cfg.RaftBind, advertise, cfg.RaftTLS, hlog.Named("net"), n.log)
	if err != nil {
		return fmt.Errorf("listen for raft on %s: %w", cfg.RaftBind, err)
	}
	n.transport, n.stream = trans, stream
	// raft and the vote hold see the stores through their guards.
	snapGuard := &storeGuard{file: filepath.Join(cfg.Dir, snapshotsDir), store: storeSnapshot, guardState: &n.guard}
	guardedSnaps := snapshotStore{SnapshotStore: snaps, h: &n.health, g: snapGuard}
	var rtrans raft.Transport = trans
	minTerm, why, err := voteHoldAtStart(fs, repaired)
	if err != nil {
		return err
	}
	if why != "" {
		n.hold = newVoteHold(trans, cfg.ID, minTerm, volumeLog{logs: fs, snaps: guardedSnaps}, why, n.log,
			func() error { return fs.SetUint64(stableKeyVoteHold, 0) })
		rtrans = n.hold
	}

	rc := raftConfig(cfg, hlog, n.notifyCh)

	if cfg.Bootstrap {
		has, err := raft.HasExistingState(fs, fs, snaps)
		if err != nil {
			return fmt.Errorf("inspect volume: %w", err)
		}
		// Bootstrapping a volume that already holds state would fork the
		// cluster; a restarted node simply rejoins from its log.
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{
				Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr(),
			}}}
			if err := raft.BootstrapCluster(rc, fs, fs, snaps, trans, conf); err != nil {
				return fmt.Errorf("bootstrap: %w", err)
			}
			if err := n.AdoptClusterID(newClusterID()); err != nil {
				return err
			}
			n.log.WithFields(logrus.Fields{"raft_addr": trans.LocalAddr(), "cluster_id": n.ClusterID()}).Info("bootstrapped a new single-node cluster")
		}
	}

	cache, err := raft.NewLogCache(512, fs)
	if err != nil {
		return fmt.Errorf("log cache: %w", err)
	}
	logs := classedLogs{LogStore: cache, h: &n.health}
	// From here on raft's goroutines call the stores: a panic in one
	// stops the node (storeGuard) rather than reach raft as an error.
	n.guard.running.Store(true)
	ifsm := instrumentedFSM{FSM: n.fsm, m: n.metrics, restoreFailed: n.onlineRestoreFailed}
	r, err := raft.NewRaft(rc, ifsm, logs, fs, guardedSnaps, rtrans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	return nil
}

// onlineRestoreFailed stops the node when the FSM cannot load the snapshot
// of an online restore (Restore): raft panics on that (it has already
// installed the snapshot), and the fatal exit (1) must come first. At the
// next start the snapshot check sets a bad snapshot aside. Failed restores
// on other paths (a follower's install, the start) raft answers itself.
func (n *Node) onlineRestoreFailed(err error) {
	if n.restore.online.Load() && n.guard.running.Load() {
		n.guard.once.Do(func() {
			n.guard.fatal(fmt.Errorf("the restored snapshot could not be loaded: %w", err))
		})
	}
}

// Close stops Raft and closes the stores. Safe to call more than once.
// It cuts every Raft connection (stream.CloseConns) right after telling
// raft to shut down and before waiting for it: raft.Shutdown waits for its
// replication goroutines, and one blocked on a peer that does not answer
// would hold it up to the transport timeout (10 s). So Close takes as long
// as raft's own goroutines need (an apply or a snapshot in progress), not
// as long as the slowest peer. Run it after the hand-off or leave: no RPC
// reaches a peer afterwards.
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.stop)
		if n.raft != nil {
			f := n.raft.Shutdown()
			n.cutConns()
			if e := f.Error(); e != nil {
				err = fmt.Errorf("shut down raft: %w", e)
			}
		}
		n.wg.Wait()
		n.closeStores()
	})
	return err
}

// cutConns closes the transport's connections and logs which peers had an
// RPC in flight: the peers that were not answering, which the stop no
// longer waits for.
func (n *Node) cutConns() {
	if n.stream == nil {
		return
	}
	closed, waiting := n.stream.CloseConns()
	entry := n.log.WithField("connections", closed)
	if len(waiting) == 0 {
		entry.Debug("stopping: closed the raft connections to peers")
		return
	}
	entry.WithField("peers", waiting).Warn("stopping: closed raft connections with a request in flight to peers that do not answer (paused or unreachable); the stop does not wait for them")
}

func (n *Node) closeStores() {
	if n.hold != nil {
		_ = n.hold.Close()
	}
	if n.transport != nil {
		_ = n.transport.Close()
	}
	if n.store != nil {
		_ = n.store.Close()
	}
}

// ID is this node's Raft server id.
func (n *Node) ID() string { return n.cfg.ID }

// HTTPAdvertise is the API address this node registers for itself.
func (n *Node) HTTPAdvertise() string { return n.cfg.HTTPAdvertise }

// RaftAddr is the Raft address peers use for this node.
func (n *Node) RaftAddr() string { return string(n.transport.LocalAddr()) }

// FSM gives read access to the local replica (stale reads, tests).
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// await waits for f or for ctx, whichever ends first. raft's futures have
// no cancellation, so the waiting goroutine lives until raft answers.
func await(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// timeLeft is the time until ctx's deadline, for raft's enqueue timeouts.
func timeLeft(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return 0
}

// DefaultCommitTimeout is how long a leader with nothing new to send waits before
// telling its followers the commit index anyway (raft.Config.CommitTimeout;
// hashicorp/raft waits a random time between it and twice it). A follower
// applies an entry, and serves its watchers and reads, only once it knows
// the entry is committed, which it learns from the leader's next append: at
// a low write rate that is this timeout. hashicorp/raft's default, 50 ms,
// put followers' watch events 50-100 ms behind the leader's at 5-20 writes/s
// (BENCHMARKS.md, "Watches"); 10 ms brings that under 20 ms, for one empty
// append per follower every 10-20 ms while the cluster is idle (measured on
// a 3-node loopback cluster: an idle leader went from 3.4 % to 8.3 % of a
// core, a follower from 1.0 % to 2.3 %). RAFT_COMMIT_TIMEOUT sets it.
const DefaultCommitTimeout = 10 * time.Millisecond

// raftConfig is the raft configuration of a node with cfg: raft's defaults
// but for what this file says.
func raftConfig(cfg Config, logger hclog.Logger, notify chan bool) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = logger
	rc.NotifyCh = notify
	rc.BatchApplyCh = true
	rc.CommitTimeout = DefaultCommitTimeout
	if cfg.CommitTimeout > 0 {
		rc.CommitTimeout = cfg.CommitTimeout
	}
	// A removed node keeps running (and can be added back under its id);
	// removing the leader goes through a leadership transfer instead.
	rc.ShutdownOnRemove = false
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
		// Keep as many entries after a compaction as between compactions, so
		// a briefly lagging follower catches up from the log, not a snapshot.
		rc.TrailingLogs = cfg.SnapshotThreshold
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	return rc
}
