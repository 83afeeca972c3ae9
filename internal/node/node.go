// Package node runs one Raft member around the raftkv state machine: it opens
// the stores under the volume directory, bootstraps or waits to be joined,
// proposes commands with a per-request deadline, confirms leadership for
// linearizable reads, and changes membership. It knows nothing of HTTP.
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

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

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration

	Logger *logrus.Logger
}

// Node is one running Raft member.
type Node struct {
	cfg       Config
	log       *logrus.Entry
	fsm       *fsm.FSM
	raft      *raft.Raft
	transport *raft.NetworkTransport
	store     logStore
	snapshots *raft.FileSnapshotStore
	reads     *readIndex
	metrics   *metrics
	restore   restoreState // restore.go

	// A new leader serves linearizable reads only once it has committed an
	// entry of its own term (its registration); readyTerm records that term.
	readyMu   sync.Mutex
	readyTerm uint64
	readyCh   chan struct{} // closed and replaced whenever readyTerm changes

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
	RaftMetrics() // before raft starts: its go-metrics sink is process-wide
	if err := n.open(); err != nil {
		n.closeStores()
		return nil, err
	}
	n.reads = &readIndex{raft: n.raft}
	n.wg.Add(2)
	go n.watchLeadership()
	go n.observeLeader()
	return n, nil
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

	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, cfg.SnapshotRetain, hlog.Named("snapshot"))
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	n.snapshots = snaps

	var advertise net.Addr
	if cfg.RaftAdvertise != "" {
		if advertise, err = net.ResolveTCPAddr("tcp", cfg.RaftAdvertise); err != nil {
			return fmt.Errorf("resolve raft advertise address %q: %w", cfg.RaftAdvertise, err)
		}
	}
	trans, err := newTransport(cfg.RaftBind, advertise, cfg.RaftTLS, hlog.Named("net"), n.log)
	if err != nil {
		return fmt.Errorf("listen for raft on %s: %w", cfg.RaftBind, err)
	}
	n.transport = trans

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	rc.NotifyCh = n.notifyCh
	rc.BatchApplyCh = true
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

	if cfg.Bootstrap {
		has, err := raft.HasExistingState(store, store, snaps)
		if err != nil {
			return fmt.Errorf("inspect volume: %w", err)
		}
		// Bootstrapping a volume that already holds state would fork the
		// cluster; a restarted node simply rejoins from its log.
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{
				Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr(),
			}}}
			if err := raft.BootstrapCluster(rc, store, store, snaps, trans, conf); err != nil {
				return fmt.Errorf("bootstrap: %w", err)
			}
			n.log.WithField("raft_addr", trans.LocalAddr()).Info("bootstrapped a new single-node cluster")
		}
	}

	logs, err := raft.NewLogCache(512, store)
	if err != nil {
		return fmt.Errorf("log cache: %w", err)
	}
	r, err := raft.NewRaft(rc, instrumentedFSM{FSM: n.fsm, m: n.metrics}, logs, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	return nil
}

// Close stops Raft and closes the stores. Safe to call more than once.
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.stop)
		if n.raft != nil {
			if e := n.raft.Shutdown().Error(); e != nil {
				err = fmt.Errorf("shut down raft: %w", e)
			}
		}
		n.wg.Wait()
		n.closeStores()
	})
	return err
}

func (n *Node) closeStores() {
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

// IsLeader reports whether this node currently believes it leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// SinceLeaderContact is how long ago this node last heard from the
// leader: zero on the leader itself, false if it never has.
func (n *Node) SinceLeaderContact() (time.Duration, bool) {
	if n.raft.State() == raft.Leader {
		return 0, true
	}
	t := n.raft.LastContact()
	if t.IsZero() {
		return 0, false
	}
	return time.Since(t), true
}

// Leader describes the current leader as this node knows it.
type Leader struct {
	ID       string
	RaftAddr string
	HTTPAddr string // empty until the leader's registration is applied here
}

// Leader returns the leader this node knows of, if any.
func (n *Node) Leader() (Leader, bool) {
	addr, id := n.raft.LeaderWithID()
	if id == "" {
		return Leader{}, false
	}
	l := Leader{ID: string(id), RaftAddr: string(addr)}
	l.HTTPAddr, _ = n.fsm.NodeHTTPAddr(l.ID)
	return l, true
}

// WaitLeader waits until a leader with a known HTTP address exists, or ctx ends.
func (n *Node) WaitLeader(ctx context.Context) (Leader, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if l, ok := n.Leader(); ok && l.HTTPAddr != "" {
			return l, nil
		}
		if n.raft.State() == raft.Shutdown {
			return Leader{}, ErrShutdown
		}
		select {
		case <-ctx.Done():
			return Leader{}, ErrNoLeader
		case <-n.stop:
			return Leader{}, ErrShutdown
		case <-tick.C:
		}
	}
}

// Apply proposes cmd and waits, at most until ctx's deadline, for it to be
// committed and applied here. The caller must have validated cmd.
func (n *Node) Apply(ctx context.Context, cmd *fsm.Command) (*fsm.Result, error) {
	out := n.ApplyEncoded(ctx, [][]byte{cmd.Encode(make([]byte, 0, cmd.EncodedSize()))})
	if out[0].Err != nil {
		return nil, fmt.Errorf("apply %s: %w", cmd.Op, out[0].Err)
	}
	return out[0].Result, nil
}

// Applied is the outcome of one proposed command: a Result, or an error
// from this package (ErrNotLeader and ErrUnavailable: not proposed;
// ErrOutcomeUnknown: proposed, commit not confirmed).
type Applied struct {
	Result *fsm.Result
	Err    error
}

