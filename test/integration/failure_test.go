package integration

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/testcluster"
	"github.com/raftkv/raftkv/internal/testwait"
)

// TestLeaderFailover: killing the leader elects another, no acknowledged
// write is lost, and the old leader restarted from its directory catches up
// and votes again without being joined.
func TestLeaderFailover(t *testing.T) {
	c := testcluster.Start(t, 3)
	old := c.Leader(t)
	acked := map[string]string{}
	for i := range 10 {
		k, v := fmt.Sprintf("before-%d", i), strconv.Itoa(i)
		c.MustSet(t, (old+i)%3, k, v)
		acked[k] = v
	}

	start := time.Now()
	c.Kill(t, old)
	nl := c.Leader(t)
	t.Logf("new leader %s elected %s after killing %s", c.ID(nl), time.Since(start).Round(time.Millisecond), c.ID(old))
	if nl == old {
		t.Fatalf("killed member %d still reported as leader", old)
	}

	for _, s := range others(c) {
		k := "after-" + c.ID(s)
		c.MustSet(t, s, k, "ok")
		acked[k] = "ok"
	}
	for _, s := range others(c) {
		for k, v := range acked {
			mustRead(t, c, s, k, v)
		}
	}

	c.MustSet(t, nl, "newest", "while-down")
	c.Restart(t, old)
	waitStale(t, c, old, "newest", "while-down")
	c.WaitMembers(t, 0, 1, 2)
	if _, voter := hasMember(members(t, c, c.Leader(t)), c.ID(old)); !voter {
		t.Fatalf("restarted %s is not a voter", c.ID(old))
	}
	for k, v := range acked {
		waitStale(t, c, old, k, v)
	}
}

// TestMemberRemoval: /leave removes followers and leaders (the latter
// through a leadership transfer, whichever node receives the request), the
// cluster keeps serving, and a removed member can be joined back.
func TestMemberRemoval(t *testing.T) {
	c := testcluster.Start(t, 3)

	if r := c.Post(t, c.Leader(t), "/leave?nodeId=nobody"); r.Status != http.StatusNotFound || r.Code() != "node_not_found" {
		t.Fatalf("leave of an unknown id: %s, want 404 node_not_found", r.Summary())
	}

	// rejoin adds member i back under its id and waits until it votes and
	// has caught up.
	rejoin := func(t *testing.T, i int) {
		t.Helper()
		via := others(c, i)[0]
		// A removed member has a log: the leader admits it back only once
		// it has seen, on its API, that the node is of this cluster.
		r := c.Get(t, via, fmt.Sprintf("/join?nodeId=%s&raftPort=%d&httpAddr=%s", c.ID(i), c.RaftPort(i), c.HTTPAddr(i)))
		if r.Status != http.StatusOK || r.String("change") != "added" {
			t.Fatalf("rejoin %s via %s: %s, want 200 added", c.ID(i), c.ID(via), r.Summary())
		}
		c.WaitMembers(t, 0, 1, 2)
		k := "rejoined-" + c.ID(i)
		c.MustSet(t, via, k, "yes")
		waitStale(t, c, i, k, "yes")
	}

	// removed checks that id is gone from every remaining member's
	// configuration and that the two remaining members serve writes.
	removed := func(t *testing.T, gone int) {
		t.Helper()
		rest := others(c, gone)
		testwait.For(t, catchUp, c.ID(gone)+" to leave every remaining configuration", func() error {
			for _, i := range rest {
				ms := members(t, c, i)
				if found, _ := hasMember(ms, c.ID(gone)); found || len(ms) != 2 {
					return fmt.Errorf("%s lists %+v", c.ID(i), ms)
				}
			}
			return nil
		})
		c.WaitMembers(t, rest...)
		if l := c.Leader(t); l == gone {
			t.Fatalf("removed %s still leads", c.ID(gone))
		}
		for _, i := range rest {
			k := fmt.Sprintf("without-%s-via-%s", c.ID(gone), c.ID(i))
			c.MustSet(t, i, k, "ok")
			mustRead(t, c, rest[0], k, "ok")
		}
	}

	tests := []struct {
		name   string
		victim func(l int) int // whom to remove, given the leader
		via    func(l, victim int) int
	}{
		{
			name:   "follower via leader",
			victim: func(l int) int { return others(c, l)[0] },
			via:    func(l, _ int) int { return l },
		},
		{
			name:   "leader via follower",
			victim: func(l int) int { return l },
			via:    func(l, _ int) int { return others(c, l)[0] },
		},
		{
			name:   "leader via itself",
			victim: func(l int) int { return l },
			via:    func(l, _ int) int { return l },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := c.Leader(t)
			victim := tc.victim(l)
			via := tc.via(l, victim)
			waitClusterID(t, c, 0, 1, 2)
			start := time.Now()
			r := c.Post(t, via, "/leave?nodeId="+c.ID(victim))
			if r.Status != http.StatusOK || r.String("node_id") != c.ID(victim) || r.Uint("index") == 0 {
				t.Fatalf("leave %s via %s: %s, want 200 with node_id and index", c.ID(victim), c.ID(via), r.Summary())
			}
			t.Logf("leave of %s via %s took %s", c.ID(victim), c.ID(via), time.Since(start).Round(time.Millisecond))
			removed(t, victim)
			rejoin(t, victim)
		})
	}
}

