package fsm

// The Tracker measures lease time on one node's monotonic clock; it is
// never used by Apply. DESIGN.md, "TTLs and leases", says why its
// deadlines are never early.

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// TrackerTick is how often a node scans the lease table (node's loop), and
// so part of how late an expiry can be (DESIGN.md: about 250 ms in all on
// a stable leader).
const TrackerTick = 100 * time.Millisecond

// CheckpointInterval is how often the leader records leases' remaining
// time in the log; it bounds how much time a failover can forget (so how
// late an expiry can be after one, DESIGN.md).
const CheckpointInterval = 5 * time.Second

// Tracker holds, for every lease this replica has applied, a deadline on
// this node's monotonic clock: when it first saw the lease's last refresh
// (or checkpoint), plus the remaining time recorded with it.
type Tracker struct {
	f   *FSM
	now func() time.Duration

	mu     sync.Mutex
	leases map[uint64]*tracked // iterated only to drop and pick, never by Apply
	scan   uint64
}

type tracked struct {
	refreshed, since uint64
	remaining        uint64        // ms, recorded at since
	sinceSeen        time.Duration // when this node first saw since
	deadline         time.Duration
	scan             uint64
}

// NewTracker tracks f's leases. now is a monotonic clock (nil: time since
// NewTracker, through time.Since, which reads the monotonic clock).
func NewTracker(f *FSM, now func() time.Duration) *Tracker {
	if now == nil {
		start := time.Now()
		now = func() time.Duration { return time.Since(start) }
	}
	return &Tracker{f: f, now: now, leases: map[uint64]*tracked{}}
}

// Scan reads the lease table once (O(leases) under the FSM's read lock)
// and updates the deadlines: a new lease or a new refresh counts from now;
// a new checkpoint of the same refresh can only bring the deadline
// earlier (both bounds are safe, the smaller is tighter).
func (t *Tracker) Scan() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.scan++
	t.f.scanLeases(func(l Lease) {
		rem := uint64(l.Remaining / time.Millisecond)
		tr := t.leases[l.ID]
		switch {
		case tr == nil || tr.refreshed != l.Refreshed:
			tr = &tracked{refreshed: l.Refreshed, since: l.Since, remaining: rem, sinceSeen: now, deadline: now + l.Remaining}
			t.leases[l.ID] = tr
		case tr.since != l.Since:
			tr.since, tr.remaining, tr.sinceSeen = l.Since, rem, now
			tr.deadline = min(tr.deadline, now+l.Remaining)
		}
		tr.scan = t.scan
	})
	for id, tr := range t.leases {
		if tr.scan != t.scan {
			delete(t.leases, id)
		}
	}
}

// Remaining is the time left before lease id expires as this node counts
// it (never less than the true time left; 0 when due), as of the last Scan.
// A refresh applied since that Scan counts in full: the next Scan dates it
// from then, so its deadline is at least now plus the Remaining it recorded
// (without this a read in the tick after a keepalive showed the old time).
func (t *Tracker) Remaining(id uint64) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr, ok := t.leases[id]
	if !ok {
		return 0, false
	}
	// t.mu before the FSM's read lock, the order Scan takes them in.
	if l, ok := t.f.Lease(id, 0); ok && l.Refreshed != tr.refreshed {
		return l.Remaining, true
	}
	return max(tr.deadline-t.now(), 0), true
}

// Due lists, by id, at most max leases whose deadline has passed: what the
// leader proposes to expire.
func (t *Tracker) Due(max int) []LeaseRef {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var out []LeaseRef
	for id, tr := range t.leases {
		if tr.deadline <= now {
			out = append(out, LeaseRef{ID: id, Refreshed: tr.refreshed})
		}
	}
	slices.SortFunc(out, func(a, b LeaseRef) int { return cmp.Compare(a.ID, b.ID) })
	if len(out) > max {
		out = out[:max]
	}
	return out
}

// Checkpoints lists at most max leases whose remaining time was last
// recorded at least interval ago (oldest first) and has shrunk since,
// each with its remaining time rounded up to the millisecond: what the
// leader proposes to checkpoint.
func (t *Tracker) Checkpoints(interval time.Duration, max int) []LeaseRef {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	type cand struct {
		ref  LeaseRef
		seen time.Duration
	}
	var cs []cand
	for id, tr := range t.leases {
		left := tr.deadline - now
		if left <= 0 || now-tr.sinceSeen < interval {
			continue
		}
		ms := uint64((left + time.Millisecond - 1) / time.Millisecond)
		if ms >= tr.remaining {
			continue
		}
		cs = append(cs, cand{LeaseRef{ID: id, Refreshed: tr.refreshed, RemainingMillis: ms}, tr.sinceSeen})
	}
	slices.SortFunc(cs, func(a, b cand) int {
		if a.seen != b.seen {
			return cmp.Compare(a.seen, b.seen)
		}
		return cmp.Compare(a.ref.ID, b.ref.ID)
	})
	out := make([]LeaseRef, 0, min(len(cs), max))
	for _, c := range cs[:min(len(cs), max)] {
		out = append(out, c.ref)
	}
	return out
}

// Len is the number of leases tracked.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.leases)
}
