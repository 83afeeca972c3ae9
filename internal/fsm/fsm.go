// Package fsm is raftkv's deterministic key-value state machine: the part of
// the system that hashicorp/raft replicates. It decodes log commands, applies
// them to an ordered in-memory tree, and writes and reads snapshots.
//
// Apply depends only on the log entry and the current state: no clock, no
// randomness, no map iteration, no I/O. See DESIGN.md for the why.
package fsm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/google/btree"
	"github.com/hashicorp/raft"
)

// Outcomes of commands that were applied but changed nothing.
var (
	// ErrKeyNotFound: reading or deleting an absent key.
	ErrKeyNotFound = errors.New("key not found")
	// ErrCASFailed: the key's ModIndex did not match the compare index.
	ErrCASFailed = errors.New("compare failed")
	// ErrIdempotencyKeyReused: the command's request id was remembered
	// for a different request (another op, key, value or compare index;
	// see requestDigest). Nothing was applied or replayed.
	ErrIdempotencyKeyReused = errors.New("idempotency key reused for a different request")
)

// RequestWindow is how many log entries an idempotency key is remembered
// for. Eviction counts log indexes, never time, so every replica forgets
// the same keys at the same entry; memory is bounded by the window.
const RequestWindow = 1 << 16

// Entry is one key with its value and the Raft indexes that created and
// last modified it. Entries are values: a returned Entry never changes.
type Entry struct {
	Key         string
	Value       string
	CreateIndex uint64
	ModIndex    uint64
}

// Result is what Apply returns for each command, delivered to the proposer
// through raft's ApplyFuture.Response.
type Result struct {
	Index uint64 // the log index the command was applied at
	Err   error  // nil, ErrKeyNotFound, ErrCASFailed, ErrIdempotencyKeyReused, ErrQuotaExceeded or ErrMalformedCommand
	// Current is the key's ModIndex (0: absent) when a compare failed,
	// and for OpDeletePrefix the number of keys it deleted. It is the one
	// number an outcome carries through forwarding and idempotent replay.
	Current uint64
	// Replayed: a command with the same request id was applied before;
	// this is that command's outcome and nothing was applied now.
	Replayed bool
	// Txn is an OpTxn's outcome (nil otherwise, and on ErrQuotaExceeded).
	Txn *TxnResult
	// DataBytes and Quota are the state's data bytes and the entry's
	// quota when Err is ErrQuotaExceeded.
	DataBytes int64
	Quota     uint64
}

// Stats summarises the state, cheaply.
type Stats struct {
	Keys         int
	Bytes        int64 // sum of key and value lengths
	AppliedIndex uint64
}

// btreeDegree trades node size against depth; 32 keeps nodes near a few KiB.
const btreeDegree = 32

// item is how an entry is stored in the tree: key and value share one
// string, so each key costs one allocation and one string header. At a
// million keys that is the difference between about 2× and 1.7× the raw
// bytes.
type item struct {
	kv          string // key, then value
	klen        uint32
	createIndex uint64
	modIndex    uint64
}

func newItem(key, value string, create, mod uint64) item {
	return item{kv: key + value, klen: uint32(len(key)), createIndex: create, modIndex: mod}
}

// probe is a lookup key for the tree; it allocates nothing.
func probe(key string) item { return item{kv: key, klen: uint32(len(key))} }

func (it item) key() string   { return it.kv[:it.klen] }
func (it item) value() string { return it.kv[it.klen:] }

func (it item) entry() Entry {
	return Entry{Key: it.key(), Value: it.value(), CreateIndex: it.createIndex, ModIndex: it.modIndex}
}

func itemLess(a, b item) bool { return a.key() < b.key() }