// TestWholeClusterRestart: every member stopped and started again from its
// directory, with no join, keeps every acknowledged key.
func TestWholeClusterRestart(t *testing.T) {
	for _, store := range []string{node.LogStoreBolt, node.LogStoreWAL} {
		t.Run(store, func(t *testing.T) { testWholeClusterRestart(t, store) })
	}
}

func testWholeClusterRestart(t *testing.T, store string) {
	c := testcluster.Start(t, 3, testcluster.WithLogStore(store))
	acked := map[string]string{}
	for i := range 20 {
		k, v := fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i)
		c.MustSet(t, i%3, k, v)
		acked[k] = v
	}
	for i := range c.Size() {
		c.Kill(t, i)
	}
	for i := range c.Size() {
		c.Restart(t, i)
	}
	c.WaitMembers(t, 0, 1, 2)
	for i := range c.Size() {
		for k, v := range acked {
			mustRead(t, c, i, k, v)
		}
	}
	c.MustSet(t, 2, "after-restart", "ok")
	for i := range c.Size() {
		waitStale(t, c, i, "after-restart", "ok")
	}
}

// TestNoQuorum: a member that has lost its quorum answers writes and
// linearizable reads promptly with 503 (or 504 for a write whose outcome is
// unknown), never 200, while stale reads still work.
func TestNoQuorum(t *testing.T) {
	const timeout = time.Second
	c := testcluster.Start(t, 3, testcluster.WithRequestTimeout(timeout))
	// Bounds an answer: the request deadline, a forward's slack and room
	// for the race detector.
	limit := timeout + 3*time.Second

	tests := []struct {
		name     string
		survivor func(l int) int
	}{
		{"survivor was leader", func(l int) int { return l }},
		{"survivor was follower", func(l int) int { return others(c, l)[0] }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.WaitMembers(t, 0, 1, 2)
			l := c.Leader(t)
			s := tc.survivor(l)
			key := "nq-" + c.ID(s)
			c.MustSet(t, l, key, "before")
			waitStale(t, c, s, key, "before")
			dead := others(c, s)
			for _, i := range dead {
				c.Kill(t, i)
			}

			checks := []struct {
				name    string
				target  string
				allowed map[int]bool
			}{
				{
					name: "write", target: "/set?key=" + key + "&value=after",
					allowed: map[int]bool{http.StatusServiceUnavailable: true, http.StatusGatewayTimeout: true},
				},
				{
					name: "linearizable read", target: "/get?key=" + key,
					allowed: map[int]bool{http.StatusServiceUnavailable: true},
				},
			}
			for _, ch := range checks {
				start := time.Now()
				r := c.Get(t, s, ch.target)
				took := time.Since(start)
				t.Logf("%s on %s: %d %s after %s", ch.name, c.ID(s), r.Status, r.Code(), took.Round(time.Millisecond))
				if !ch.allowed[r.Status] {
					t.Errorf("%s without quorum: %s, want one of %v", ch.name, r.Summary(), ch.allowed)
				}
				if r.Status == http.StatusServiceUnavailable && r.Header.Get("Retry-After") == "" {
					t.Errorf("%s: 503 without Retry-After", ch.name)
				}
				if r.Code() == "" {
					t.Errorf("%s: no error code in %s", ch.name, r.Summary())
				}
				if took > limit {
					t.Errorf("%s took %s, want at most %s", ch.name, took, limit)
				}
			}
			r := c.GetKey(t, s, key, "stale")
			if r.Status != http.StatusOK {
				t.Errorf("stale read without quorum: %s, want 200", r.Summary())
			}

			for _, i := range dead {
				c.Restart(t, i)
			}
			c.WaitMembers(t, 0, 1, 2)
			c.MustSet(t, s, key, "healed")
			mustRead(t, c, s, key, "healed")
		})
	}
}
