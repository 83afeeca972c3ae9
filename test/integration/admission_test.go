package integration

// Admission: every cluster has an id every member reports, node-to-node
// calls from another cluster are refused, and /join contacts the joiner
// first.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/testcluster"
	"github.com/raftkv/raftkv/internal/testwait"
)

// TestClusterIDRefusesForeignCalls: the members of a cluster report one id
// on /status and /internal/info; a node-to-node call carrying another
// cluster's id is refused with 409 other_cluster, one carrying this
// cluster's id (or none: a client) is served.
func TestClusterIDRefusesForeignCalls(t *testing.T) {
	a := testcluster.Start(t, 3)
	b := testcluster.Start(t, 1)
	idA := waitClusterID(t, a, 0, 1, 2)
	idB := waitClusterID(t, b, 0)
	if idA == idB {
		t.Fatalf("two clusters share the id %s", idA)
	}
	if got := a.Get(t, 1, cluster.PathInfo).String("cluster_id"); got != idA {
		t.Fatalf("/internal/info cluster_id %q, want %q", got, idA)
	}
	with := func(id string) http.Header {
		h := a.AdminHeader()
		if h == nil {
			h = http.Header{}
		}
		h.Set(cluster.HeaderClusterID, id)
		return h
	}
	for _, target := range []string{cluster.PathInfo, "/get?key=k", "/status"} {
		if r := a.MustDo(t, 1, http.MethodGet, target, nil, with(idB)); r.Status != http.StatusConflict || r.Code() != "other_cluster" {
			t.Errorf("GET %s with cluster B's id: %s, want 409 other_cluster", target, r.Summary())
		}
	}
	if r := a.MustDo(t, 1, http.MethodGet, cluster.PathInfo, nil, with(idA)); r.Status != http.StatusOK {
		t.Errorf("GET %s with the cluster's own id: %s, want 200", cluster.PathInfo, r.Summary())
	}
}

// TestJoinContactsJoiner: on a one-node store, /join refuses a node that
// does not answer (a mistyped port), one that belongs to another cluster
// and took writes there, and one with a log of its own that it cannot
// vouch for; each refusal changes nothing and the store keeps writing.
// Before, each was added as a voter ("added", 200): the mistyped port cost
// the store its quorum, the other cluster's node could be elected with
// another cluster's data.
func TestJoinContactsJoiner(t *testing.T) {
	a := testcluster.Start(t, 1)
	b := testcluster.Start(t, 2) // a cluster of its own, with writes
	b.MustSet(t, 0, "b-only", "x")
	waitClusterID(t, b, 0, 1)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()

	tests := []struct {
		name, target, code string
	}{
		{"mistyped port", "/join?nodeId=s2&raftPort=" + strconv.Itoa(deadPort), "joiner_unreachable"},
		{"API address where nothing answers", fmt.Sprintf("/join?nodeId=n2&raftAddr=%s&httpAddr=127.0.0.1:%d", b.RaftAddr(1), deadPort), "joiner_unreachable"},
		{"another cluster's member, with its API", fmt.Sprintf("/join?nodeId=n2&raftAddr=%s&httpAddr=%s", b.RaftAddr(1), b.HTTPAddr(1)), "other_cluster"},
		{"another cluster's member, Raft address only", fmt.Sprintf("/join?nodeId=n2&raftAddr=%s", b.RaftAddr(1)), "joiner_has_state"},
		{"the address of a node with another id", fmt.Sprintf("/join?nodeId=s9&raftAddr=%s", b.RaftAddr(1)), "joiner_mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.Get(t, 0, tt.target)
			if r.Status != http.StatusConflict || r.Code() != tt.code {
				t.Fatalf("GET %s: %s, want 409 %s", tt.target, r.Summary(), tt.code)
			}
			if ms := members(t, a, 0); len(ms) != 1 {
				t.Fatalf("configuration after a refused join: %+v", ms)
			}
			a.MustSet(t, 0, "after-"+tt.code, "ok")
		})
	}
	if r := b.GetKey(t, 1, "b-only", ""); r.Status != http.StatusOK || r.String("value") != "x" {
		t.Fatalf("the other cluster lost its write: %s", r.Summary())
	}

	// A fresh node (empty volume, not bootstrapped) is admitted, and
	// learns the cluster's id.
	n := a.AddUnjoined(t)
	if r := a.Get(t, 0, fmt.Sprintf("/join?nodeId=%s&raftPort=%d", a.ID(n), a.RaftPort(n))); r.Status != http.StatusOK || r.String("change") != "added" {
		t.Fatalf("join of a fresh node: %s", r.Summary())
	}
	waitClusterID(t, a, 0, n)
}