// FSM implements raft.BatchingFSM. Apply runs on raft's single FSM
// goroutine; reads come concurrently from HTTP handlers.
type FSM struct {
	mu    sync.RWMutex
	tree  *btree.BTreeG[item]
	bytes int64
	nodes map[string]string // node id -> advertised HTTP address
	// promote lists, ascending and without duplicates, the learners
	// waiting to be promoted to voters (OpMarkPromotion).
	promote []string
	waiters []waiter // readers waiting for an applied index
	// requests remembers outcomes of recent commands that carried a
	// request id; requestOrder holds the same ids in apply order, for
	// eviction by log index.
	requests     map[string]requestRecord
	requestOrder []string
	requestHead  int // requestOrder[:requestHead] are evicted
	// hist is the change history (history.go); cmu guards changed, the
	// channel Changed hands out, closed when Apply adds events.
	hist    history
	cmu     sync.Mutex
	changed chan struct{}
	// Leases (lease.go): by id, the keys attached to each, and each
	// attached key's lease (looked up, never iterated).
	leases   *btree.BTreeG[leaseItem]
	attach   *btree.BTreeG[attachItem]
	keyLease *btree.BTreeG[attachItem] // by key: each attached key and its lease

	// applied is the index of the last log entry this FSM has seen,
	// command or configuration. Read without the lock on the hot read path.
	applied atomic.Uint64
}

// requestRecord is a remembered outcome, compact enough to snapshot.
// Adding a field: set it in recordOf, use it in result, and write and
// read it in snapshot.go under a new snapshot version (DESIGN.md,
// "Request records").
type requestRecord struct {
	Index   uint64
	Outcome uint8 // outcomeOK, outcomeNotFound or outcomeCASFailed
	Current uint64
	// Digest is requestDigest of the command (digestSize bytes), or ""
	// for a record restored from a snapshot before version 4, which
	// matches any request.
	Digest string
	// Txn is a transaction's outcome: which branch ran and its writes'
	// results (nil for other commands).
	Txn *txnRecord
}

// txnRecord is what a replay of a transaction answers: the branch that
// ran and, per operation, its kind and its write result (Deleted); reads
// are not kept.
type txnRecord struct {
	Succeeded bool
	Ops       []txnOpRecord
}

type txnOpRecord struct {
	Kind    TxnOpKind
	Deleted uint64
}

// digestSize is the length of a request digest: the first 16 bytes of a
// SHA-256 (2^-64 odds that two different requests under one key collide
// even after 2^32 of them).
const digestSize = 16

// requestDigest is what a request means, for telling a retry from a
// reused idempotency key: the SHA-256 (first digestSize bytes) of the
// command's encoding after its version byte, without its request id, so
// every field the client chose (op, key, value, compare index, and any
// field added later) counts, deterministically. A field the leader fills
// in by itself (a deadline, say) would have to be left out, or a retry
// would not match its original: the quota (MAX_DATA_BYTES, stamped by the
// leader) is.
func requestDigest(cmd *Command) string {
	c := *cmd
	c.RequestID, c.Quota = "", 0
	enc := c.Encode(make([]byte, 0, c.EncodedSize()))
	sum := sha256.Sum256(enc[1:]) // not the version byte: a new command version keeps the digests
	return string(sum[:digestSize])
}

// matches reports whether a command with digest d is the remembered one.
func (rec requestRecord) matches(d string) bool {
	return rec.Digest == "" || rec.Digest == d
}

const (
	outcomeOK uint8 = iota
	outcomeNotFound
	outcomeCASFailed
	// Lease outcomes (snapshot version 6 on).
	outcomeLeaseNotFound
	outcomeTooManyLeases
	outcomeNoTTL
)

// leaseOutcomes maps the lease errors to their record outcomes.
var leaseOutcomes = []struct {
	err     error
	outcome uint8
}{
	{ErrLeaseNotFound, outcomeLeaseNotFound},
	{ErrTooManyLeases, outcomeTooManyLeases},
	{ErrNoTTL, outcomeNoTTL},
}

