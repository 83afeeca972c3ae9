package fsm

import (
	"testing"
	"time"
)

// fakeClock is a monotonic clock the test moves by hand.
type fakeClock struct{ t time.Duration }

func (c *fakeClock) now() time.Duration { return c.t }

func TestTrackerExpiresAtTTLNotBefore(t *testing.T) {
	clk := &fakeClock{t: time.Hour} // any origin: only differences count
	f := New()
	tr := NewTracker(f, clk.now)
	applyCmd(t, f, 1, Command{Op: OpSet, Key: "k", Value: "v", TTLMillis: 3000})
	tr.Scan()
	clk.t += 3*time.Second - time.Millisecond
	tr.Scan()
	if due := tr.Due(10); len(due) != 0 {
		t.Fatalf("due 1 ms before the TTL: %+v", due)
	}
	if rem, ok := tr.Remaining(1); !ok || rem != time.Millisecond {
		t.Fatalf("Remaining = %v, %v; want 1ms", rem, ok)
	}
	clk.t += time.Millisecond
	due := tr.Due(10)
	if len(due) != 1 || due[0] != (LeaseRef{ID: 1, Refreshed: 1}) {
		t.Fatalf("due at the TTL = %+v", due)
	}
	// A refresh that commits before the expire wins: the expire is stale.
	applyCmd(t, f, 2, Command{Op: OpTouch, Key: "k"})
	applyCmd(t, f, 3, Command{Op: OpLeaseExpire, Leases: due})
	if _, ok := f.Get("k"); !ok {
		t.Fatal("expire decided before a touch deleted the key")
	}
	tr.Scan()
	if due := tr.Due(10); len(due) != 0 {
		t.Fatalf("due right after a touch: %+v", due)
	}
	clk.t += 3 * time.Second
	applyCmd(t, f, 4, Command{Op: OpLeaseExpire, Leases: tr.Due(10)})
	tr.Scan()
	if _, ok := f.Get("k"); ok || tr.Len() != 0 {
		t.Fatal("key or tracked lease left after its expire")
	}
}

// A keepalive or touch applied after the last Scan shows its full time at
// once, not what was left of the refresh before it (issue 12's trial: a
// GET /leases right after a keepalive showed the old ttl for up to a tick).
func TestTrackerRemainingCountsUnscannedRefresh(t *testing.T) {
	clk := &fakeClock{}
	f := New()
	tr := NewTracker(f, clk.now)
	applyCmd(t, f, 1, Command{Op: OpSet, Key: "k", Value: "v", TTLMillis: 3000})
	tr.Scan()
	clk.t += 2 * time.Second
	applyCmd(t, f, 2, Command{Op: OpTouch, Key: "k"})
	if rem, ok := tr.Remaining(1); !ok || rem != 3*time.Second {
		t.Fatalf("Remaining before the next Scan = %v, %v; want 3s", rem, ok)
	}
	clk.t += 500 * time.Millisecond
	tr.Scan()
	clk.t += time.Second
	if rem, ok := tr.Remaining(1); !ok || rem != 2*time.Second {
		t.Fatalf("Remaining 1s after the Scan that saw the touch = %v, %v; want 2s", rem, ok)
	}
}

