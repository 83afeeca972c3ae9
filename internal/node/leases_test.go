package node

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
)

// The leader's step with an injected monotonic clock: nothing before the
// TTL, one expire naming the lease at it, a checkpoint only when asked
// and due, and the commands apply as decided.
func TestLeaseStep(t *testing.T) {
	var now time.Duration
	f := fsm.New()
	tr := fsm.NewTracker(f, func() time.Duration { return now })
	index := uint64(0)
	apply := func(c *fsm.Command) *fsm.Result {
		index++
		return f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: c.Encode(nil)}).(*fsm.Result)
	}
	apply(&fsm.Command{Op: fsm.OpSet, Key: "k", Value: "v", TTLMillis: 10_000})
	if cmds := leaseStep(tr, true); len(cmds) != 0 {
		t.Fatalf("step at grant = %+v", cmds)
	}
	now += 6 * time.Second
	cmds := leaseStep(tr, false)
	if len(cmds) != 0 {
		t.Fatalf("step without checkpoint = %+v", cmds)
	}
	cmds = leaseStep(tr, true)
	if len(cmds) != 1 || cmds[0].Op != fsm.OpLeaseCheckpoint || cmds[0].Leases[0].RemainingMillis != 4000 {
		t.Fatalf("checkpoint step = %+v", cmds)
	}
	apply(cmds[0])
	now += 4*time.Second - time.Millisecond
	if cmds := leaseStep(tr, true); len(cmds) != 0 {
		t.Fatalf("step 1 ms before the TTL = %+v", cmds)
	}
	now += time.Millisecond
	cmds = leaseStep(tr, true)
	if len(cmds) != 1 || cmds[0].Op != fsm.OpLeaseExpire {
		t.Fatalf("step at the TTL = %+v", cmds)
	}
	if res := apply(cmds[0]); res.Current != 1 {
		t.Fatalf("expire deleted %d keys", res.Current)
	}
	if _, ok := f.Get("k"); ok {
		t.Fatal("key left after expire")
	}
	if cmds := leaseStep(tr, true); len(cmds) != 0 {
		t.Fatalf("step after expire = %+v", cmds)
	}
}
