package testcluster

import (
	"errors"
	"net/http"
	"testing"

	"github.com/raftkv/raftkv/internal/testwait"
)

// TestStartKillRestart checks the helper's own promises: Start converges,
// Kill keeps the identity, and Restart comes back on the same ports and
// directory without being joined again.
func TestStartKillRestart(t *testing.T) {
	c := Start(t, 3)
	if got := len(c.Running()); got != 3 {
		t.Fatalf("running members: %d, want 3", got)
	}
	l := c.Leader(t)
	if f := c.Followers(t); len(f) != 2 {
		t.Fatalf("followers: %v, want 2", f)
	}
	c.MustSet(t, l, "k", "v")

	var nodes []struct {
		ID       string `json:"id"`
		HTTPAddr string `json:"http_addr"`
		Voter    bool   `json:"voter"`
	}
	r := c.Get(t, 1, "/nodes")
	if r.Status != http.StatusOK {
		t.Fatalf("GET /nodes: %s", r.Summary())
	}
	if err := r.Decode(&nodes); err != nil {
		t.Fatalf("decode /nodes: %v", err)
	}
	if len(nodes) != 3 {
		t.Fatalf("GET /nodes lists %d members, want 3: %s", len(nodes), r.Body)
	}
	for _, n := range nodes {
		if i := c.Index(n.ID); i < 0 || n.HTTPAddr != c.HTTPAddr(i) || !n.Voter {
			t.Errorf("GET /nodes member %+v: want a voter at %s", n, c.HTTPAddr(i))
		}
	}

	victim := (l + 1) % 3
	raftPort, httpAddr := c.RaftPort(victim), c.HTTPAddr(victim)
	c.Kill(t, victim)
	if c.Alive(victim) || c.Node(victim) != nil {
		t.Fatalf("member %d still running after Kill", victim)
	}
	if _, err := c.Do(victim, http.MethodGet, "/health", nil, nil); err == nil {
		t.Fatalf("killed member %d still answers HTTP", victim)
	}
	c.Restart(t, victim)
	if c.RaftPort(victim) != raftPort || c.HTTPAddr(victim) != httpAddr {
		t.Fatalf("restart moved member %d: raft %d→%d, http %s→%s",
			victim, raftPort, c.RaftPort(victim), httpAddr, c.HTTPAddr(victim))
	}
	c.WaitMembers(t, 0, 1, 2)
	testwait.For(t, StartTimeout, "the restarted member to have k", func() error {
		if r := c.GetKey(t, victim, "k", "stale"); r.String("value") != "v" {
			return errors.New(r.Summary())
		}
		return nil
	})
}

func TestSingleNode(t *testing.T) {
	c := Start(t, 1)
	if l := c.Leader(t); l != 0 {
		t.Fatalf("leader %d, want 0", l)
	}
	c.MustSet(t, 0, "a", "1")
	if r := c.GetKey(t, 0, "a", ""); r.Status != http.StatusOK || r.String("value") != "1" {
		t.Fatalf("get a: %s", r.Summary())
	}
}