func recordOf(r *Result, digest string) requestRecord {
	rec := requestRecord{Index: r.Index, Current: r.Current, Digest: digest}
	if r.Txn != nil {
		rec.Txn = &txnRecord{Succeeded: r.Txn.Succeeded, Ops: make([]txnOpRecord, len(r.Txn.Ops))}
		for i, o := range r.Txn.Ops {
			rec.Txn.Ops[i] = txnOpRecord{Kind: o.Kind, Deleted: o.Deleted}
		}
	}
	switch {
	case errors.Is(r.Err, ErrKeyNotFound):
		rec.Outcome = outcomeNotFound
	case errors.Is(r.Err, ErrCASFailed):
		rec.Outcome = outcomeCASFailed
	}
	for _, lo := range leaseOutcomes {
		if errors.Is(r.Err, lo.err) {
			rec.Outcome = lo.outcome
		}
	}
	return rec
}

func (rec requestRecord) result() *Result {
	r := &Result{Index: rec.Index, Current: rec.Current, Replayed: true}
	if rec.Txn != nil {
		r.Txn = &TxnResult{Succeeded: rec.Txn.Succeeded, Ops: make([]OpResult, len(rec.Txn.Ops))}
		for i, o := range rec.Txn.Ops {
			r.Txn.Ops[i] = OpResult{Kind: o.Kind, Deleted: o.Deleted, NotKept: !o.Kind.writes()}
		}
	}
	switch rec.Outcome {
	case outcomeNotFound:
		r.Err = ErrKeyNotFound
	case outcomeCASFailed:
		r.Err = ErrCASFailed
	}
	for _, lo := range leaseOutcomes {
		if rec.Outcome == lo.outcome {
			r.Err = lo.err
		}
	}
	return r
}

type waiter struct {
	index uint64
	ch    chan struct{}
}

var _ raft.BatchingFSM = (*FSM)(nil)

// New returns an empty state machine.
func New() *FSM {
	return &FSM{
		tree:     btree.NewG(btreeDegree, itemLess),
		nodes:    map[string]string{},
		requests: map[string]requestRecord{},
		hist:     newHistory(DefaultHistoryLimits),
		leases:   newLeaseTree(),
		attach:   newAttachTree(),
		keyLease: newKeyLeaseTree(),
	}
}

// Apply applies a single log entry. raft calls ApplyBatch instead, since
// FSM is a BatchingFSM; Apply exists to satisfy raft.FSM.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies committed entries in order under one lock. raft hands
// it command and configuration entries; configuration entries change no
// state here but advance the applied index, so that a read waiting for the
// commit index is not left behind by a membership change.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	f.mu.Lock()
	added := f.hist.added
	for i, l := range logs {
		if l.Type == raft.LogCommand {
			out[i] = f.applyCommand(l.Index, l.Data)
		}
	}
	if n := len(logs); n > 0 {
		f.applied.Store(logs[n-1].Index)
	}
	f.releaseWaitersLocked()
	changed := f.hist.added != added
	f.mu.Unlock()
	if changed {
		f.notifyChanged()
	}
	return out
}

func (f *FSM) applyCommand(index uint64, data []byte) *Result {
	f.evictRequests(index)
	cmd, err := DecodeCommand(data)
	if err != nil {
		return &Result{Index: index, Err: err}
	}
	var digest string
	if cmd.RequestID != "" {
		digest = requestDigest(&cmd)
		if rec, ok := f.requests[cmd.RequestID]; ok {
			if !rec.matches(digest) {
				return &Result{Index: index, Err: ErrIdempotencyKeyReused}
			}
			return rec.result()
		}
	}
	res := f.applyDecoded(index, &cmd)
	// A quota refusal is not remembered: it changed nothing, and a retry
	// once data has shrunk should apply.
	if cmd.RequestID != "" && !errors.Is(res.Err, ErrQuotaExceeded) {
		f.requests[cmd.RequestID] = recordOf(res, digest)
		f.requestOrder = append(f.requestOrder, cmd.RequestID)
	}
	return res
}

