package fsm

// Leases and TTL keys: the deterministic side (DESIGN.md, "TTLs and
// leases"). Apply reads no clock: a lease holds durations and the indexes
// they were recorded at; the leader's Tracker decides expiry and
// checkpoints and carries them in the log.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/btree"
)

// TTL bounds, for keys and leases alike. MinTTL: below a second the
// expiry's own lateness (about 250 ms, DESIGN.md) dominates the TTL.
// MaxTTL: a day, Consul's session ceiling.
const (
	MinTTL = time.Second
	MaxTTL = 24 * time.Hour
)

// MaxLeases bounds the lease table, key leases (PUT ?ttl) included: every
// node's Tracker scans all of them every TrackerTick, 2 ms at this count
// (BenchmarkTrackerScan; 21 ms at 100,000).
const MaxLeases = 10_000

// MaxLeasesPerCommand bounds the leases one checkpoint or expire command
// names (about 30 bytes each: an entry stays under 32 KiB).
const MaxLeasesPerCommand = 1000

// Outcomes of lease commands that changed nothing.
var (
	// ErrLeaseNotFound: the lease does not exist (never granted, revoked or
	// expired).
	ErrLeaseNotFound = errors.New("lease not found")
	// ErrTooManyLeases: a grant, or a set with a ttl, would exceed MaxLeases.
	ErrTooManyLeases = errors.New("too many leases")
	// ErrNoTTL: a touch of a key that has neither a ttl nor a lease.
	ErrNoTTL = errors.New("key has no ttl or lease")
)

// validTTL reports whether ms is within MinTTL..MaxTTL.
func validTTL(ms uint64) bool {
	return ms >= uint64(MinTTL.Milliseconds()) && ms <= uint64(MaxTTL.Milliseconds())
}

// ValidTTL reports whether d is a TTL a key or lease may have: whole
// milliseconds from MinTTL to MaxTTL.
func ValidTTL(d time.Duration) bool {
	return d%time.Millisecond == 0 && d >= MinTTL && d <= MaxTTL
}

func (o Op) isLease() bool {
	return o >= OpLeaseGrant && o <= OpLeaseExpire
}

// checkLease enforces what each lease op needs.
func (c *Command) checkLease() error {
	if c.HasCAS || c.Value != "" || c.NodeID != "" || c.HTTPAddr != "" {
		return fmt.Errorf("%w: %s takes no value, compare index or node", ErrMalformedCommand, c.Op)
	}
	if len(c.RequestID) > MaxRequestIDBytes {
		return fmt.Errorf("%w: request id of %d bytes", ErrMalformedCommand, len(c.RequestID))
	}
	bad := false
	switch c.Op {
	case OpLeaseGrant:
		bad = !validTTL(c.TTLMillis) || c.Lease != 0 || c.Key != "" || len(c.Leases) > 0
	case OpLeaseKeepAlive, OpLeaseRevoke:
		bad = c.Lease == 0 || c.TTLMillis != 0 || c.Key != "" || len(c.Leases) > 0
	case OpTouch:
		bad = c.Key == "" || c.Lease != 0 || c.TTLMillis != 0 || len(c.Leases) > 0
	case OpLeaseCheckpoint, OpLeaseExpire:
		bad = len(c.Leases) == 0 || c.Lease != 0 || c.TTLMillis != 0 || c.Key != "" || c.RequestID != ""
	}
	if bad {
		return fmt.Errorf("%w: %s with the wrong fields", ErrMalformedCommand, c.Op)
	}
	return nil
}

func decodeLeaseRefs(b []byte) ([]LeaseRef, error) {
	bad := fmt.Errorf("%w: lease list", ErrMalformedCommand)
	n, w := binary.Uvarint(b)
	if w <= 0 || n == 0 || n > MaxLeasesPerCommand {
		return nil, bad
	}
	b = b[w:]
	refs := make([]LeaseRef, n)
	for i := range refs {
		for _, dst := range []*uint64{&refs[i].ID, &refs[i].Refreshed, &refs[i].RemainingMillis} {
			v, w := binary.Uvarint(b)
			if w <= 0 {
				return nil, bad
			}
			*dst, b = v, b[w:]
		}
		if refs[i].ID == 0 {
			return nil, bad
		}
	}
	if len(b) != 0 {
		return nil, bad
	}
	return refs, nil
}

