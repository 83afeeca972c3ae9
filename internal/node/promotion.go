package node

// Learner-first joins (etcd's learners, Consul's autopilot): /join adds a
// new member as a learner, which cannot cost the quorum, and marks it for
// promotion; the leader's promotion loop (cluster.promoteLoop) makes it a
// voter once it has caught up. The marks are replicated state: the leader
// proposes them through the log (fsm.OpMarkPromotion) and drops them the
// same way (fsm.OpDropPromotion), so whichever node leads next carries
// the promotion out. A learner joined with voter=false is never marked.

import (
	"context"
	"fmt"
	"slices"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
)

// markForPromotion commits the mark that id, joined as a voter, waits as
// a learner for the promotion loop.
func (n *Node) markForPromotion(ctx context.Context, id string) (uint64, error) {
	r, err := n.Apply(ctx, &fsm.Command{Op: fsm.OpMarkPromotion, NodeID: id})
	if err != nil {
		return 0, fmt.Errorf("mark %s for promotion: %w", id, err)
	}
	return r.Index, nil
}

// DropPromotion commits the removal of id's mark (promoted, removed, or
// refused). It proposes nothing when id is not marked.
func (n *Node) DropPromotion(ctx context.Context, id string) error {
	if !n.fsm.PromotionPending(id) {
		return nil
	}
	if _, err := n.Apply(ctx, &fsm.Command{Op: fsm.OpDropPromotion, NodeID: id}); err != nil {
		return fmt.Errorf("drop the promotion mark of %s: %w", id, err)
	}
	return nil
}

// dropPromotionOrWarn is DropPromotion after the change it follows has
// committed: a failure only leaves the mark for the promotion loop, which
// drops the mark of a voter or of a node that is no member.
func (n *Node) dropPromotionOrWarn(ctx context.Context, id string) {
	if err := n.DropPromotion(ctx, id); err != nil {
		n.log.WithError(err).WithField("node", id).Warn("promotion mark left for the promotion loop to drop")
	}
}

// PendingPromotions lists the learners marked for promotion and not yet
// promoted, sorted, as this node has applied them.
func (n *Node) PendingPromotions() []string { return n.fsm.PendingPromotions() }

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
