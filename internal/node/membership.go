package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
)

// Member is one server of the Raft configuration, with its API address.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
	Voter    bool   `json:"voter"`
	Suffrage string `json:"suffrage"` // "voter" or "learner"
	Leader   bool   `json:"leader"`
}

// Members lists the latest Raft configuration known to this node, ordered
// by id.
func (n *Node) Members(ctx context.Context) ([]Member, error) {
	conf, err := n.configuration(ctx)
	if err != nil {
		return nil, err
	}
	_, leaderID := n.raft.LeaderWithID()
	addrs := n.fsm.Nodes()
	out := make([]Member, 0, len(conf.Servers))
	for _, s := range conf.Servers {
		out = append(out, Member{
			ID:       string(s.ID),
			RaftAddr: string(s.Address),
			HTTPAddr: addrs[string(s.ID)],
			Voter:    s.Suffrage == raft.Voter,
			Suffrage: suffrageName(s.Suffrage),
			Leader:   s.ID == leaderID,
		})
	}
	slices.SortFunc(out, func(a, b Member) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out, nil
}

func (n *Node) configuration(ctx context.Context) (raft.Configuration, error) {
	f := n.raft.GetConfiguration()
	if err := await(ctx, f); err != nil {
		return raft.Configuration{}, mapRaftError("read configuration", err)
	}
	return f.Configuration(), nil
}

// JoinResult says what Join changed.
type JoinResult struct {
	Change string // "added", "updated" (same id, new address) or "unchanged"
	Index  uint64 // index of the last entry Join committed; 0 if none
	Voter  bool   // the member's suffrage after the join
}

// Join makes id a member at raftAddr: a voter, or a non-voting learner
// when voter is false. Joining an existing member with the same address
// changes nothing; the same id with a new address moves it. Join never
// changes an existing member's suffrage: a learner stays a learner (see
// Promote), and asking for a voter to become a learner is
// ErrSuffrageConflict. A Raft address held by a different id is refused
// rather than evicting that member. httpAddr, when given, is recorded for
// forwarding.
func (n *Node) Join(ctx context.Context, id, raftAddr, httpAddr string, voter bool) (JoinResult, error) {
	if n.raft.State() != raft.Leader {
		return JoinResult{}, ErrNotLeader
	}
	conf, err := n.configuration(ctx)
	if err != nil {
		return JoinResult{}, err
	}
	res := JoinResult{Change: "added", Voter: voter}
	for _, s := range conf.Servers {
		switch {
		case string(s.ID) == id:
			if s.Suffrage == raft.Voter && !voter {
				return JoinResult{}, fmt.Errorf("join %s as a learner: %w", id, ErrSuffrageConflict)
			}
			// Re-announcing a learner must not promote it.
			res.Voter = s.Suffrage == raft.Voter
			res.Change = "updated"
			if string(s.Address) == raftAddr {
				res.Change = "unchanged"
			}
		case string(s.Address) == raftAddr:
			return JoinResult{}, fmt.Errorf("join %s at %s: %w (member %s)", id, raftAddr, ErrAddressInUse, s.ID)
		}
	}
	if res.Change != "unchanged" {
		add, what := n.raft.AddVoter, "add voter "
		if !res.Voter {
			add, what = n.raft.AddNonvoter, "add learner "
		}
		f := add(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, timeLeft(ctx))
		if err := await(ctx, f); err != nil {
			return JoinResult{}, mapRaftError(what+id, err)
		}
		res.Index = f.Index()
		n.log.WithFields(map[string]any{"node": id, "raft_addr": raftAddr, "change": res.Change, "voter": res.Voter}).Info("membership changed")
	}
	if httpAddr != "" {
		if known, _ := n.fsm.NodeHTTPAddr(id); known != httpAddr {
			r, err := n.Apply(ctx, &fsm.Command{Op: fsm.OpRegisterNode, NodeID: id, HTTPAddr: httpAddr})
			if err != nil {
				return res, err
			}
			res.Index = r.Index
		}
	}
	return res, nil
}

// Leave removes id from the cluster. To remove the leader itself, the
// leader first hands leadership to another voter and returns ErrNotLeader,
// so the caller can send the request on to the new leader.
func (n *Node) Leave(ctx context.Context, id string) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	conf, err := n.configuration(ctx)
	if err != nil {
		return 0, err
	}
	found, voters := false, 0
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		if string(s.ID) == id {
			found = true
		}
	}
	if !found {
		return 0, fmt.Errorf("leave %s: %w", id, ErrNodeNotFound)
	}
	if id == n.cfg.ID {
		if voters <= 1 {
			return 0, fmt.Errorf("leave %s: %w", id, ErrLastVoter)
		}
		n.log.WithField("node", id).Info("transferring leadership before removing this node")
		if err := await(ctx, n.raft.LeadershipTransfer()); err != nil {
			return 0, mapRaftError("transfer leadership", err)
		}
		return 0, ErrNotLeader
	}
	f := n.raft.RemoveServer(raft.ServerID(id), 0, timeLeft(ctx))
	if err := await(ctx, f); err != nil {
		return 0, mapRaftError("remove server "+id, err)
	}
	n.log.WithFields(map[string]any{"node": id, "change": "removed", "index": f.Index()}).Info("membership changed")
	index := f.Index()
	if _, known := n.fsm.NodeHTTPAddr(id); known {
		r, err := n.Apply(ctx, &fsm.Command{Op: fsm.OpForgetNode, NodeID: id})
		if err != nil {
			return index, err
		}
		index = r.Index
	}
	return index, nil
}

