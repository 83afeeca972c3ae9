package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/testcluster"
	"github.com/raftkv/raftkv/internal/testwait"
)

// TestSnapshots: with a low threshold, POST /snapshot compacts the log,
// the snapshot lands under the node's directory, and a follower that was
// down while the leader compacted past it catches up through an installed
// snapshot with the leader's exact data.
func TestSnapshots(t *testing.T) {
	for _, store := range []string{node.LogStoreBolt, node.LogStoreWAL} {
		t.Run(store, func(t *testing.T) { testSnapshots(t, store) })
	}
}

func testSnapshots(t *testing.T, store string) {
	const threshold = 16
	// Raft's own snapshot timer (120s) stays out of the way, so every
	// snapshot here is one the test asked for.
	c := testcluster.Start(t, 3, testcluster.WithSnapshotThreshold(threshold), testcluster.WithLogStore(store))
	l := c.Leader(t)
	f := others(c, l)[0]

	keys := 0
	write := func(n int) {
		for range n {
			c.MustSet(t, l, fmt.Sprintf("key-%03d", keys), fmt.Sprintf("value-%d", keys))
			keys++
		}
	}
	write(2 * threshold)

	r := c.Post(t, l, "/snapshot")
	if r.Status != http.StatusOK || !r.Bool("created") || r.Uint("index") == 0 {
		t.Fatalf("POST /snapshot: %s, want 200 created with an index", r.Summary())
	}
	first := r.Uint("index")
	if st := c.Status(t, l); st.Uint("last_snapshot_index") != first {
		t.Errorf("status last_snapshot_index %d, want %d", st.Uint("last_snapshot_index"), first)
	}
	metas, err := filepath.Glob(filepath.Join(c.Dir(l), "snapshots", "*", "meta.json"))
	if err != nil || len(metas) == 0 {
		t.Fatalf("no snapshot under %s/snapshots (err %v)", c.Dir(l), err)
	}
	for _, m := range metas {
		if fi, err := os.Stat(filepath.Join(filepath.Dir(m), "state.bin")); err != nil || fi.Size() == 0 {
			t.Errorf("snapshot %s has no state.bin data (err %v)", filepath.Dir(m), err)
		}
	}
	if r := c.Post(t, l, "/snapshot"); r.Status != http.StatusOK || r.Bool("created") || r.Uint("index") != first {
		t.Errorf("second POST /snapshot with nothing new: %s, want created=false index=%d", r.Summary(), first)
	}

	// Take f down, then move the leader's log well past it and compact:
	// the entries f needs are gone, so only a snapshot can catch it up.
	c.MustSet(t, l, "before-down", "x")
	waitStale(t, c, f, "before-down", "x")
	c.Kill(t, f)
	write(3 * threshold)
	r = c.Post(t, l, "/snapshot")
	if r.Status != http.StatusOK || !r.Bool("created") || r.Uint("index") <= first {
		t.Fatalf("POST /snapshot while %s is down: %s, want a new snapshot past %d", c.ID(f), r.Summary(), first)
	}
	compacted := r.Uint("index")

	c.Restart(t, f)
	last := fmt.Sprintf("key-%03d", keys-1)
	waitStale(t, c, f, last, fmt.Sprintf("value-%d", keys-1))
	c.WaitMembers(t, 0, 1, 2)
	// raft records the installed snapshot's index just after the FSM has
	// restored it, so the data can show up a moment before the status.
	testwait.For(t, catchUp, fmt.Sprintf("%s's last_snapshot_index to reach %d (an installed snapshot)", c.ID(f), compacted), func() error {
		if got := c.Status(t, f).Uint("last_snapshot_index"); got < compacted {
			return fmt.Errorf("last_snapshot_index %d", got)
		}
		return nil
	})

	ln, fn := c.Node(l).FSM(), c.Node(f).FSM()
	testwait.For(t, catchUp, "the follower to apply everything", func() error {
		if f, l := fn.AppliedIndex(), ln.AppliedIndex(); f != l {
			return fmt.Errorf("follower applied %d, leader %d", f, l)
		}
		return nil
	})
	if ls, fs := ln.Stats(), fn.Stats(); ls != fs {
		t.Fatalf("stats differ: leader %+v, follower %+v", ls, fs)
	}
	for i := range keys {
		k := fmt.Sprintf("key-%03d", i)
		le, lok := ln.Get(k)
		fe, fok := fn.Get(k)
		if !lok || !fok || le != fe {
			t.Fatalf("%s: leader %+v (%v), follower %+v (%v)", k, le, lok, fe, fok)
		}
	}
}
