package node

// The vote hold: a node whose start-up repair dropped part of its state
// (snapcheck.go emptied its log, logcheck.go dropped a corrupt suffix) takes
// no part in elections until the leader has given back what it may have
// lost. See DESIGN.md, "The vote hold".

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/sirupsen/logrus"
)

// ErrVoteWithheld: this node repaired its volume at start (dropped a corrupt
// snapshot's log or a corrupt log suffix) and withholds its vote until the
// leader has caught it up. It serves nothing it lacks; /ready reports it.
var ErrVoteWithheld = errors.New("this node repaired its volume at start and withholds its vote until it has caught up with the leader")

// errVoteHeld is what raft sees when it asks a peer for a vote (or a
// pre-vote) while the hold is on; raft counts it as a refusal.
var errVoteHeld = errors.New("raftkv: vote withheld until this node has caught up after a start-up repair")

// stableKeyVoteHold holds, in the stable store, the term kept by a start-up
// repair whose hold has not ended yet (0 or absent: none), so a node that
// restarts before it has caught up withholds its vote again: the second
// start finds nothing to repair, but has not got back what the first
// dropped.
var stableKeyVoteHold = []byte("raftkv_vote_hold_term")

// voteHoldAtStart decides, before raft starts, whether this node holds its
// vote: repaired says what this start's checks dropped ("" for nothing).
// It records the hold in the stable store first. why is "" for no hold;
// minTerm is the term the (latest) repair kept.
func voteHoldAtStart(store raft.StableStore, repaired string) (minTerm uint64, why string, err error) {
	pending, err := store.GetUint64(stableKeyVoteHold)
	if err != nil && !isNotFound(err) {
		return 0, "", fmt.Errorf("read the vote hold: %w", err)
	}
	if repaired == "" {
		if pending == 0 {
			return 0, "", nil
		}
		return pending, "a repair at an earlier start; not caught up since", nil
	}
	// Every entry this node stored has a term no greater than the one it
	// kept (raft saves the term before it appends).
	term, err := store.GetUint64([]byte(keyCurrentTerm))
	if err != nil && !isNotFound(err) {
		return 0, "", fmt.Errorf("read the current term: %w", err)
	}
	minTerm = max(term, pending)
	if err := store.SetUint64(stableKeyVoteHold, minTerm); err != nil {
		return 0, "", fmt.Errorf("record the vote hold: %w", err)
	}
	return minTerm, repaired, nil
}

// holdLog is what the hold needs of the volume: the stored log and the
// newest snapshot, to find the term of an entry it may hold.
type holdLog interface {
	// termAt is the term of the entry at index i if this node holds it
	// (in its log, or as the last entry of its newest snapshot).
	termAt(i uint64) (term uint64, ok bool)
	// covered reports whether this node holds index i at all (its log or
	// newest snapshot reaches it).
	covered(i uint64) bool
}

// voteHold wraps the Raft transport of a repaired node. While held:
//   - RequestVote and RequestPreVote from candidates are answered "not
//     granted" (Term: the request's, so the candidate is not disturbed)
//     without reaching raft;
//   - TimeoutNow (a leadership transfer to this node) is answered with an
//     error, and this node's own vote and pre-vote requests fail, so it
//     cannot stand with its own vote either;
//   - AppendEntries are watched: the hold ends once this node holds, at
//     index c, an entry of term T, where c is the commit index carried by
//     an AppendEntries of a leader of term T, and T is at least the term
//     this node had at the repair.
//
// Once released it passes everything through, for the node's lifetime.
type voteHold struct {
	raft.Transport // the real transport

	minTerm uint64 // the term kept through the repair
	vol     holdLog
	header  raft.RPCHeader // this node's, on the answers it makes itself
	log     *logrus.Entry
	why     string
	since   time.Time
	clear   func() error // forgets the hold in the stable store

	held    atomic.Bool
	refused atomic.Uint64 // votes and pre-votes refused while held

	mu     sync.Mutex
	target struct{ index, term uint64 } // zero: none observed yet

	out      chan raft.RPC
	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// newVoteHold starts the hold on inner for a node with id whose repair
// (why, for the log line) left it with term minTerm. Close stops its one
// goroutine. clear is called once the hold ends, to forget it on the
// volume.
func newVoteHold(inner raft.Transport, id string, minTerm uint64, vol holdLog, why string, log *logrus.Entry, clear func() error) *voteHold {
	h := &voteHold{
		Transport: inner,
		minTerm:   minTerm,
		vol:       vol,
		header: raft.RPCHeader{
			ProtocolVersion: raft.ProtocolVersionMax,
			ID:              []byte(id),
			Addr:            inner.EncodePeer(raft.ServerID(id), inner.LocalAddr()),
		},
		log:   log,
		why:   why,
		since: time.Now(),
		clear: clear,
		out:   make(chan raft.RPC),
		done:  make(chan struct{}),
	}
	h.held.Store(true)
	log.WithFields(logrus.Fields{"repair": why, "term": minTerm}).
		Info("vote withheld: this node repaired its volume at start and takes no part in elections until the leader has caught it up")
	h.wg.Add(1)
	go h.forward()
	return h
}

// Held reports whether the hold is still on.
func (h *voteHold) Held() bool { return h.held.Load() }

// Consumer is the channel raft reads RPCs from: the real transport's, less
// what the hold answers itself.
func (h *voteHold) Consumer() <-chan raft.RPC { return h.out }

func (h *voteHold) forward() {
	defer h.wg.Done()
	in := h.Transport.Consumer()
	for {
		var rpc raft.RPC
		select {
		case <-h.done:
			return
		case rpc = <-in:
		}
		if h.intercept(rpc) {
			continue
		}
		select {
		case h.out <- rpc:
		case <-h.done:
			rpc.Respond(nil, raft.ErrTransportShutdown)
			return
		}
	}
}

// intercept answers rpc itself (true) when the hold is on and it is a vote,
// a pre-vote or a leadership transfer; it watches AppendEntries.
func (h *voteHold) intercept(rpc raft.RPC) bool {
	if !h.held.Load() {
		return false
	}
	switch req := rpc.Command.(type) {
	case *raft.RequestVoteRequest:
		h.refused.Add(1)
		rpc.Respond(&raft.RequestVoteResponse{RPCHeader: h.header, Term: req.Term, Granted: false}, nil)
		return true
	case *raft.RequestPreVoteRequest:
		h.refused.Add(1)
		rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: h.header, Term: req.Term, Granted: false}, nil)
		return true
	case *raft.TimeoutNowRequest:
		rpc.Respond(nil, errVoteHeld)
		return true
	case *raft.AppendEntriesRequest:
		h.observe(req.Term, req.LeaderCommitIndex)
	}
	return false
}

