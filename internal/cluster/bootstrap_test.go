package cluster

import (
	"reflect"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/internal/node"
)

func TestDecideBootstrap(t *testing.T) {
	info := func(id string, expect int, inCluster bool) PeerInfo {
		return PeerInfo{ID: id, RaftAddr: id + ":9000", HTTPAddr: id + ":8000", BootstrapExpect: expect, InCluster: inCluster}
	}
	self := info("n2", 3, false)
	servers := func(ids ...string) []node.Server {
		var out []node.Server
		for _, id := range ids {
			out = append(out, node.Server{ID: id, RaftAddr: id + ":9000"})
		}
		return out
	}
	tests := []struct {
		name    string
		peers   []PeerInfo
		expect  int
		servers []node.Server
		joinVia []string
		why     string // substring of the reason to wait
	}{
		{"no seed answers", nil, 3, nil, nil, "seen 1 of 3: n2 (this node)"},
		{"one of two others", []PeerInfo{info("n1", 3, false)}, 3, nil, nil, "seen 2 of 3: n1 at n1:8000, n2 (this node)"},
		{"all three, sorted by id", []PeerInfo{info("n3", 3, false), info("n1", 3, false)}, 3, servers("n1", "n2", "n3"), nil, ""},
		{"self listed among the seeds", []PeerInfo{info("n3", 3, false), info("n2", 3, false), info("n1", 3, false)}, 3, servers("n1", "n2", "n3"), nil, ""},
		{"more than expected are all voters", []PeerInfo{info("n1", 3, false), info("n3", 3, false), info("n4", 3, false)}, 3, servers("n1", "n2", "n3", "n4"), nil, ""},
		{"a seed listed twice counts once", []PeerInfo{info("n1", 3, false), info("n1", 3, false)}, 3, nil, nil, "seen 2 of 3"},
		{"expect 1 bootstraps alone", nil, 1, servers("n2"), nil, ""},
		{"a seed in a cluster: join", []PeerInfo{info("n1", 3, false), info("n3", 0, true)}, 3, nil, []string{"n3:8000"}, ""},
		{"in a cluster wins over enough peers", []PeerInfo{info("n1", 3, true), info("n3", 3, false)}, 3, nil, []string{"n1:8000"}, ""},
		{"different expect: refuse", []PeerInfo{info("n1", 5, false), info("n3", 3, false)}, 3, nil, nil, "RAFT_BOOTSTRAP_EXPECT=5"},
		{"a seed without expect is not counted", []PeerInfo{info("n1", 0, false), info("n3", 3, false)}, 3, nil, nil, "seen 2 of 3: n2 (this node), n3 at n3:8000"},
		{"an id at two addresses", []PeerInfo{info("n1", 3, false), {ID: "n1", RaftAddr: "other:9000", BootstrapExpect: 3}}, 3, nil, nil, "node id n1 is used at both"},
		{"this node's id elsewhere", []PeerInfo{{ID: "n2", RaftAddr: "other:9000", BootstrapExpect: 3}, info("n3", 3, false)}, 3, nil, nil, "node id n2 is used at both"},
		{"a raft address claimed twice", []PeerInfo{info("n1", 3, false), {ID: "n3", RaftAddr: "n1:9000", BootstrapExpect: 3}}, 3, nil, nil, "claimed by both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decideBootstrap(self, tt.peers, tt.expect)
			if !reflect.DeepEqual(d.servers, tt.servers) || !reflect.DeepEqual(d.joinVia, tt.joinVia) {
				t.Fatalf("decision %+v, want servers %v join %v", d, tt.servers, tt.joinVia)
			}
			if tt.servers == nil && tt.joinVia == nil && !strings.Contains(d.why, tt.why) {
				t.Fatalf("reason %q does not contain %q", d.why, tt.why)
			}
		})
	}
}
