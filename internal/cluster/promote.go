package cluster

// The leader's promotion loop: a member /join added as a learner on its way
// to becoming a voter is promoted once it is known to serve (see
// node/promotion.go and DESIGN.md, "Admitting a node"). The marks it reads
// are replicated FSM state, so a new leader carries on where the old one
// stopped.

import (
	"context"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/node"
)

const (
	// promotePoll is how often the leader looks at the learners waiting
	// for promotion.
	promotePoll = 250 * time.Millisecond
	// PromoteLag is how far a learner's applied index may trail the
	// leader's commit index and still count as caught up.
	PromoteLag = 64
)

// promoteLoop runs until ctx ends; on the leader it promotes every learner
// marked in the FSM that is ready (readyToPromote). Each round is bounded by the
// probes' own deadlines.
func (c *Cluster) promoteLoop(ctx context.Context) {
	tick := time.NewTicker(promotePoll)
	defer tick.Stop()
	// notMember: when this leader first saw each mark whose node is not a
	// member (its learner not added yet, or never to be). Only marked ids
	// are kept, so it is bounded by the marks; it starts afresh with each
	// leadership.
	notMember := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !c.node.IsLeader() {
			clear(notMember)
			continue
		}
		marks := c.node.PendingPromotions()
		for id := range notMember {
			if !slices.Contains(marks, id) {
				delete(notMember, id)
			}
		}
		for _, id := range marks {
			c.promoteIfReady(ctx, id, notMember)
		}
	}
}

// StaleMarkTimeouts is how long, in request timeouts (REQUEST_TIMEOUT), the
// leader leaves the promotion mark of a node that is not a member before it
// drops it: a join commits the mark and then adds the learner within one
// request's deadline, so a node still not a member twice that long after
// this leader first saw its mark belongs to a join that failed (or whose
// leader died before the add). Dropping it is only tidying: the loop never
// promotes a node that is not a member.
const StaleMarkTimeouts = 2

// promoteIfReady promotes the learner id if it is ready, drops its mark if
// it is a voter already or has been no member for StaleMarkTimeouts request
// timeouts (notMember says since when), and otherwise leaves it for the
// next round.
func (c *Cluster) promoteIfReady(ctx context.Context, id string, notMember map[string]time.Time) {
	rctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	members, err := c.node.Members(rctx)
	if err != nil {
		return
	}
	var m *node.Member
	for i := range members {
		if members[i].ID == id {
			m = &members[i]
		}
	}
	if m == nil {
		since, seen := notMember[id]
		if !seen {
			notMember[id] = time.Now()
			return
		}
		if time.Since(since) < StaleMarkTimeouts*c.opts.RequestTimeout {
			return
		}
		if err := c.node.DropPromotion(rctx, id); err != nil {
			c.log.WithError(err).WithField("node", id).Warn("dropping a stale promotion mark failed; will retry")
			return
		}
		delete(notMember, id)
		c.log.WithFields(logrus.Fields{"node": id, "waited": time.Since(since).Round(time.Millisecond).String()}).
			Info("dropped the promotion mark of a node that is no member (its join did not complete)")
		return
	}
	delete(notMember, id)
	if m.Voter {
		if err := c.node.DropPromotion(rctx, id); err != nil {
			c.log.WithError(err).WithField("node", id).Warn("dropping a stale promotion mark failed; will retry")
		}
		return
	}
	why, ok := c.readyToPromote(rctx, *m)
	if !ok {
		c.log.WithFields(logrus.Fields{"node": id, "why": why}).Debug("learner not promoted yet")
		return
	}
	res, err := c.node.Promote(rctx, id)
	if err != nil {
		c.log.WithError(err).WithField("node", id).Warn("promoting a caught-up learner failed; will retry")
		return
	}
	c.log.WithFields(logrus.Fields{"node": id, "index": res.Index}).Info("learner caught up: promoted to voter")
}

// readyToPromote: the learner has registered its API address, answers on
// it as the member it is (id and Raft address), reports this cluster's id,
// and has applied the log to within PromoteLag of the leader's commit
// index. A learner of another cluster is never promoted (and its mark is
// dropped: /leave it).
func (c *Cluster) readyToPromote(ctx context.Context, m node.Member) (string, bool) {
	if m.HTTPAddr == "" {
		return "its API address is not registered yet", false
	}
	info, _, err := c.askInfo(ctx, m.HTTPAddr)
	switch ours := c.node.ClusterID(); {
	case err != nil:
		return "its API does not answer: " + err.Error(), false
	case info.ID != m.ID || info.RaftAddr != m.RaftAddr:
		return "the node at its API address is " + info.ID + " at " + info.RaftAddr, false
	case ours != "" && info.ClusterID != ours:
		if info.ClusterID != "" {
			if err := c.node.DropPromotion(ctx, m.ID); err != nil {
				c.log.WithError(err).WithField("node", m.ID).Warn("dropping the promotion mark of a node of another cluster failed; will retry")
			}
			c.log.WithFields(logrus.Fields{"node": m.ID, "its_cluster": info.ClusterID, "cluster": ours}).
				Error("learner belongs to another cluster: never promoting it; remove it with /leave")
		}
		return "it has not learned the cluster id yet", false
	case info.AppliedIndex+PromoteLag < c.node.CommitIndex():
		return "catching up", false
	}
	return "", true
}