// leaseItem is one lease as the FSM keeps it: values only, so the tree
// clones copy-on-write with the key tree.
type leaseItem struct {
	id        uint64
	ttl       uint64 // ms, as granted (or as the key's last set)
	refreshed uint64 // index of the grant or last keepalive
	remaining uint64 // ms left as of index since
	since     uint64 // index of the refresh or the last checkpoint
	// ofKey: the lease of one TTL key (PUT ?ttl), dropped with the key.
	ofKey bool
}

// attachItem is one key attached to a lease; ordered by lease, then key.
type attachItem struct {
	id  uint64
	key string
}

func leaseLess(a, b leaseItem) bool { return a.id < b.id }

func attachLess(a, b attachItem) bool {
	if a.id != b.id {
		return a.id < b.id
	}
	return a.key < b.key
}

func newLeaseTree() *btree.BTreeG[leaseItem]   { return btree.NewG(btreeDegree, leaseLess) }
func newAttachTree() *btree.BTreeG[attachItem] { return btree.NewG(btreeDegree, attachLess) }

// newKeyLeaseTree orders attachments by key alone (a key is on at most one
// lease), so a prefix's leased keys can be found in order.
func newKeyLeaseTree() *btree.BTreeG[attachItem] {
	return btree.NewG(btreeDegree, func(a, b attachItem) bool { return a.key < b.key })
}

// leaseOf is the lease key is attached to.
func (f *FSM) leaseOf(key string) (uint64, bool) {
	a, ok := f.keyLease.Get(attachItem{key: key})
	return a.id, ok
}

// Lease is a lease as this replica has applied it.
type Lease struct {
	ID  uint64
	TTL time.Duration // as granted
	// Refreshed is the index of the grant or last keepalive; Since the
	// index at which Remaining was recorded (that refresh or the last
	// checkpoint). The time left now is at most Remaining; the Tracker
	// knows it better.
	Refreshed, Since uint64
	Remaining        time.Duration
	// OfKey: the lease of one TTL key (PUT ?ttl), not one granted.
	OfKey bool
	// Keys lists attached keys in order, at most the limit asked for;
	// KeyCount is how many there are.
	Keys     []string
	KeyCount int
}

func (l leaseItem) public() Lease {
	return Lease{
		ID: l.id, TTL: time.Duration(l.ttl) * time.Millisecond, Refreshed: l.refreshed, Since: l.since,
		Remaining: time.Duration(l.remaining) * time.Millisecond, OfKey: l.ofKey,
	}
}

// Lease returns lease id with at most maxKeys of its keys (in key order).
func (f *FSM) Lease(id uint64, maxKeys int) (Lease, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	l, ok := f.leases.Get(leaseItem{id: id})
	if !ok {
		return Lease{}, false
	}
	out := l.public()
	f.attach.AscendGreaterOrEqual(attachItem{id: id}, func(a attachItem) bool {
		if a.id != id {
			return false
		}
		if len(out.Keys) < maxKeys {
			out.Keys = append(out.Keys, a.key)
		}
		out.KeyCount++
		return true
	})
	return out, true
}

// KeyLease returns the id of the lease key is attached to, if any.
func (f *FSM) KeyLease(key string) (uint64, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.leaseOf(key)
}

// LeaseCount is the number of leases, key leases included.
func (f *FSM) LeaseCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.leases.Len()
}

// scanLeases calls fn for every lease in id order, under the read lock.
func (f *FSM) scanLeases(fn func(Lease)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	f.leases.Ascend(func(l leaseItem) bool {
		fn(l.public())
		return true
	})
}

// --- Apply side; the caller holds f.mu. ---