// ApplyEncoded proposes already-encoded commands in order and waits, at
// most until ctx's deadline, for all of them. Proposing them back to back
// lets raft put them in one log batch and one fsync.
func (n *Node) ApplyEncoded(ctx context.Context, cmds [][]byte) []Applied {
	out := make([]Applied, len(cmds))
	if n.raft.State() != raft.Leader {
		for i := range out {
			out[i].Err = ErrNotLeader
		}
		n.metrics.applyTotal.WithLabelValues(applyNotLeader).Add(float64(len(cmds)))
		return out
	}
	start := time.Now()
	defer func() {
		for _, a := range out {
			n.metrics.applyTotal.WithLabelValues(applyOutcome(a.Err)).Inc()
		}
	}()
	// raft's own timeout covers only enqueueing; the deadline below covers
	// the commit too.
	futures := make([]raft.ApplyFuture, len(cmds))
	for i, c := range cmds {
		futures[i] = n.raft.Apply(c, timeLeft(ctx))
	}
	// One goroutine waits for the futures in order; done counts those it
	// has seen, so after a timeout the earlier outcomes are still known.
	var done atomic.Int64
	errs := make([]error, len(futures))
	all := make(chan struct{})
	go func() {
		for i, f := range futures {
			errs[i] = f.Error()
			if errs[i] == nil {
				n.metrics.applyDuration.Observe(time.Since(start).Seconds())
			}
			done.Store(int64(i + 1))
		}
		close(all)
	}()
	select {
	case <-all:
	case <-ctx.Done():
	}
	known := int(done.Load())
	for i, f := range futures {
		switch {
		case i >= known:
			out[i].Err = mapRaftError("commit", ctx.Err())
		case errs[i] != nil:
			out[i].Err = mapRaftError("commit", errs[i])
		default:
			res, ok := f.Response().(*fsm.Result)
			if !ok {
				out[i].Err = fmt.Errorf("unexpected apply response %T", f.Response())
				continue
			}
			out[i].Result = res
		}
	}
	return out
}

// ConsistentRead returns once a read of the local FSM is linearizable:
// this node is the leader, has committed an entry in its term, has
// confirmed its leadership with a quorum after the read began, and has
// applied everything committed before that.
func (n *Node) ConsistentRead(ctx context.Context) error {
	index, err := n.ReadIndex(ctx)
	if err != nil {
		return err
	}
	if err := n.fsm.WaitApplied(ctx, index); err != nil {
		return fmt.Errorf("%w: %v", ErrReadUnconfirmed, err)
	}
	return nil
}

// ReadIndex returns, on the leader, a commit index that covers every write
// acknowledged before the call: once a replica has applied it, a read of
// that replica is linearizable. Followers use it through the leader.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	if err := n.waitReady(ctx); err != nil {
		return 0, err
	}
	index, err := n.reads.confirm(ctx)
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, ErrNotLeader
		}
		return 0, fmt.Errorf("%w: %v", ErrReadUnconfirmed, err)
	}
	return index, nil
}

func (n *Node) waitReady(ctx context.Context) error {
	for {
		term := n.raft.CurrentTerm()
		n.readyMu.Lock()
		ready, ch := n.readyTerm == term, n.readyCh
		n.readyMu.Unlock()
		if ready {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: leader has not committed an entry in term %d yet", ErrReadUnconfirmed, term)
		case <-n.stop:
			return ErrShutdown
		}
		if n.raft.State() != raft.Leader {
			return ErrNotLeader
		}
	}
}

func (n *Node) markReady(term uint64) {
	n.readyMu.Lock()
	n.readyTerm = term
	close(n.readyCh)
	n.readyCh = make(chan struct{})
	n.readyMu.Unlock()
}

// watchLeadership reacts to leadership changes. On winning an election the
// node registers its HTTP address: that both keeps the address table fresh
// and commits the entry of its own term that linearizable reads need.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	stopEstablish := func() {}
	defer func() { stopEstablish() }()
	for {
		select {
		case <-n.stop:
			return
		case leader := <-n.notifyCh:
			stopEstablish()
			if !leader {
				n.log.WithField("term", n.raft.CurrentTerm()).Info("lost leadership")
				continue
			}
			term := n.raft.CurrentTerm()
			n.log.WithField("term", term).Info("became leader")
			ctx, cancel := context.WithCancel(context.Background())
			stopEstablish = cancel
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				n.establishLeadership(ctx, term)
			}()
		}
	}
}

func (n *Node) establishLeadership(ctx context.Context, term uint64) {
	cmd := &fsm.Command{Op: fsm.OpRegisterNode, NodeID: n.cfg.ID, HTTPAddr: n.cfg.HTTPAdvertise}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := n.Apply(actx, cmd)
		cancel()
		if err == nil {
			if n.raft.State() == raft.Leader && n.raft.CurrentTerm() == term {
				n.markReady(term)
			}
			return
		}
		if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrShutdown) {
			return
		}
		n.log.WithError(err).WithField("attempt", attempt).Warn("leader registration failed; retrying")
		select {
		case <-ctx.Done():
		case <-time.After(backoff(attempt)):
		}
	}
}

func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 5)
	return min(d, 3*time.Second)
}

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

// mapRaftError turns raft's errors (and a passed deadline) into this
// package's, keeping "nothing proposed" apart from "outcome unknown".
func mapRaftError(what string, err error) error {
	var mapped error
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		mapped = ErrNotLeader
	case errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		mapped = ErrUnavailable
	case errors.Is(err, raft.ErrRaftShutdown):
		mapped = ErrShutdown
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		mapped = ErrOutcomeUnknown
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w (%v)", what, mapped, err)
}
