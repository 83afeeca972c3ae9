package integration

// Admission: every cluster has an id every member reports, node-to-node
// calls from another cluster are refused, and /join contacts the joiner
// first (issue 10, section 1).

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"testing"

	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/testcluster"
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