// observe takes the commit index c a leader of term sent, before raft sees
// the message, and releases the hold when the index observed earlier is
// now held with the right term.
//
// Why that is enough (DESIGN.md, "The vote hold"): an entry of term T at
// index c was written by the one leader of term T, so holding it means this
// node's log up to c is that leader's (log matching). That leader committed
// c in its own term, so its log up to c holds every entry committed before
// its term (leader completeness) and every entry it committed itself before
// it sent c. Every entry this node stored before the repair has a term of
// at most minTerm <= T, so if it was committed, it is among those: the node
// holds again everything it could have helped commit.
func (h *voteHold) observe(term, commit uint64) {
	if term < h.minTerm || commit == 0 {
		return // a stale leader, or nothing committed yet
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.held.Load() {
		return
	}
	if t := h.target; t.index != 0 {
		if got, ok := h.vol.termAt(t.index); ok && got == t.term {
			h.release(t.index, t.term)
			return
		}
		if !h.vol.covered(t.index) {
			return // not there yet: keep waiting for this index
		}
		// Reached, but the entry is of an older term (the leader had not
		// yet committed in its own term) or only inside a snapshot: take
		// the newer observation instead.
	}
	h.target.index, h.target.term = commit, term
}

func (h *voteHold) release(index, term uint64) {
	h.held.Store(false)
	if err := h.clear(); err != nil {
		// Harmless: the next start holds the vote again, until the next
		// commit index it sees.
		h.log.WithError(err).Warn("vote hold: could not record its end on the volume")
	}
	h.log.WithFields(logrus.Fields{
		"held_for": time.Since(h.since).Round(time.Millisecond).String(),
		"index":    index, "leader_term": term, "votes_refused": h.refused.Load(),
	}).Info("vote hold released: this node holds the leader's log up to a commit index it observed after the repair, and votes again")
}

// RequestVote asks a peer for its vote, unless the hold is on: then this
// node does not stand for election at all.
func (h *voteHold) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if h.held.Load() {
		return errVoteHeld
	}
	return h.Transport.RequestVote(id, target, args, resp)
}

// RequestPreVote is RequestVote's pre-vote twin (raft's pre-vote is on
// whenever the transport has it).
func (h *voteHold) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if h.held.Load() {
		return errVoteHeld
	}
	pv, ok := h.Transport.(raft.WithPreVote)
	if !ok {
		return fmt.Errorf("raftkv: the transport has no pre-vote")
	}
	return pv.RequestPreVote(id, target, args, resp)
}

// Close stops the hold's goroutine and closes the real transport. Safe to
// call more than once.
func (h *voteHold) Close() error {
	var err error
	h.stopOnce.Do(func() {
		close(h.done)
		h.wg.Wait()
		if c, ok := h.Transport.(raft.WithClose); ok {
			err = c.Close()
		}
	})
	return err
}

// volumeLog is holdLog over the node's log store and snapshot store.
type volumeLog struct {
	logs  raft.LogStore
	snaps raft.SnapshotStore
}

func (v volumeLog) termAt(i uint64) (uint64, bool) {
	var l raft.Log
	if err := v.logs.GetLog(i, &l); err == nil {
		return l.Term, true
	}
	if m, ok := v.newestSnapshot(); ok && m.Index == i {
		return m.Term, true
	}
	return 0, false
}

func (v volumeLog) covered(i uint64) bool {
	if last, err := v.logs.LastIndex(); err == nil && last >= i {
		return true
	}
	m, ok := v.newestSnapshot()
	return ok && m.Index >= i
}

func (v volumeLog) newestSnapshot() (*raft.SnapshotMeta, bool) {
	metas, err := v.snaps.List()
	if err != nil || len(metas) == 0 {
		return nil, false
	}
	return metas[0], true
}

// VoteHeld is nil unless this node repaired its volume at start and still
// withholds its vote; then it wraps ErrVoteWithheld and says what was
// repaired (/ready's vote_withheld).
func (n *Node) VoteHeld() error {
	if n.hold == nil || !n.hold.Held() {
		return nil
	}
	return fmt.Errorf("%w (%s)", ErrVoteWithheld, n.hold.why)
}
