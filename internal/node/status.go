package node

// Status: a point-in-time view of this node for /status and the test
// harnesses.

import (
	"context"
	"strconv"
	"time"
)

// Status is a point-in-time view of this node.
type Status struct {
	ID        string `json:"id"`
	ClusterID string `json:"cluster_id"`
	State     string `json:"state"`
	// Membership is "voter", "learner", or "not_member" (waiting to be
	// joined, or removed: then the leader fields are empty, since this
	// node no longer hears from it).
	Membership        string `json:"membership"`
	Term              uint64 `json:"term"`
	LeaderID          string `json:"leader_id"`
	LeaderRaftAddr    string `json:"leader_raft_addr"`
	LeaderHTTPAddr    string `json:"leader_http_addr"`
	CommitIndex       uint64 `json:"commit_index"`
	AppliedIndex      uint64 `json:"applied_index"`
	LastLogIndex      uint64 `json:"last_log_index"`
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	// LastContactMs is milliseconds since this node last heard from the
	// leader (0 on the leader), nil if it never has: the one format of
	// "last contact" in every JSON answer.
	LastContactMs *float64 `json:"last_contact_ms"`
	Keys          int      `json:"keys"`
	Configuration []Member `json:"configuration"`
	// VoteWithheld: this node repaired its volume at start (a corrupt
	// snapshot or log entry) and takes no part in elections until the
	// leader has caught it up (DESIGN.md, "The vote hold").
	VoteWithheld bool `json:"vote_withheld"`
}

// Status reports this node's Raft and FSM state.
func (n *Node) Status(ctx context.Context) (Status, error) {
	members, err := n.Members(ctx)
	if err != nil {
		return Status{}, err
	}
	stats := n.raft.Stats()
	l, _ := n.Leader()
	membership := "not_member"
	for _, m := range members {
		if m.ID == n.cfg.ID {
			membership = m.Suffrage
		}
	}
	if n.Removed() {
		l = Leader{}
	}
	return Status{
		Membership:        membership,
		ID:                n.cfg.ID,
		ClusterID:         n.ClusterID(),
		State:             n.raft.State().String(),
		Term:              n.raft.CurrentTerm(),
		LeaderID:          l.ID,
		LeaderRaftAddr:    l.RaftAddr,
		LeaderHTTPAddr:    l.HTTPAddr,
		CommitIndex:       n.raft.CommitIndex(),
		AppliedIndex:      n.fsm.AppliedIndex(),
		LastLogIndex:      parseUint(stats["last_log_index"]),
		LastSnapshotIndex: parseUint(stats["last_snapshot_index"]),
		LastContactMs:     lastContactMs(n.SinceLeaderContact()),
		Keys:              n.fsm.Stats().Keys,
		Configuration:     members,
		VoteWithheld:      n.VoteHeld() != nil,
	}, nil
}

// lastContactMs is d in milliseconds (to the microsecond), nil unless ok.
func lastContactMs(d time.Duration, ok bool) *float64 {
	if !ok {
		return nil
	}
	ms := float64(d.Microseconds()) / 1000
	return &ms
}

func parseUint(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}
