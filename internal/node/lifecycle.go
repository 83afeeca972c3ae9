package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// Suffrage names as the API shows them.
const (
	SuffrageVoter    = "voter"
	SuffrageNonvoter = "learner" // a non-voting member
)

func suffrageName(s raft.ServerSuffrage) string {
	if s == raft.Voter {
		return SuffrageVoter
	}
	return SuffrageNonvoter
}

// Server is one voter of a cluster to bootstrap.
type Server struct {
	ID       string
	RaftAddr string
}

// HasState reports whether this node has any Raft state: a log entry or a
// snapshot, from a bootstrap, a join or an earlier run.
func (n *Node) HasState() bool { return n.raft.LastIndex() > 0 }

// Bootstrap forms a new cluster whose voters are servers (this node among
// them). Every node given the same servers may call it: hashicorp/raft
// accepts an identical bootstrap configuration on each, and the first
// election settles the rest. A node that already has state refuses with
// ErrAlreadyBootstrapped, so a restart can never fork the cluster.
func (n *Node) Bootstrap(ctx context.Context, servers []Server) error {
	servers = slices.Clone(servers)
	slices.SortFunc(servers, func(a, b Server) int { return cmp.Compare(a.ID, b.ID) })
	conf := raft.Configuration{}
	self := false
	for i, s := range servers {
		if i > 0 && servers[i-1].ID == s.ID {
			return fmt.Errorf("bootstrap: server id %s listed twice", s.ID)
		}
		self = self || s.ID == n.cfg.ID && s.RaftAddr == n.RaftAddr()
		conf.Servers = append(conf.Servers, raft.Server{
			Suffrage: raft.Voter, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.RaftAddr),
		})
	}
	if !self {
		return fmt.Errorf("bootstrap: this node (%s at %s) is not among the servers", n.cfg.ID, n.RaftAddr())
	}
	if n.HasState() {
		return ErrAlreadyBootstrapped
	}
	err := await(ctx, n.raft.BootstrapCluster(conf))
	if errors.Is(err, raft.ErrCantBootstrap) {
		return ErrAlreadyBootstrapped
	}
	if err != nil {
		return mapRaftError("bootstrap", err)
	}
	n.log.WithField("servers", servers).Info("bootstrapped a new cluster")
	return nil
}

// Promote makes the learner id a voter at its current address. Promoting
// a voter changes nothing (Change "unchanged").
func (n *Node) Promote(ctx context.Context, id string) (JoinResult, error) {
	if n.raft.State() != raft.Leader {
		return JoinResult{}, ErrNotLeader
	}
	conf, err := n.configuration(ctx)
	if err != nil {
		return JoinResult{}, err
	}
	i := slices.IndexFunc(conf.Servers, func(s raft.Server) bool { return string(s.ID) == id })
	if i < 0 {
		return JoinResult{}, fmt.Errorf("promote %s: %w", id, ErrNodeNotFound)
	}
	s := conf.Servers[i]
	if s.Suffrage == raft.Voter {
		return JoinResult{Change: "unchanged", Voter: true}, nil
	}
	// AddVoter on a known non-voter keeps its id and address and changes
	// only its suffrage.
	f := n.raft.AddVoter(s.ID, s.Address, 0, timeLeft(ctx))
	if err := await(ctx, f); err != nil {
		return JoinResult{}, mapRaftError("promote "+id, err)
	}
	n.log.WithFields(map[string]any{"node": id, "raft_addr": s.Address, "change": "promoted"}).Info("membership changed")
	return JoinResult{Change: "promoted", Index: f.Index(), Voter: true}, nil
}

// TransferLeadership hands leadership to voter id, or with id "" to the
// voter raft finds most up to date. It returns the new leader's id once
// this node has heard from it, or "" if ctx ends first (the transfer
// itself happened). Naming this node, the leader, changes nothing.
func (n *Node) TransferLeadership(ctx context.Context, id string) (string, error) {
	if n.raft.State() != raft.Leader {
		return "", ErrNotLeader
	}
	conf, err := n.configuration(ctx)
	if err != nil {
		return "", err
	}
	var target *raft.Server
	others := 0
	for _, s := range conf.Servers {
		if string(s.ID) == id {
			target = &s
		}
		if s.ID != raft.ServerID(n.cfg.ID) && s.Suffrage == raft.Voter {
			others++
		}
	}
	switch {
	case id != "" && target == nil:
		return "", fmt.Errorf("transfer leadership to %s: %w", id, ErrNodeNotFound)
	case id == n.cfg.ID:
		return id, nil
	case target != nil && target.Suffrage != raft.Voter:
		return "", fmt.Errorf("transfer leadership to %s: %w", id, ErrNotVoter)
	case others == 0:
		return "", fmt.Errorf("transfer leadership: %w", ErrNoTransferTarget)
	}
	from := n.raft.CurrentTerm()
	var f raft.Future
	if target != nil {
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
	n.log.WithFields(map[string]any{"to": id, "term": from}).Info("leadership transferred")
	// raft answers once this node has stepped down; the new leader is
	// known here when its first heartbeat arrives.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if l, ok := n.Leader(); ok && l.ID != n.cfg.ID {
			return l.ID, nil
		}
		select {
		case <-ctx.Done():
			return "", nil
		case <-n.stop:
			return "", nil
		case <-tick.C:
		}
	}
}

// HandOff is the first step of a graceful stop: a leader hands leadership
// to an up-to-date voter, so the cluster does not wait an election timeout
// for a new one. It tries raft's own pick (the voter furthest along in
// replication) and then each other voter by name, until ctx ends. It
// returns the new leader's id ("" when this node was not leading or no
// other voter exists).
func (n *Node) HandOff(ctx context.Context) (string, error) {
	if n.raft.State() != raft.Leader {
		return "", nil
	}
	conf, err := n.configuration(ctx)
	if err != nil {
		return "", err
	}
	targets := []string{""} // raft's pick first
	for _, s := range conf.Servers {
		if s.ID != raft.ServerID(n.cfg.ID) && s.Suffrage == raft.Voter {
			targets = append(targets, string(s.ID))
		}
	}
	if len(targets) == 1 {
		return "", nil
	}
	var last error
	for _, t := range targets {
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
