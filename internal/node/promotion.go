package node

// Learner-first joins (etcd's learners, Consul's autopilot): /join adds a
// new member as a learner, which cannot cost the quorum, and marks it for
// promotion; the leader's promotion loop (cluster.promoteLoop) makes it a
// voter once it has caught up. The marks live in the leader's memory: a
// learner still marked when leadership moves stays a learner until
// /promote (the new leader did not see the join).

import (
	"slices"

	"github.com/hashicorp/raft"
)

// markForPromotion records that id was joined as a voter and waits, as a
// learner, for the promotion loop.
func (n *Node) markForPromotion(id string) {
	n.promoteMu.Lock()
	defer n.promoteMu.Unlock()
	if n.promote == nil {
		n.promote = map[string]bool{}
	}
	n.promote[id] = true
}

// DropPromotion forgets id's mark (promoted, removed, or refused).
func (n *Node) DropPromotion(id string) {
	n.promoteMu.Lock()
	defer n.promoteMu.Unlock()
	delete(n.promote, id)
}

// PendingPromotions lists the learners this node joined as voters and has
// not yet promoted, sorted.
func (n *Node) PendingPromotions() []string {
	n.promoteMu.Lock()
	defer n.promoteMu.Unlock()
	out := make([]string, 0, len(n.promote))
	for id := range n.promote {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// CommitIndex is the latest index this node knows to be committed.
func (n *Node) CommitIndex() uint64 { return n.raft.CommitIndex() }

// Removed reports whether this node was a member and no longer is: it has
// Raft state, and the latest configuration it knows is not empty and does
// not list it (/leave removed it). Such a node keeps running (raft's
// ShutdownOnRemove is off, so /join can add it back) but must not act for
// the cluster: it is no longer sent the log, so what it knows of the
// leader and the data is stale. A node waiting to be joined (no state) is
// not removed.
func (n *Node) Removed() bool {
	if n.raft.LastIndex() == 0 || n.raft.State() == raft.Leader {
		return false
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	ss := f.Configuration().Servers
	return len(ss) > 0 && !slices.ContainsFunc(ss, func(s raft.Server) bool { return string(s.ID) == n.cfg.ID })
}