// evictRequests forgets request ids applied RequestWindow or more entries
// before index.
func (f *FSM) evictRequests(index uint64) {
	for f.requestHead < len(f.requestOrder) {
		id := f.requestOrder[f.requestHead]
		if f.requests[id].Index+RequestWindow > index {
			break
		}
		delete(f.requests, id)
		f.requestOrder[f.requestHead] = ""
		f.requestHead++
	}
	// Compact once the evicted prefix dominates, keeping eviction O(1)
	// amortised.
	if f.requestHead > 1024 && f.requestHead*2 > len(f.requestOrder) {
		f.requestOrder = append(f.requestOrder[:0], f.requestOrder[f.requestHead:]...)
		f.requestHead = 0
	}
}

// requestLog lists remembered requests in apply order, for snapshots.
func (f *FSM) requestLog() []requestEntry {
	out := make([]requestEntry, 0, len(f.requestOrder)-f.requestHead)
	for _, id := range f.requestOrder[f.requestHead:] {
		out = append(out, requestEntry{ID: id, requestRecord: f.requests[id]})
	}
	return out
}

type requestEntry struct {
	ID string
	requestRecord
}

// modIndex is the key's ModIndex, or 0 when absent: what CAS compares.
func (f *FSM) modIndex(key string) uint64 {
	it, _ := f.tree.Get(probe(key))
	return it.modIndex
}

func (f *FSM) applyDecoded(index uint64, cmd *Command) *Result {
	res := &Result{Index: index}
	if cmd.HasCAS {
		if cur := f.modIndex(cmd.Key); cur != cmd.CAS {
			res.Err, res.Current = ErrCASFailed, cur
			return res
		}
	}
	switch cmd.Op {
	case OpTxn:
		return f.applyTxn(index, cmd)
	case OpSet:
		if err := f.checkSetLease(cmd); err != nil {
			res.Err = err
			return res
		}
		if cmd.Quota > 0 {
			after := f.bytes + int64(len(cmd.Key)+len(cmd.Value))
			if old, ok := f.tree.Get(probe(cmd.Key)); ok {
				after -= int64(len(old.kv))
			}
			if over(cmd, f.bytes, after) {
				res.Err, res.DataBytes, res.Quota = ErrQuotaExceeded, f.bytes, cmd.Quota
				return res
			}
		}
		f.bytes += f.putItem(f.tree, index, cmd.Key, cmd.Value)
		f.bindSetLease(index, cmd)
	case OpDelete:
		old, ok := f.tree.Delete(probe(cmd.Key))
		if !ok {
			res.Err = ErrKeyNotFound
			break
		}
		f.bytes -= int64(len(old.kv))
		f.emitDelete(index, old)
		f.detachKey(cmd.Key)
	case OpRegisterNode:
		f.nodes[cmd.NodeID] = cmd.HTTPAddr
	case OpForgetNode:
		delete(f.nodes, cmd.NodeID)
	case OpDeletePrefix:
		res.Current = f.deletePrefixLocked(index, cmd.Key)
	case OpMarkPromotion:
		if i, found := slices.BinarySearch(f.promote, cmd.NodeID); !found {
			f.promote = slices.Insert(f.promote, i, cmd.NodeID)
		}
	case OpDropPromotion:
		if i, found := slices.BinarySearch(f.promote, cmd.NodeID); found {
			f.promote = slices.Delete(f.promote, i, i+1)
		}
	default:
		if cmd.Op.isLease() {
			f.applyLease(index, cmd, res)
		}
	}
	return res
}

// Get returns the entry stored under key from this replica's local state.
func (f *FSM) Get(key string) (Entry, bool) {
	f.mu.RLock()
	it, ok := f.tree.Get(probe(key))
	f.mu.RUnlock()
	if !ok {
		return Entry{}, false
	}
	return it.entry(), true
}

