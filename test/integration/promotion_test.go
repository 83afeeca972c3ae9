package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/testcluster"
	"github.com/raftkv/raftkv/internal/testwait"
)

// promoteDeadline bounds how long a new leader may take to promote a
// marked learner once it serves: an election, a few promotion rounds.
const promoteDeadline = 20 * time.Second

// TestPromotionSurvivesLeaderChange: a node joined as a voter waits as a
// learner marked for promotion; the mark is replicated, so when the leader
// that joined it dies before it could promote it, the next leader does.
// A learner joined with voter=false is never marked nor promoted.
func TestPromotionSurvivesLeaderChange(t *testing.T) {
	c := testcluster.Start(t, 3)
	old := c.Leader(t)
	stay := c.AddMember(t, false) // voter=false: must stay a learner

	// The would-be voter is down while it is joined, so no leader can
	// promote it (it does not serve) before the one that joined it dies.
	j := c.AddUnjoined(t)
	id := c.ID(j)
	c.Kill(t, j)
	ctx, cancel := context.WithTimeout(context.Background(), c.RequestTimeout())
	defer cancel()
	res, err := c.Node(old).Join(ctx, id, c.RaftAddr(j), c.HTTPAddr(j), true, nil)
	if err != nil || res.Voter || !res.AutoPromote {
		t.Fatalf("join %s as a voter: %+v, %v; want a learner marked for promotion", id, res, err)
	}
	if got := suffrageOf(t, c, old, id); got != "learner" {
		t.Fatalf("%s joined as %q, want learner", id, got)
	}

	c.Kill(t, old)
	now := c.Leader(t)
	if now == old || now == stay {
		t.Fatalf("new leader %s", c.ID(now))
	}
	c.Restart(t, j)
	testwait.For(t, promoteDeadline, fmt.Sprintf("the new leader %s to promote %s", c.ID(now), id), func() error {
		if got := suffrageOf(t, c, now, id); got != "voter" {
			return fmt.Errorf("%s is %q", id, got)
		}
		return nil
	})

	// The mark is dropped through the log once it is promoted: on every
	// running member; the voter=false learner was never marked.
	testwait.For(t, promoteDeadline, "every member to drop the promotion mark", func() error {
		for _, i := range c.Running() {
			if marks := c.Node(i).PendingPromotions(); len(marks) > 0 {
				return fmt.Errorf("%s still holds marks %q", c.ID(i), marks)
			}
		}
		return nil
	})
	if got := suffrageOf(t, c, now, c.ID(stay)); got != "learner" {
		t.Fatalf("the voter=false learner %s is %q, want learner", c.ID(stay), got)
	}
	if ms := members(t, c, now); !slices.ContainsFunc(ms, func(m node.Member) bool { return m.ID == id && m.Voter }) {
		t.Fatalf("members on the new leader %+v: %s is no voter", ms, id)
	}
}

// TestStaleMarkDropped: a promotion mark for a node that never became a
// member (its join failed after the mark, or its leader died before adding
// it) promotes nothing and changes no configuration; the leader drops it
// through the log after cluster.StaleMarkTimeouts request timeouts, not
// before, on every member.
func TestStaleMarkDropped(t *testing.T) {
	rt := time.Second
	c := testcluster.Start(t, 3, testcluster.WithRequestTimeout(rt))
	l := c.Leader(t)
	before := members(t, c, l)
	ctx, cancel := context.WithTimeout(context.Background(), c.RequestTimeout())
	defer cancel()
	if _, err := c.Node(l).Apply(ctx, &fsm.Command{Op: fsm.OpMarkPromotion, NodeID: "ghost"}); err != nil {
		t.Fatalf("mark ghost: %v", err)
	}
	marked := time.Now()
	grace := cluster.StaleMarkTimeouts * rt
	took := testwait.For(t, grace+10*time.Second, "every member to drop ghost's mark", func() error {
		for _, i := range c.Running() {
			if marks := c.Node(i).PendingPromotions(); len(marks) > 0 {
				return fmt.Errorf("%s still holds marks %q", c.ID(i), marks)
			}
		}
		return nil
	})
	if elapsed := time.Since(marked); elapsed < grace {
		t.Errorf("the mark was dropped after %v, before the %v grace a join in flight gets", elapsed, grace)
	}
	t.Logf("stale mark dropped after %v (grace %v)", took, grace)
	if after := members(t, c, l); !slices.EqualFunc(before, after, func(a, b node.Member) bool { return a.ID == b.ID && a.Voter == b.Voter }) {
		t.Errorf("configuration changed: %+v, was %+v", after, before)
	}
}
