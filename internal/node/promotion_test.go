package node

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
)

// TestJoinMarksBeforeLearner: a node joined as a voter has its promotion
// mark committed before its learner's configuration entry, so there is no
// point in the log where it is a learner without its mark (a leader dying
// there would leave it a learner for good). A learner joined with
// voter=false gets no mark.
func TestJoinMarksBeforeLearner(t *testing.T) {
	n := openLeader(t, testConfig(t.TempDir(), LogStoreBolt))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Nothing listens there; a one-voter cluster commits the learner anyway.
	res, err := n.Join(ctx, "n9", "127.0.0.1:1", "", true, nil)
	if err != nil || res.Voter || !res.AutoPromote {
		t.Fatalf("join n9 as a voter: %+v, %v; want a learner marked for promotion", res, err)
	}
	if _, err := n.Join(ctx, "n8", "127.0.0.1:2", "", false, nil); err != nil {
		t.Fatalf("join n8 as a learner: %v", err)
	}

	first, last, err := logBounds(n.store)
	if err != nil {
		t.Fatal(err)
	}
	markAt := map[string]uint64{}
	memberAt := map[string]uint64{}
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := n.store.GetLog(i, &l); err != nil {
			t.Fatalf("log entry %d: %v", i, err)
		}
		switch l.Type {
		case raft.LogCommand:
			if cmd, err := fsm.DecodeCommand(l.Data); err == nil && cmd.Op == fsm.OpMarkPromotion {
				markAt[cmd.NodeID] = i
			}
		case raft.LogConfiguration:
			c, ok := decodeConfiguration(l.Data)
			if !ok {
				t.Fatalf("configuration entry %d does not decode", i)
			}
			for _, s := range c.Servers {
				if _, seen := memberAt[string(s.ID)]; !seen {
					memberAt[string(s.ID)] = i
				}
			}
		}
	}
	if markAt["n9"] == 0 || memberAt["n9"] == 0 || markAt["n9"] > memberAt["n9"] {
		t.Fatalf("n9: mark at index %d, learner at index %d; want the mark first", markAt["n9"], memberAt["n9"])
	}
	if res.Index != memberAt["n9"] {
		t.Errorf("join answered index %d, want the learner's configuration entry %d", res.Index, memberAt["n9"])
	}
	if _, marked := markAt["n8"]; marked || memberAt["n8"] == 0 {
		t.Errorf("n8 (voter=false): mark at %d, member at %d; want a member without a mark", markAt["n8"], memberAt["n8"])
	}
	if got := n.PendingPromotions(); len(got) != 1 || got[0] != "n9" {
		t.Errorf("pending promotions %q, want [n9]", got)
	}
}
