package integration

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/testcluster"
	"github.com/raftkv/raftkv/internal/testwait"
)

// suffrageOf returns id's suffrage in member i's configuration, or "" if
// it is not a member.
func suffrageOf(t *testing.T, c *testcluster.Cluster, i int, id string) string {
	t.Helper()
	for _, m := range members(t, c, i) {
		if m.ID == id {
			if (m.Suffrage == node.SuffrageVoter) != m.Voter {
				t.Fatalf("member %+v: suffrage and voter disagree", m)
			}
			return m.Suffrage
		}
	}
	return ""
}

// suffrages is each member's suffrage as /nodes on member i reports it.
func suffrages(t *testing.T, c *testcluster.Cluster, i int) map[string]string {
	t.Helper()
	rows, _ := getNodes(t, c, i, "/nodes?stale")
	out := map[string]string{}
	for id, row := range rows {
		out[id] = row.Suffrage
	}
	return out
}

// TestLearners: /join?voter=false adds learners that receive the log and
// forward writes but do not count for quorum and never lead.
func TestLearners(t *testing.T) {
	c := testcluster.Start(t, 1)
	a := c.AddMember(t, false)
	b := c.AddMember(t, false)

	want := map[string]string{"n1": node.SuffrageVoter, "n2": node.SuffrageLearner, "n3": node.SuffrageLearner}
	for _, i := range []int{0, a, b} {
		testwait.For(t, testcluster.StartTimeout, "GET /nodes on "+c.ID(i)+" to show "+fmt.Sprint(want), func() error {
			if got := suffrages(t, c, i); fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("shows %v", got)
			}
			return nil
		})
	}

	// Learners receive the log, and a write through one is forwarded.
	c.MustSet(t, 0, "k", "v")
	waitStale(t, c, a, "k", "v")
	waitStale(t, c, b, "k", "v")
	c.MustSet(t, a, "k2", "v2")
	mustRead(t, c, b, "k2", "v2")

	// With one voter and two learners the voter alone is a quorum: if the
	// learners counted, this write would need one of them.
	c.Kill(t, a)
	c.Kill(t, b)
	c.MustSet(t, 0, "alone", "yes")
	mustRead(t, c, 0, "alone", "yes")

	// Without the voter, learners never become leader.
	c.Restart(t, a)
	c.Restart(t, b)
	waitStale(t, c, a, "alone", "yes")
	waitStale(t, c, b, "alone", "yes")
	c.Kill(t, 0)
	window := 10 * testcluster.ElectionTimeout
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		for _, i := range []int{a, b} {
			if c.Node(i).IsLeader() {
				t.Fatalf("learner %s became leader", c.ID(i))
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := c.Set(t, a, "k", "x"); r.Status == http.StatusOK {
		t.Fatalf("write through a learner with no voter up: %s, want an error", r.Summary())
	}
}

// TestPromote: /promote makes a learner a voter (forwarded from any node);
// the promotion shows in the quorum; unknown ids are 404, voters a no-op.
func TestPromote(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.WithRequestTimeout(time.Second))
	l := c.AddMember(t, false)
	if got := suffrageOf(t, c, 0, "n2"); got != node.SuffrageLearner {
		t.Fatalf("n2 is %q after join with voter=false", got)
	}

	tests := []struct {
		name, target   string
		via            int
		status         int
		code, change   string
		wantSuffrageN2 string
	}{
		{"promote a learner, sent to the learner", "/promote?nodeId=n2", l, 200, "", "promoted", node.SuffrageVoter},
		{"promote a voter is a no-op", "/promote?nodeId=n2", 0, 200, "", "unchanged", node.SuffrageVoter},
		{"promote the leader is a no-op", "/promote?nodeId=n1", l, 200, "", "unchanged", node.SuffrageVoter},
		{"unknown node", "/promote?nodeId=n9", l, 404, "node_not_found", "", node.SuffrageVoter},
		{"missing nodeId", "/promote", 0, 400, "bad_request", "", node.SuffrageVoter},
		{"bad nodeId", "/promote?nodeId=a%2Fb", 0, 400, "bad_request", "", node.SuffrageVoter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.Post(t, tt.via, tt.target)
			if r.Status != tt.status || r.Code() != tt.code || r.String("change") != tt.change {
				t.Fatalf("POST %s: %s, want %d code %q change %q", tt.target, r.Summary(), tt.status, tt.code, tt.change)
			}
			if r.Status == 200 && !r.Bool("voter") {
				t.Fatalf("POST %s: %s, want voter true", tt.target, r.Summary())
			}
			if got := suffrageOf(t, c, 0, "n2"); got != tt.wantSuffrageN2 {
				t.Fatalf("after POST %s n2 is %q, want %q", tt.target, got, tt.wantSuffrageN2)
			}
		})
	}
	if r := c.Get(t, 0, "/promote?nodeId=n2"); r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "POST" {
		t.Fatalf("GET /promote: %s (Allow %q), want 405 with Allow: POST", r.Summary(), r.Header.Get("Allow"))
	}

	// Two voters now: the quorum is both, so with n2 down n1 cannot write.
	c.Kill(t, l)
	if r := c.Set(t, 0, "needs", "n2"); r.Status == http.StatusOK {
		t.Fatalf("write with one of two voters down: %s, want an error", r.Summary())
	}
}