// NodeHTTPAddr returns the HTTP address node id registered, if any.
func (f *FSM) NodeHTTPAddr(id string) (string, bool) {
	f.mu.RLock()
	addr, ok := f.nodes[id]
	f.mu.RUnlock()
	return addr, ok
}

// Nodes returns a copy of the node id -> HTTP address table.
func (f *FSM) Nodes() map[string]string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[string]string, len(f.nodes))
	for id, addr := range f.nodes {
		out[id] = addr
	}
	return out
}

// PendingPromotions lists, sorted, the learners marked for promotion
// (OpMarkPromotion) and not yet dropped.
func (f *FSM) PendingPromotions() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.Clone(f.promote)
}

// PromotionPending reports whether id is marked for promotion.
func (f *FSM) PromotionPending(id string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, found := slices.BinarySearch(f.promote, id)
	return found
}

// AppliedIndex is the index of the last log entry applied to this replica.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// Stats reports key count, data size and applied index.
func (f *FSM) Stats() Stats {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return Stats{Keys: f.tree.Len(), Bytes: f.bytes, AppliedIndex: f.applied.Load()}
}

// WaitApplied blocks until this replica has applied index, or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	if f.applied.Load() >= index {
		return nil
	}
	f.mu.Lock()
	if f.applied.Load() >= index {
		f.mu.Unlock()
		return nil
	}
	w := waiter{index: index, ch: make(chan struct{})}
	f.waiters = append(f.waiters, w)
	f.mu.Unlock()

	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		f.mu.Lock()
		for i := range f.waiters {
			if f.waiters[i].ch == w.ch {
				f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
				break
			}
		}
		f.mu.Unlock()
		return fmt.Errorf("wait for applied index %d (at %d): %w", index, f.applied.Load(), ctx.Err())
	}
}

func (f *FSM) releaseWaitersLocked() {
	if len(f.waiters) == 0 {
		return
	}
	applied := f.applied.Load()
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if w.index <= applied {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	clear(f.waiters[len(kept):])
	f.waiters = kept
}

// Snapshot captures the state in O(1): the tree is cloned copy-on-write, so
// Apply continues at once while Persist streams the frozen copy.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	nodes := make(map[string]string, len(f.nodes))
	for id, addr := range f.nodes {
		nodes[id] = addr
	}
	return &snapshot{
		applied:  f.applied.Load(),
		tree:     f.tree.Clone(),
		nodes:    nodes,
		promote:  slices.Clone(f.promote),
		requests: f.requestLog(),
		floor:    f.hist.floor,
		events:   f.hist.events(),
		leases:   f.leases.Clone(),
		attach:   f.attach.Clone(),
	}, nil
}

// Restore replaces the whole state with the snapshot read from rc. The
// current state is left untouched unless the snapshot reads back intact.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.mu.Lock()
	f.tree = st.tree
	f.bytes = st.bytes
	f.nodes = st.nodes
	f.promote = st.promote
	f.requests = make(map[string]requestRecord, len(st.requests))
	f.requestOrder = make([]string, 0, len(st.requests))
	f.requestHead = 0
	for _, r := range st.requests {
		f.requests[r.ID] = r.requestRecord
		f.requestOrder = append(f.requestOrder, r.ID)
	}
	f.hist.restore(st.floor, st.events)
	f.leases, f.attach, f.keyLease = st.leases, st.attach, st.keyLease
	f.applied.Store(st.applied)
	f.releaseWaitersLocked()
	f.mu.Unlock()
	f.notifyChanged()
	return nil
}

type snapshot struct {
	applied  uint64
	tree     *btree.BTreeG[item]
	nodes    map[string]string
	promote  []string // sorted
	requests []requestEntry
	floor    Pos     // the history's floor
	events   []Event // the history, oldest first
	leases   *btree.BTreeG[leaseItem]
	attach   *btree.BTreeG[attachItem]
}

// Persist runs concurrently with Apply; it only reads the frozen clone.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := writeSnapshot(sink, s); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
