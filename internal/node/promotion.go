package node

// Learner-first joins (etcd's learners, Consul's autopilot): /join adds a
// new member as a learner, which cannot cost the quorum, and marks it for
// promotion; the leader's promotion loop (cluster.promoteLoop) makes it a
// voter once it has caught up. The marks live in the leader's memory: a
// learner still marked when leadership moves stays a learner until
// /promote (the new leader did not see the join).

import "slices"

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