// TestJoinSuffrage: a repeated join never changes suffrage. A learner's own
// retry-join (which registers its HTTP address) and an explicit join
// leave it a learner; asking to make a voter a learner is a 409.
func TestJoinSuffrage(t *testing.T) {
	c := testcluster.Start(t, 2)
	lr := c.AddMember(t, false)
	// The learner's RetryJoin loop registers its HTTP address with a plain
	// /join (voter defaults to true): wait for that, then check suffrage.
	testwait.For(t, testcluster.StartTimeout, "the learner to register its HTTP address", func() error {
		ms := members(t, c, 0)
		for _, m := range ms {
			if m.ID == "n3" && m.HTTPAddr == c.HTTPAddr(lr) {
				return nil
			}
		}
		return fmt.Errorf("members %+v", ms)
	})
	if got := suffrageOf(t, c, 0, "n3"); got != node.SuffrageLearner {
		t.Fatalf("after its own retry-join the learner is %q", got)
	}

	join := func(id string, i int, extra string) string {
		return fmt.Sprintf("/join?nodeId=%s&raftAddr=%s%s", id, c.RaftAddr(i), extra)
	}
	tests := []struct {
		name, target   string
		status         int
		code, change   string
		voter          bool
		wantN2, wantN3 string
	}{
		{"learner re-joins with the default", join("n3", lr, ""), 200, "", "unchanged", false, "voter", "learner"},
		{"learner re-joins with voter=true", join("n3", lr, "&voter=true"), 200, "", "unchanged", false, "voter", "learner"},
		{"learner re-joins with voter=false", join("n3", lr, "&voter=false"), 200, "", "unchanged", false, "voter", "learner"},
		{"voter re-joins", join("n2", 1, ""), 200, "", "unchanged", true, "voter", "learner"},
		{"voter asks to become a learner", join("n2", 1, "&voter=false"), 409, "suffrage_conflict", "", false, "voter", "learner"},
		{"voter moves and asks to become a learner", "/join?nodeId=n2&raftAddr=127.0.0.1:1&voter=0", 409, "suffrage_conflict", "", false, "voter", "learner"},
		{"bad voter value", join("n4", lr, "&voter=maybe"), 400, "bad_request", "", false, "voter", "learner"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.Post(t, 1, tt.target) // n2 may be a follower: forwarded
			if r.Status != tt.status || r.Code() != tt.code || r.String("change") != tt.change ||
				r.Status == 200 && r.Bool("voter") != tt.voter {
				t.Fatalf("POST %s: %s, want %d code %q change %q voter %v", tt.target, r.Summary(), tt.status, tt.code, tt.change, tt.voter)
			}
			if got := suffrageOf(t, c, 0, "n2"); got != tt.wantN2 {
				t.Fatalf("n2 is %q, want %q", got, tt.wantN2)
			}
			if got := suffrageOf(t, c, 0, "n3"); got != tt.wantN3 {
				t.Fatalf("n3 is %q, want %q", got, tt.wantN3)
			}
			if n := len(members(t, c, 0)); n != 3 {
				t.Fatalf("%d members after POST %s, want 3", n, tt.target)
			}
		})
	}
}