// The failover case: the old leader checkpoints; a new leader that first
// sees the lease only then (a restarted node), and one that saw it as a
// follower all along, never expire it before the true deadline, and the
// new leader is late by at most the time since the checkpoint.
func TestTrackerCheckpointFailover(t *testing.T) {
	old := &fakeClock{}
	f := New()
	leader := NewTracker(f, old.now)
	follower := &fakeClock{t: 42 * time.Minute} // another node's clock: any offset
	g := New()
	ftr := NewTracker(g, follower.now)
	apply := func(index uint64, c Command) {
		applyCmd(t, f, index, c)
		applyCmd(t, g, index, c)
		leader.Scan()
		ftr.Scan()
	}
	const ttl = 20 * time.Second
	apply(1, Command{Op: OpLeaseGrant, TTLMillis: uint64(ttl.Milliseconds())}) // true deadline: 20 s after this
	old.t += 7 * time.Second
	follower.t += 7 * time.Second
	leader.Scan()
	cps := leader.Checkpoints(CheckpointInterval, MaxLeasesPerCommand)
	if len(cps) != 1 || cps[0].RemainingMillis != 13_000 {
		t.Fatalf("checkpoints = %+v, want 13 s left", cps)
	}
	if again := leader.Checkpoints(CheckpointInterval, MaxLeasesPerCommand); len(again) != 1 {
		t.Fatal("checkpoint candidates are not stable until applied")
	}
	apply(2, Command{Op: OpLeaseCheckpoint, Leases: cps})
	if c := leader.Checkpoints(CheckpointInterval, MaxLeasesPerCommand); len(c) != 0 {
		t.Fatalf("checkpoint again right after one: %+v", c)
	}
	// The leader dies 3 s after the checkpoint (10 s after the grant). A
	// node restarting with the state counts the checkpoint's 13 s from its
	// first scan, 2 s later (12 s after the grant): due at 25 s, 5 s late.
	old.t += 3 * time.Second
	follower.t += 5 * time.Second
	restarted := &fakeClock{t: time.Hour}
	rtr := NewTracker(g, restarted.now)
	rtr.Scan()
	restarted.t += 13*time.Second - time.Millisecond // 25 s after the grant, less 1 ms
	follower.t += 13*time.Second - time.Millisecond
	if d := rtr.Due(10); len(d) != 0 {
		t.Fatal("restarted node due early")
	}
	// The follower saw the checkpoint when it was applied (7 s after the
	// grant): its deadline is 20 s after the grant, not earlier.
	ftr.Scan()
	if d := ftr.Due(10); len(d) != 1 {
		t.Fatalf("follower not due 25 s after the grant: %+v", d)
	}
	follower2 := &fakeClock{}
	h := New()
	applyCmd(t, h, 1, Command{Op: OpLeaseGrant, TTLMillis: uint64(ttl.Milliseconds())})
	tr2 := NewTracker(h, follower2.now)
	tr2.Scan()
	applyCmd(t, h, 2, Command{Op: OpLeaseCheckpoint, Leases: []LeaseRef{{ID: 1, Refreshed: 1, RemainingMillis: 13_000}}})
	follower2.t += 7 * time.Second // it applied the checkpoint late: its own deadline (20 s) stays
	tr2.Scan()
	follower2.t += 13*time.Second - time.Millisecond
	if d := tr2.Due(10); len(d) != 0 {
		t.Fatal("a checkpoint seen late brought the deadline before the grant's")
	}
	follower2.t += time.Millisecond
	if d := tr2.Due(10); len(d) != 1 {
		t.Fatal("not due at the grant's deadline")
	}
	restarted.t += time.Millisecond
	if d := rtr.Due(10); len(d) != 1 {
		t.Fatal("restarted node not due at its deadline")
	}
}

// Due and Checkpoints are bounded per call and checkpoint the oldest
// first.
func TestTrackerBounded(t *testing.T) {
	clk := &fakeClock{}
	f := New()
	tr := NewTracker(f, clk.now)
	for i := uint64(1); i <= 30; i++ {
		applyCmd(t, f, i, Command{Op: OpLeaseGrant, TTLMillis: 10_000})
		tr.Scan()
		clk.t += 10 * time.Millisecond
	}
	clk.t += CheckpointInterval
	cps := tr.Checkpoints(CheckpointInterval, 7)
	if len(cps) != 7 || cps[0].ID != 1 || cps[6].ID != 7 {
		t.Fatalf("checkpoints = %+v, want leases 1..7", cps)
	}
	clk.t += 10 * time.Second
	if due := tr.Due(5); len(due) != 5 || due[0].ID != 1 || due[4].ID != 5 {
		t.Fatalf("due = %+v, want leases 1..5", due)
	}
}

// BenchmarkTrackerScan: one scan of MaxLeases leases, the cost every node
// pays each TrackerTick (DESIGN.md's bound on the lease count).
func BenchmarkTrackerScan(b *testing.B) {
	f := New()
	for i := uint64(1); i <= MaxLeases; i++ {
		f.Apply(cmdLog(i, Command{Op: OpLeaseGrant, TTLMillis: 60_000}))
	}
	clk := &fakeClock{}
	tr := NewTracker(f, clk.now)
	tr.Scan()
	b.ResetTimer()
	for range b.N {
		clk.t += TrackerTick
		tr.Scan()
	}
}
