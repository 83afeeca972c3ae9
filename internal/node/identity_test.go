package node

import (
	"errors"
	"path/filepath"
	"testing"
)

// TestDeriveClusterID: every node of a RAFT_BOOTSTRAP_EXPECT cluster
// computes the same id from the same servers in any order; another list
// gives another id.
func TestDeriveClusterID(t *testing.T) {
	a := []Server{{"n1", "10.0.0.1:9000"}, {"n2", "10.0.0.2:9000"}, {"n3", "10.0.0.3:9000"}}
	b := []Server{a[2], a[0], a[1]}
	id := DeriveClusterID(a)
	if !ValidClusterID(id) {
		t.Fatalf("derived id %q is not %d hex digits", id, ClusterIDLen)
	}
	if got := DeriveClusterID(b); got != id {
		t.Fatalf("same servers in another order: %s, want %s", got, id)
	}
	c := []Server{a[0], a[1], {"n3", "10.0.0.4:9000"}}
	if got := DeriveClusterID(c); got == id {
		t.Fatalf("another configuration derived the same id %s", id)
	}
	if r1, r2 := newClusterID(), newClusterID(); r1 == r2 || !ValidClusterID(r1) {
		t.Fatalf("random ids %q and %q: want two different valid ids", r1, r2)
	}
}

// TestClusterIDKept: a node that bootstraps alone gets an id, keeps it
// across a restart (both log stores), and refuses to adopt another; a node
// that never bootstrapped has none until it adopts one.
func TestClusterIDKept(t *testing.T) {
	for _, store := range []string{LogStoreBolt, LogStoreWAL} {
		t.Run(store, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "n1")
			n := openLeader(t, testConfig(dir, store))
			id := n.ClusterID()
			if !ValidClusterID(id) {
				t.Fatalf("bootstrapped node has cluster id %q", id)
			}
			other := newClusterID()
			if err := n.AdoptClusterID(other); !errors.Is(err, ErrOtherCluster) {
				t.Fatalf("adopting another id: %v, want ErrOtherCluster", err)
			}
			if err := n.AdoptClusterID(id); err != nil {
				t.Fatalf("adopting its own id again: %v", err)
			}
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			n = openLeader(t, testConfig(dir, store))
			if got := n.ClusterID(); got != id {
				t.Fatalf("after restart cluster id %q, want %q", got, id)
			}

			cfg := testConfig(filepath.Join(t.TempDir(), "n2"), store)
			cfg.ID, cfg.Bootstrap = "n2", false
			j, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			if got := j.ClusterID(); got != "" {
				t.Fatalf("an unjoined node has cluster id %q", got)
			}
			if err := j.AdoptClusterID("not-hex"); err == nil {
				t.Fatal("adopted a malformed id")
			}
			if err := j.AdoptClusterID(id); err != nil || j.ClusterID() != id {
				t.Fatalf("adopt: %v, id %q", err, j.ClusterID())
			}
		})
	}
}

// TestProbeJoiner: over the Raft transport a fresh node answers term 0 and
// its id, a node with a log of its own answers its term and last index
// (and keeps them: the probe changes nothing there), and an address where
// nothing listens is ErrJoinerUnreachable.
func TestProbeJoiner(t *testing.T) {
	leader := openLeader(t, testConfig(filepath.Join(t.TempDir(), "n1"), LogStoreBolt))

	cfg := testConfig(filepath.Join(t.TempDir(), "fresh"), LogStoreBolt)
	cfg.ID, cfg.Bootstrap = "fresh", false
	fresh, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	st, err := leader.ProbeJoiner(t.Context(), fresh.RaftAddr())
	if err != nil || st.ID != "fresh" || st.HasState() {
		t.Fatalf("probe of a fresh node: %+v, %v; want id fresh, no state", st, err)
	}

	cfg = testConfig(filepath.Join(t.TempDir(), "other"), LogStoreBolt)
	cfg.ID = "other"
	other := openLeader(t, cfg)
	before := other.raft.LastIndex()
	st, err = leader.ProbeJoiner(t.Context(), other.RaftAddr())
	if err != nil || st.ID != "other" || !st.HasState() || st.LastLog != before {
		t.Fatalf("probe of a node with its own cluster: %+v, %v; want id other, state, last index %d", st, err, before)
	}
	if !other.IsLeader() || other.raft.LastIndex() != before {
		t.Fatalf("the probe disturbed the other cluster: leader %v, last index %d (was %d)", other.IsLeader(), other.raft.LastIndex(), before)
	}

	if _, err := leader.ProbeJoiner(t.Context(), "127.0.0.1:1"); !errors.Is(err, ErrJoinerUnreachable) {
		t.Fatalf("probe of a dead address: %v, want ErrJoinerUnreachable", err)
	}
}