// TestTransferLeadership: to a named voter, to any voter, and the refusals.
func TestTransferLeadership(t *testing.T) {
	c := testcluster.Start(t, 3)
	learner := c.AddMember(t, false)
	l := c.Leader(t)

	// To a named follower, sent to the other follower (forwarded).
	voters := others(c, l, learner)
	target, via := voters[0], voters[1]
	r := c.Post(t, via, "/transfer-leadership?nodeId="+c.ID(target))
	if r.Status != 200 || r.String("previous_leader") != c.ID(l) || r.String("leader") != c.ID(target) || r.String("change") != "transferred" {
		t.Fatalf("transfer to %s via %s: %s, want 200 from %s to %s", c.ID(target), c.ID(via), r.Summary(), c.ID(l), c.ID(target))
	}
	if got := c.Leader(t); got != target {
		t.Fatalf("leader is %s after the transfer, want %s", c.ID(got), c.ID(target))
	}
	c.MustSet(t, via, "after-named", "1")

	// To any voter: the new leader is a voter other than the old one.
	old := c.Leader(t)
	r = c.Post(t, learner, "/transfer-leadership")
	if r.Status != 200 || r.String("previous_leader") != c.ID(old) || r.String("leader") == c.ID(old) || r.String("leader") == c.ID(learner) {
		t.Fatalf("transfer to any via the learner: %s", r.Summary())
	}
	now := c.Leader(t)
	if now == old || now == learner {
		t.Fatalf("leader after transfer to any: %s (was %s)", c.ID(now), c.ID(old))
	}
	if r.String("leader") != "" && r.String("leader") != c.ID(now) {
		t.Fatalf("transfer answered leader %s, but %s leads", r.String("leader"), c.ID(now))
	}
	c.MustSet(t, learner, "after-any", "1")

	tests := []struct {
		name, target string
		status       int
		code, change string
	}{
		{"to the learner", "/transfer-leadership?nodeId=" + c.ID(learner), 409, "not_voter", ""},
		{"to an unknown node", "/transfer-leadership?nodeId=n9", 404, "node_not_found", ""},
		{"to the current leader", "/transfer-leadership?nodeId=" + c.ID(now), 200, "", "unchanged"},
		{"bad nodeId", "/transfer-leadership?nodeId=a%20b", 400, "bad_request", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.Post(t, learner, tt.target)
			if r.Status != tt.status || r.Code() != tt.code || r.String("change") != tt.change {
				t.Fatalf("POST %s: %s, want %d code %q change %q", tt.target, r.Summary(), tt.status, tt.code, tt.change)
			}
			if got := c.Leader(t); got != now {
				t.Fatalf("leader moved to %s", c.ID(got))
			}
		})
	}
	if r := c.Get(t, 0, "/transfer-leadership"); r.Status != http.StatusMethodNotAllowed {
		t.Fatalf("GET /transfer-leadership: %s, want 405", r.Summary())
	}

	t.Run("single node has no one to hand to", func(t *testing.T) {
		one := testcluster.Start(t, 1)
		r := one.Post(t, 0, "/transfer-leadership")
		if r.Status != http.StatusConflict || r.Code() != "no_transfer_target" {
			t.Fatalf("transfer on a single node: %s, want 409 no_transfer_target", r.Summary())
		}
	})
}

// TestGracefulStop: a stopping leader hands leadership over before it goes,
// so a new leader is in place at once rather than after an election
// timeout; with leave, a stopping member also leaves the configuration.
func TestGracefulStop(t *testing.T) {
	c := testcluster.Start(t, 3)
	l := c.Leader(t)
	c.MustSet(t, l, "before", "1")

	start := time.Now()
	c.Stop(t, l, false, 5*time.Second)
	rest := others(c, l)
	// The hand-off returns once the old leader has heard from the new one,
	// so a leader is in place the moment Stop returns. Without it the
	// followers would first have to miss heartbeats for an election
	// timeout.
	handedOff := false
	for _, i := range rest {
		handedOff = handedOff || c.Node(i).IsLeader()
	}
	if !handedOff {
		t.Fatalf("no leader among %v right after the leader's graceful stop: no hand-off", rest)
	}
	var newLeader int
	testwait.For(t, testcluster.StartTimeout, "a new leader after the graceful stop", func() error {
		for _, i := range rest {
			if n := c.Node(i); n != nil && n.IsLeader() {
				newLeader = i
				return nil
			}
		}
		return errors.New("none of the rest leads")
	})
	gap := time.Since(start)
	t.Logf("graceful stop of leader %s: %s leads %v after the stop began (election timeout %v)", c.ID(l), c.ID(newLeader), gap, testcluster.ElectionTimeout)
	if found, _ := hasMember(members(t, c, newLeader), c.ID(l)); !found {
		t.Fatalf("a plain graceful stop removed %s from the configuration", c.ID(l))
	}
	c.MustSet(t, rest[0], "after", "1")
	c.Restart(t, l)
	c.WaitMembers(t, 0, 1, 2)

	// LEAVE_ON_TERMINATE on a follower, then on the leader.
	f := c.Followers(t)[0]
	c.Stop(t, f, true, 5*time.Second)
	l = c.Leader(t)
	if found, _ := hasMember(members(t, c, l), c.ID(f)); found {
		t.Fatalf("%s is still a member after stopping with leave", c.ID(f))
	}
	c.Stop(t, l, true, 5*time.Second)
	last := others(c)
	if len(last) != 1 {
		t.Fatalf("running: %v, want one member", last)
	}
	testwait.For(t, testcluster.StartTimeout, "the last member to lead alone", func() error {
		if !c.Node(last[0]).IsLeader() {
			return errors.New("it does not lead")
		}
		return nil
	})
	ms := members(t, c, last[0])
	if len(ms) != 1 || ms[0].ID != c.ID(last[0]) {
		t.Fatalf("configuration after two leaves: %+v, want only %s", ms, c.ID(last[0]))
	}
	c.MustSet(t, last[0], "alone", "1")
	mustRead(t, c, last[0], "before", "1")

	// The last voter cannot leave; stopping it must still end promptly.
	begin := time.Now()
	c.Stop(t, last[0], true, 5*time.Second)
	if took := time.Since(begin); took > 3*time.Second {
		t.Fatalf("stopping the last voter with leave took %v", took)
	}
}