// TestSeedFlowLearnerFirst: the seed flow (n1 bootstraps; n2 and n3 wait
// with empty volumes; two /join?raftPort= calls) gives three voters within
// seconds: each joiner is added as a learner ("voter":false,
// "auto_promote":true) and the leader promotes it once it answers on its
// API with this cluster's id and has caught up. A learner joined with
// voter=false stays one.
func TestSeedFlowLearnerFirst(t *testing.T) {
	c := testcluster.Start(t, 1)
	c.MustSet(t, 0, "before", "v")
	learner := c.AddUnjoined(t)
	if r := c.Get(t, 0, fmt.Sprintf("/join?nodeId=%s&raftPort=%d&voter=false", c.ID(learner), c.RaftPort(learner))); r.Status != http.StatusOK ||
		r.Bool("voter") || r.Bool("auto_promote") {
		t.Fatalf("join with voter=false: %s, want 200, voter false, no auto_promote", r.Summary())
	}
	start := time.Now()
	var joined []int
	for range 2 {
		i := c.AddUnjoined(t)
		joined = append(joined, i)
		r := c.Get(t, 0, fmt.Sprintf("/join?nodeId=%s&raftPort=%d", c.ID(i), c.RaftPort(i)))
		if r.Status != http.StatusOK || r.String("change") != "added" || r.Bool("voter") || !r.Bool("auto_promote") {
			t.Fatalf("join %s: %s, want 200 added, voter false, auto_promote true", c.ID(i), r.Summary())
		}
	}
	testwait.For(t, 10*time.Second, "the two joiners to be promoted to voters", func() error {
		got := suffrages(t, c, 0)
		for _, i := range joined {
			if got[c.ID(i)] != node.SuffrageVoter {
				return fmt.Errorf("members %v", got)
			}
		}
		return nil
	})
	t.Logf("three voters %s after the first join", time.Since(start).Round(time.Millisecond))
	if got := suffrageOf(t, c, 0, c.ID(learner)); got != node.SuffrageLearner {
		t.Fatalf("%s joined with voter=false is %q, want learner", c.ID(learner), got)
	}
	for _, i := range joined {
		waitStale(t, c, i, "before", "v")
	}
}

// TestUnservingJoinerCostsNoQuorum: a node that answers on Raft but whose
// API never does (here a bare Raft node) is added as a learner and never
// promoted, so a one-node store keeps writing when it goes away, and
// /leave removes it: the way back from a bad join.
func TestUnservingJoinerCostsNoQuorum(t *testing.T) {
	c := testcluster.Start(t, 1)
	peer, _ := openPeer(t, "s2", nil)
	r := c.Get(t, 0, fmt.Sprintf("/join?nodeId=s2&raftAddr=%s", peer.RaftAddr()))
	if r.Status != http.StatusOK || r.Bool("voter") {
		t.Fatalf("join s2: %s, want 200 as a learner", r.Summary())
	}
	index := c.MustSet(t, 0, "k", "v")
	ctx, cancel := context.WithTimeout(context.Background(), catchUp)
	defer cancel()
	if err := peer.FSM().WaitApplied(ctx, index); err != nil {
		t.Fatalf("s2 did not receive the log: %v", err)
	}
	if err := peer.Close(); err != nil {
		t.Fatal(err)
	}
	// Several promotion rounds pass while these writes commit; had s2
	// been made a voter, one of two voters down would stop them.
	for i := range 8 {
		c.MustSet(t, 0, fmt.Sprintf("alone-%d", i), "v")
	}
	if got := suffrageOf(t, c, 0, "s2"); got != node.SuffrageLearner {
		t.Fatalf("s2 is %q, want learner", got)
	}
	if r := c.Post(t, 0, "/leave?nodeId=s2"); r.Status != http.StatusOK {
		t.Fatalf("leave s2: %s", r.Summary())
	}
	if ms := members(t, c, 0); len(ms) != 1 {
		t.Fatalf("members after /leave: %+v", ms)
	}
}

// TestRemovedNodeKnowsIt: a node removed with /leave says not_member on
// /status, /ready and for client requests, forwards nothing (a write sent
// to it is not applied anywhere), and a linearizable read fails at once.
// Before, it kept following its old leader: the write was forwarded and
// applied, the read hung for the request timeout.
func TestRemovedNodeKnowsIt(t *testing.T) {
	c := testcluster.Start(t, 3)
	l := c.Leader(t)
	f := c.Followers(t)[0]
	waitClusterID(t, c, 0, 1, 2)
	if r := c.Post(t, l, "/leave?nodeId="+c.ID(f)); r.Status != http.StatusOK {
		t.Fatalf("leave %s: %s", c.ID(f), r.Summary())
	}
	testwait.For(t, catchUp, c.ID(f)+" to report not_member on /status", func() error {
		st := c.Status(t, f)
		if st.String("membership") != "not_member" || st.String("leader_id") != "" {
			return fmt.Errorf("/status %s", st.Summary())
		}
		return nil
	})
	if r := c.Get(t, f, "/ready"); r.Status != http.StatusServiceUnavailable || r.Code() != "not_member" {
		t.Fatalf("/ready on the removed node: %s, want 503 not_member", r.Summary())
	}
	if r := c.Set(t, f, "via-removed", "x"); r.Status != http.StatusServiceUnavailable || r.Code() != "not_member" {
		t.Fatalf("write through the removed node: %s, want 503 not_member", r.Summary())
	}
	start := time.Now()
	if r := c.GetKey(t, f, "k", ""); r.Status != http.StatusServiceUnavailable || r.Code() != "not_member" {
		t.Fatalf("read on the removed node: %s, want 503 not_member", r.Summary())
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the refused read took %s", d)
	}
	if r := c.GetKey(t, l, "via-removed", ""); r.Status != http.StatusNotFound {
		t.Fatalf("the write sent to the removed node reached the cluster: %s", r.Summary())
	}
	if st := c.Status(t, l); st.String("membership") != "voter" {
		t.Fatalf("leader /status membership %q", st.String("membership"))
	}
}
