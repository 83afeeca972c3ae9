package node

// Leadership: who leads as this node sees it, what a new leader does before
// it serves reads (its registration marks the term ready), the leader-change
// log, and handing leadership on (TransferLeadership, HandOff).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/fsm"
)

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
				n.leadLeases(ctx, term) // until leadership is lost (ctx) or the node stops
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

// observeLeader logs one info line each time this node's view of the
// leader changes (including to "none" during an election), and counts the
// changes. raft delivers observations without blocking its own loop: if
// this goroutine falls behind, raft drops observations rather than wait,
// which can only lose a log line, never stall replication.
func (n *Node) observeLeader() {
	defer n.wg.Done()
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	for {
		select {
		case <-n.stop:
			return
		case o := <-ch:
			lo, ok := o.Data.(raft.LeaderObservation)
			if !ok {
				continue
			}
			n.metrics.leaderChanges.Inc()
			fields := logrus.Fields{"term": n.raft.CurrentTerm(), "leader_id": string(lo.LeaderID), "leader_addr": string(lo.LeaderAddr)}
			if lo.LeaderID == "" {
				n.log.WithFields(fields).Info("leader changed: no leader")
				continue
			}
			n.log.WithFields(fields).Info("leader changed")
		}
	}
}

// TransferLeadership hands leadership to voter id, or with id "" to the
// voter raft finds most up to date. It returns the new leader's id once
// this node has heard from it, or "" if ctx ends first (the transfer
// itself happened). Naming this node, the leader, changes nothing.
func (n *Node) TransferLeadership(ctx context.Context, id string) (string, error) {
	ss, err := n.leaderServers(ctx)
	if err != nil {
		return "", err
	}
	target, found := ss.byID(id)
	switch {
	case id != "" && !found:
		return "", fmt.Errorf("transfer leadership to %s: %w", id, ErrNodeNotFound)
	case id == n.cfg.ID:
		return id, nil
	case found && target.Suffrage != raft.Voter:
		return "", fmt.Errorf("transfer leadership to %s: %w", id, ErrNotVoter)
	case len(ss.votersBesides(n.cfg.ID)) == 0:
		return "", fmt.Errorf("transfer leadership: %w", ErrNoTransferTarget)
	}
	from := n.raft.CurrentTerm()
	var f raft.Future
	if found {
		f = n.raft.LeadershipTransferToServer(target.ID, target.Address)
	} else {
		f = n.raft.LeadershipTransfer()
	}
	if err := await(ctx, f); err != nil {
		switch {
		case errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrNotLeader),
			errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			return "", mapRaftError("transfer leadership", err)
		}
		// raft's own errors here (timeout, target unreachable) are plain
		// strings: leadership has not moved, a retry may succeed.
		return "", fmt.Errorf("%w: %v", ErrTransferFailed, err)
	}
	// raft answers once this node has stepped down; the new leader is
	// known here when its first heartbeat arrives, and the log line names
	// it then (with id "" raft chose it).
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if l, ok := n.Leader(); ok && l.ID != n.cfg.ID {
			n.log.WithFields(logrus.Fields{"to": l.ID, "term": from}).Info("leadership transferred")
			return l.ID, nil
		}
		select {
		case <-ctx.Done():
		case <-n.stop:
		case <-tick.C:
			continue
		}
		n.log.WithFields(logrus.Fields{"asked": id, "term": from}).Info("leadership transferred; new leader not heard from yet")
		return "", nil
	}
}

// HandOffElections bounds HandOff: it gives up after this many election
// timeouts (2 s with raft's defaults). A reachable, up-to-date voter takes
// leadership within milliseconds, and raft abandons a transfer that has not
// completed after one election timeout; voters that cannot be reached must
// not hold a stopping node for half of SHUTDOWN_TIMEOUT.
const HandOffElections = 2

// HandOff is the first step of a graceful stop: a leader hands leadership
// to an up-to-date voter, so the cluster does not wait an election timeout
// for a new one. It tries raft's own pick (the voter furthest along in
// replication) and then each other voter by name, until ctx ends, this
// node stops leading (it stepped down: it lost contact with a quorum, so
// no voter is reachable), or HandOffElections election timeouts pass. It
// returns at once when no other voter exists. It returns the new leader's
// id ("" when this node was not leading, no other voter exists, or the new
// leader was not heard from in time).
func (n *Node) HandOff(ctx context.Context) (string, error) {
	ss, err := n.leaderServers(ctx)
	if errors.Is(err, ErrNotLeader) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	targets := []string{""} // raft's pick first
	for _, s := range ss.votersBesides(n.cfg.ID) {
		targets = append(targets, string(s.ID))
	}
	if len(targets) == 1 {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, HandOffElections*n.raft.ReloadableConfig().ElectionTimeout)
	defer cancel()
	var last error
	for _, t := range targets {
		if !n.IsLeader() {
			if last == nil {
				return "", nil
			}
			return "", fmt.Errorf("stepped down during the hand-off: %w", last)
		}
		leader, err := n.TransferLeadership(ctx, t)
		switch {
		case err == nil:
			return leader, nil
		case errors.Is(err, ErrNotLeader):
			return "", nil // someone else leads already
		case ctx.Err() != nil:
			return "", errors.Join(err, last)
		}
		last = err
		n.log.WithError(err).WithField("to", t).Warn("leadership hand-off failed; trying another voter")
		if errors.Is(err, ErrUnavailable) { // a transfer still running: let it end
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return "", last
}