// Status is a point-in-time view of this node.
type Status struct {
	ID                string   `json:"id"`
	State             string   `json:"state"`
	Term              uint64   `json:"term"`
	LeaderID          string   `json:"leader_id"`
	LeaderRaftAddr    string   `json:"leader_raft_addr"`
	LeaderHTTPAddr    string   `json:"leader_http_addr"`
	CommitIndex       uint64   `json:"commit_index"`
	AppliedIndex      uint64   `json:"applied_index"`
	LastLogIndex      uint64   `json:"last_log_index"`
	LastSnapshotIndex uint64   `json:"last_snapshot_index"`
	LastContact       string   `json:"last_contact"`
	Keys              int      `json:"keys"`
	Configuration     []Member `json:"configuration"`
}

// Status reports this node's Raft and FSM state.
func (n *Node) Status(ctx context.Context) (Status, error) {
	members, err := n.Members(ctx)
	if err != nil {
		return Status{}, err
	}
	stats := n.raft.Stats()
	l, _ := n.Leader()
	return Status{
		ID:                n.cfg.ID,
		State:             n.raft.State().String(),
		Term:              n.raft.CurrentTerm(),
		LeaderID:          l.ID,
		LeaderRaftAddr:    l.RaftAddr,
		LeaderHTTPAddr:    l.HTTPAddr,
		CommitIndex:       n.raft.CommitIndex(),
		AppliedIndex:      n.fsm.AppliedIndex(),
		LastLogIndex:      parseUint(stats["last_log_index"]),
		LastSnapshotIndex: parseUint(stats["last_snapshot_index"]),
		LastContact:       stats["last_contact"],
		Keys:              n.fsm.Stats().Keys,
		Configuration:     members,
	}, nil
}

func parseUint(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}

// Snapshot asks raft for a snapshot now. created is false when nothing was
// applied since the last one.
func (n *Node) Snapshot(ctx context.Context) (index uint64, created bool, err error) {
	// raft refuses only when nothing was applied since this process
	// started; otherwise it writes a duplicate of the latest snapshot.
	if last := parseUint(n.raft.Stats()["last_snapshot_index"]); last > 0 && last >= n.fsm.AppliedIndex() {
		return last, false, nil
	}
	f := n.raft.Snapshot()
	err = await(ctx, f)
	switch {
	case errors.Is(err, raft.ErrNothingNewToSnapshot):
		return parseUint(n.raft.Stats()["last_snapshot_index"]), false, nil
	case err != nil:
		return 0, false, mapRaftError("snapshot", err)
	}
	meta, rc, err := f.Open()
	if err != nil {
		return 0, true, fmt.Errorf("open new snapshot: %w", err)
	}
	_ = rc.Close()
	return meta.Index, true, nil
}