// checkSetLease refuses, before anything changes, a set whose lease does
// not exist or whose ttl would add a lease beyond MaxLeases.
func (f *FSM) checkSetLease(cmd *Command) error {
	switch {
	case cmd.Lease != 0:
		if !f.leases.Has(leaseItem{id: cmd.Lease}) {
			return ErrLeaseNotFound
		}
	case cmd.TTLMillis != 0:
		if id, ok := f.leaseOf(cmd.Key); ok {
			if l, _ := f.leases.Get(leaseItem{id: id}); l.ofKey {
				return nil // refreshed in place
			}
		}
		if f.leases.Len() >= MaxLeases {
			return ErrTooManyLeases
		}
	}
	return nil
}

// bindSetLease runs after a set of cmd.Key at index: a set with a ttl
// gives the key its own lease (refreshing the one it has), a set with a
// lease attaches it, and a plain set leaves the key without either (as a
// put without a lease does in etcd).
func (f *FSM) bindSetLease(index uint64, cmd *Command) {
	if cmd.TTLMillis != 0 {
		if id, ok := f.leaseOf(cmd.Key); ok {
			if l, _ := f.leases.Get(leaseItem{id: id}); l.ofKey {
				l.ttl, l.refreshed, l.remaining, l.since = cmd.TTLMillis, index, cmd.TTLMillis, index
				f.leases.ReplaceOrInsert(l)
				return
			}
		}
		f.detachKey(cmd.Key)
		f.leases.ReplaceOrInsert(leaseItem{id: index, ttl: cmd.TTLMillis, refreshed: index, remaining: cmd.TTLMillis, since: index, ofKey: true})
		f.attachKey(index, cmd.Key)
		return
	}
	if cmd.Lease != 0 {
		if id, ok := f.leaseOf(cmd.Key); ok && id == cmd.Lease {
			return
		}
		f.detachKey(cmd.Key)
		f.attachKey(cmd.Lease, cmd.Key)
		return
	}
	f.detachKey(cmd.Key)
}

func (f *FSM) attachKey(id uint64, key string) {
	f.attach.ReplaceOrInsert(attachItem{id: id, key: key})
	f.keyLease.ReplaceOrInsert(attachItem{id: id, key: key})
}

// detachKey runs when key is deleted or set without its lease: it leaves
// its lease, and a key lease goes with it.
func (f *FSM) detachKey(key string) {
	id, ok := f.leaseOf(key)
	if !ok {
		return
	}
	f.keyLease.Delete(attachItem{key: key})
	f.attach.Delete(attachItem{id: id, key: key})
	if l, ok := f.leases.Get(leaseItem{id: id}); ok && l.ofKey {
		f.leases.Delete(l)
	}
}

// grantID is index, or, if a restored lease already has that id, the
// highest id plus one: a function of the state, so every replica agrees.
func (f *FSM) grantID(index uint64) uint64 {
	if !f.leases.Has(leaseItem{id: index}) {
		return index
	}
	max, _ := f.leases.Max()
	return max.id + 1
}

// applyLease applies the lease ops.
func (f *FSM) applyLease(index uint64, cmd *Command, res *Result) {
	switch cmd.Op {
	case OpLeaseGrant:
		if f.leases.Len() >= MaxLeases {
			res.Err = ErrTooManyLeases
			return
		}
		id := f.grantID(index)
		f.leases.ReplaceOrInsert(leaseItem{id: id, ttl: cmd.TTLMillis, refreshed: index, remaining: cmd.TTLMillis, since: index})
		res.Current = id
	case OpLeaseKeepAlive:
		f.refreshLease(index, cmd.Lease, res)
	case OpTouch:
		id, ok := f.leaseOf(cmd.Key)
		switch {
		case ok:
			f.refreshLease(index, id, res)
		case f.tree.Has(probe(cmd.Key)):
			res.Err = ErrNoTTL
		default:
			res.Err = ErrKeyNotFound
		}
	case OpLeaseRevoke:
		l, ok := f.leases.Get(leaseItem{id: cmd.Lease})
		if !ok {
			res.Err = ErrLeaseNotFound
			return
		}
		res.Current = f.dropLease(index, l, false)
	case OpLeaseCheckpoint:
		for _, r := range cmd.Leases {
			l, ok := f.leases.Get(leaseItem{id: r.ID})
			if !ok || l.refreshed != r.Refreshed || r.RemainingMillis > l.remaining {
				continue // gone, refreshed since, or not a decrease
			}
			l.remaining, l.since = r.RemainingMillis, index
			f.leases.ReplaceOrInsert(l)
		}
	case OpLeaseExpire:
		for _, r := range cmd.Leases {
			l, ok := f.leases.Get(leaseItem{id: r.ID})
			if !ok || l.refreshed != r.Refreshed {
				continue // gone, or refreshed after the leader decided
			}
			res.Current += f.dropLease(index, l, true)
		}
	}
}

// refreshLease restarts lease id's full TTL at index; Result.Current is
// the TTL in milliseconds.
func (f *FSM) refreshLease(index, id uint64, res *Result) {
	l, ok := f.leases.Get(leaseItem{id: id})
	if !ok {
		res.Err = ErrLeaseNotFound
		return
	}
	l.refreshed, l.remaining, l.since = index, l.ttl, index
	f.leases.ReplaceOrInsert(l)
	res.Current = l.ttl
}

// dropLease deletes lease l and its keys, in key order, and returns how
// many keys it deleted: one change event per key, expire for an expiry,
// delete for a revoke.
func (f *FSM) dropLease(index uint64, l leaseItem, expired bool) uint64 {
	f.leases.Delete(l)
	var n uint64
	batch := make([]attachItem, 0, deleteBatch)
	for {
		batch = batch[:0]
		f.attach.AscendGreaterOrEqual(attachItem{id: l.id}, func(a attachItem) bool {
			if a.id != l.id {
				return false
			}
			batch = append(batch, a)
			return len(batch) < deleteBatch
		})
		for _, a := range batch {
			f.attach.Delete(a)
			f.keyLease.Delete(attachItem{key: a.key})
			if old, ok := f.tree.Delete(probe(a.key)); ok {
				f.bytes -= int64(len(old.kv))
				n++
				if expired {
					f.emitExpire(index, old)
				} else {
					f.emitDelete(index, old)
				}
			}
		}
		if len(batch) < deleteBatch {
			return n
		}
	}
}

// detachAll runs when every key is deleted at once: no key is attached
// any more, and the key leases go with their keys; granted leases stay.
func (f *FSM) detachAll() {
	if f.attach.Len() == 0 {
		return
	}
	f.attach.Clear(false)
	f.keyLease.Clear(false)
	var drop []leaseItem
	f.leases.Ascend(func(l leaseItem) bool {
		if l.ofKey {
			drop = append(drop, l)
		}
		return true
	})
	for _, l := range drop {
		f.leases.Delete(l)
	}
}

// detachPrefix runs after every key under prefix was deleted: each leased
// key under it leaves its lease (key leases go too), in key order.
func (f *FSM) detachPrefix(prefix string) {
	var keys []string
	f.keyLease.AscendGreaterOrEqual(attachItem{key: prefix}, func(a attachItem) bool {
		if !strings.HasPrefix(a.key, prefix) {
			return false
		}
		keys = append(keys, a.key)
		return true
	})
	for _, k := range keys {
		f.detachKey(k)
	}
}

// txnDetach runs after a transaction's branch was applied: a put leaves
// the key without a lease (as a plain set does), a delete or a
// delete_prefix detaches what it deleted, in the branch's order.
func (f *FSM) txnDetach(branch []TxnOp) {
	if f.keyLease.Len() == 0 {
		return
	}
	for _, o := range branch {
		switch o.Kind {
		case TxnPut, TxnDelete:
			f.detachKey(o.Key)
		case TxnDeletePrefix:
			f.detachPrefix(o.Key)
		}
	}
}
