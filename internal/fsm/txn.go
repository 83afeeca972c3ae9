package fsm

// Transactions (OpTxn): compares, then one of two branches of operations,
// applied all or none as one log entry. The encoding is in DESIGN.md
// ("Transaction encoding").

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/btree"
)

// treeT is the state's ordered tree.
type treeT = *btree.BTreeG[item]

// MaxTxnOps caps compares plus operations of both branches in one
// transaction: 128, etcd's --max-txn-ops default (server/embed/config.go,
// DefaultMaxTxnOps) and Consul's /v1/txn limit (api-docs/txn.mdx, "Up to
// 128 operations").
const MaxTxnOps = 128

// MaxTxnListLimit caps the items one list operation inside a transaction
// returns; DefaultTxnListLimit is its limit when none is given.
const (
	MaxTxnListLimit     = 1000
	DefaultTxnListLimit = 100
)

// MaxTxnListBytes bounds the key and value bytes the lists of one
// transaction return together (4 MiB, the HTTP body cap of a
// transaction): a list stops early, with More, once the lists before it
// and itself reach it, though each returns at least one key. Gets are
// not cut (each is one value, at most MAX_VALUE_BYTES).
const MaxTxnListBytes = 4 << 20

// ErrQuotaExceeded: applying the command would take the data (key and value
// bytes) over the quota carried in the entry; nothing was applied.
var ErrQuotaExceeded = errors.New("quota exceeded")

// CompareTarget is what a compare reads of a key.
type CompareTarget uint8

// Compare targets. Part of the log format: never renumber them.
const (
	TargetValue       CompareTarget = 1 // the value's bytes (absent key: every compare is false)
	TargetModIndex    CompareTarget = 2 // ModIndex, 0 when absent
	TargetCreateIndex CompareTarget = 3 // CreateIndex, 0 when absent
)

func (t CompareTarget) String() string {
	switch t {
	case TargetValue:
		return "value"
	case TargetModIndex:
		return "mod_index"
	case TargetCreateIndex:
		return "create_index"
	}
	return fmt.Sprintf("target(%d)", uint8(t))
}

// CompareOp is how a compare relates the target to its operand.
type CompareOp uint8

// Compare operators. Part of the log format: never renumber them.
const (
	CmpEqual    CompareOp = 1 // =
	CmpNotEqual CompareOp = 2 // !=
	CmpLess     CompareOp = 3 // <  (values: bytewise)
	CmpGreater  CompareOp = 4 // >
)

func (o CompareOp) String() string {
	switch o {
	case CmpEqual:
		return "="
	case CmpNotEqual:
		return "!="
	case CmpLess:
		return "<"
	case CmpGreater:
		return ">"
	}
	return fmt.Sprintf("cmp(%d)", uint8(o))
}

// Compare is one condition of a transaction: Target of Key, Op, operand.
// The operand is Value for TargetValue and Index for the index targets.
type Compare struct {
	Key    string
	Target CompareTarget
	Op     CompareOp
	Value  string
	Index  uint64
}

// TxnOpKind names an operation inside a transaction.
type TxnOpKind uint8

// Transaction operations. Part of the log format: never renumber them.
const (
	TxnPut          TxnOpKind = 1 // Key = Value (HasCAS: see Txn)
	TxnDelete       TxnOpKind = 2 // remove Key; Deleted says whether it was there
	TxnDeletePrefix TxnOpKind = 3 // remove every key starting with Key (non-empty)
	TxnGet          TxnOpKind = 4 // read Key
	TxnList         TxnOpKind = 5 // read up to Limit keys starting with Key ("" = all)
)

func (k TxnOpKind) String() string {
	switch k {
	case TxnPut:
		return "put"
	case TxnDelete:
		return "delete"
	case TxnDeletePrefix:
		return "delete_prefix"
	case TxnGet:
		return "get"
	case TxnList:
		return "list"
	}
	return fmt.Sprintf("txnop(%d)", uint8(k))
}

func (k TxnOpKind) writes() bool { return k == TxnPut || k == TxnDelete || k == TxnDeletePrefix }

// TxnOp is one operation of a branch.
type TxnOp struct {
	Kind  TxnOpKind
	Key   string // the key, or the prefix of delete_prefix and list
	Value string // put
	// HasCAS (put, success branch only) is an extra compare: the put's key
	// must have ModIndex CAS (0: be absent), exactly as if the compare
	// {Key, mod_index, =, CAS} were in Compare.
	HasCAS bool
	CAS    uint64
	Limit  uint64 // list; 0 means DefaultTxnListLimit
}

// Txn is a transaction: if every compare holds, Success runs, else
// Failure; each in order, each operation seeing the effects of the ones
// before it, all or none.
type Txn struct {
	Compare []Compare
	Success []TxnOp
	Failure []TxnOp
}

// TxnResult is what a transaction did.
type TxnResult struct {
	Succeeded bool       // the compares held and Success ran
	Ops       []OpResult // one per operation of the branch that ran, in order
}

// OpResult is one operation's result. Which fields are meaningful depends
// on Kind: put has none beyond the transaction's index; delete has
// Deleted (0 or 1); delete_prefix has Deleted (the count); get has Found
// and Entry; list has Items and More.
type OpResult struct {
	Kind    TxnOpKind
	Key     string
	Deleted uint64
	Found   bool
	Entry   Entry
	Items   []Entry
	More    bool // list: more keys under the prefix than Limit
	// NotKept: a replayed transaction's read; reads are not remembered
	// (only writes' results are), so a replay carries no data for it.
	NotKept bool
}

// Encoding of a Txn (the tagTxn field of a command):
//
//	txnVersion byte
//	records: section byte, uvarint length, payload   (sections non-decreasing)
//	section 1: a compare, 2: a success op, 3: a failure op
//	payload: fields tag, uvarint length, bytes, tags strictly ascending,
//	         empty or zero fields left out
//	compare fields: 1 key, 2 target (1 byte), 3 op (1 byte), 4 value, 5 index (uvarint)
//	op fields:      1 key, 2 kind (1 byte), 3 value, 4 cas (uvarint; present = compare), 5 limit (uvarint)
const txnVersion = 1

const (
	secCompare = 1
	secSuccess = 2
	secFailure = 3
)

const (
	cfKey    = 1
	cfTarget = 2
	cfOp     = 3
	cfValue  = 4
	cfIndex  = 5

	ofKey   = 1
	ofKind  = 2
	ofValue = 3
	ofCAS   = 4
	ofLimit = 5
)

func appendUvarintField(dst []byte, tag byte, n uint64) []byte {
	var b [binary.MaxVarintLen64]byte
	w := binary.PutUvarint(b[:], n)
	dst = append(dst, tag, byte(w))
	return append(dst, b[:w]...)
}

func appendByteField(dst []byte, tag, v byte) []byte {
	return append(dst, tag, 1, v)
}

// encode appends t's encoding to dst.
func (t *Txn) encode(dst []byte) []byte {
	dst = append(dst, txnVersion)
	var p []byte
	record := func(sec byte) {
		dst = append(dst, sec)
		dst = binary.AppendUvarint(dst, uint64(len(p)))
		dst = append(dst, p...)
	}
	for _, c := range t.Compare {
		p = appendField(p[:0], cfKey, c.Key)
		p = appendByteField(p, cfTarget, byte(c.Target))
		p = appendByteField(p, cfOp, byte(c.Op))
		p = appendField(p, cfValue, c.Value)
		if c.Index != 0 {
			p = appendUvarintField(p, cfIndex, c.Index)
		}
		record(secCompare)
	}
	for sec, ops := range [][]TxnOp{secSuccess - 2: t.Success, secFailure - 2: t.Failure} {
		for _, o := range ops {
			p = appendField(p[:0], ofKey, o.Key)
			p = appendByteField(p, ofKind, byte(o.Kind))
			p = appendField(p, ofValue, o.Value)
			if o.HasCAS {
				p = appendUvarintField(p, ofCAS, o.CAS)
			}
			if o.Limit != 0 {
				p = appendUvarintField(p, ofLimit, o.Limit)
			}
			record(byte(sec + 2))
		}
	}
	return dst
}

// encodedSize bounds len(t.encode(nil)).
func (t *Txn) encodedSize() int {
	const perField = 2 + binary.MaxVarintLen64
	n := 1
	for _, c := range t.Compare {
		n += 1 + binary.MaxVarintLen64 + 5*perField + len(c.Key) + len(c.Value)
	}
	for _, ops := range [][]TxnOp{t.Success, t.Failure} {
		for _, o := range ops {
			n += 1 + binary.MaxVarintLen64 + 5*perField + len(o.Key) + len(o.Value)
		}
	}
	return n
}

// fields walks tagged fields in strictly ascending tag order, handing each
// to fn; what is malformed is an error, never a panic.
func fields(b []byte, fn func(tag byte, v []byte) error) error {
	var last byte
	for len(b) > 0 {
		tag := b[0]
		if tag <= last {
			return fmt.Errorf("field %d out of order", tag)
		}
		last = tag
		n, w := binary.Uvarint(b[1:])
		if w <= 0 || n > uint64(len(b)-1-w) {
			return fmt.Errorf("field %d length", tag)
		}
		start := 1 + w
		if err := fn(tag, b[start:start+int(n)]); err != nil {
			return err
		}
		b = b[start+int(n):]
	}
	return nil
}

func uvarintOf(v []byte, what string) (uint64, error) {
	n, w := binary.Uvarint(v)
	if w <= 0 || w != len(v) {
		return 0, fmt.Errorf("%s is not a uvarint", what)
	}
	return n, nil
}

func byteOf(v []byte, what string) (byte, error) {
	if len(v) != 1 {
		return 0, fmt.Errorf("%s of %d bytes", what, len(v))
	}
	return v[0], nil
}

// decodeTxn parses a Txn and checks it (checkTxn).
func decodeTxn(b []byte) (*Txn, error) {
	if len(b) == 0 || b[0] != txnVersion {
		return nil, fmt.Errorf("transaction version: this build reads %d", txnVersion)
	}
	b = b[1:]
	t := &Txn{}
	var lastSec byte
	count := 0
	for len(b) > 0 {
		sec := b[0]
		if sec < lastSec || sec < secCompare || sec > secFailure {
			return nil, fmt.Errorf("transaction section %d out of order or unknown", sec)
		}
		lastSec = sec
		n, w := binary.Uvarint(b[1:])
		if w <= 0 || n > uint64(len(b)-1-w) {
			return nil, errors.New("transaction record length")
		}
		payload := b[1+w : 1+w+int(n)]
		b = b[1+w+int(n):]
		if count++; count > MaxTxnOps {
			return nil, fmt.Errorf("more than %d compares and operations", MaxTxnOps)
		}
		var err error
		switch sec {
		case secCompare:
			var c Compare
			c, err = decodeCompare(payload)
			t.Compare = append(t.Compare, c)
		case secSuccess, secFailure:
			var o TxnOp
			o, err = decodeTxnOp(payload)
			if sec == secSuccess {
				t.Success = append(t.Success, o)
			} else {
				t.Failure = append(t.Failure, o)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return t, t.check()
}

func decodeCompare(p []byte) (Compare, error) {
	var c Compare
	err := fields(p, func(tag byte, v []byte) error {
		var err error
		var x byte
		switch tag {
		case cfKey:
			c.Key = string(v)
		case cfTarget:
			x, err = byteOf(v, "compare target")
			c.Target = CompareTarget(x)
		case cfOp:
			x, err = byteOf(v, "compare op")
			c.Op = CompareOp(x)
		case cfValue:
			c.Value = string(v)
		case cfIndex:
			c.Index, err = uvarintOf(v, "compare index")
		default:
			err = fmt.Errorf("unknown compare field %d", tag)
		}
		return err
	})
	return c, err
}

func decodeTxnOp(p []byte) (TxnOp, error) {
	var o TxnOp
	err := fields(p, func(tag byte, v []byte) error {
		var err error
		var x byte
		switch tag {
		case ofKey:
			o.Key = string(v)
		case ofKind:
			x, err = byteOf(v, "operation kind")
			o.Kind = TxnOpKind(x)
		case ofValue:
			o.Value = string(v)
		case ofCAS:
			o.CAS, err = uvarintOf(v, "cas")
			o.HasCAS = true
		case ofLimit:
			o.Limit, err = uvarintOf(v, "limit")
		default:
			err = fmt.Errorf("unknown operation field %d", tag)
		}
		return err
	})
	return o, err
}

// check enforces what Apply relies on; the HTTP layer checks the same
// (with its own words) before proposing.
func (t *Txn) check() error {
	if n := len(t.Compare) + len(t.Success) + len(t.Failure); n > MaxTxnOps {
		return fmt.Errorf("%d compares and operations, more than %d", n, MaxTxnOps)
	}
	for i, c := range t.Compare {
		if c.Key == "" {
			return fmt.Errorf("compare %d without key", i)
		}
		if c.Op < CmpEqual || c.Op > CmpGreater {
			return fmt.Errorf("compare %d: unknown op %d", i, uint8(c.Op))
		}
		switch c.Target {
		case TargetValue:
			if c.Index != 0 {
				return fmt.Errorf("compare %d: a value compare has no index operand", i)
			}
		case TargetModIndex, TargetCreateIndex:
			if c.Value != "" {
				return fmt.Errorf("compare %d: an index compare has no value operand", i)
			}
		default:
			return fmt.Errorf("compare %d: unknown target %d", i, uint8(c.Target))
		}
	}
	for _, br := range []struct {
		name string
		ops  []TxnOp
	}{{"success", t.Success}, {"failure", t.Failure}} {
		for i, o := range br.ops {
			if err := o.check(br.name == "success"); err != nil {
				return fmt.Errorf("%s operation %d (%s): %v", br.name, i, o.Kind, err)
			}
		}
	}
	return nil
}

func (o *TxnOp) check(success bool) error {
	switch o.Kind {
	case TxnPut, TxnDelete, TxnGet, TxnDeletePrefix:
		if o.Key == "" {
			return errors.New("empty key")
		}
	case TxnList:
	default:
		return fmt.Errorf("unknown kind %d", uint8(o.Kind))
	}
	if o.Value != "" && o.Kind != TxnPut {
		return errors.New("only put takes a value")
	}
	if o.HasCAS && (o.Kind != TxnPut || !success) {
		return errors.New("cas is taken only by a put in the success branch")
	}
	if o.Limit != 0 && (o.Kind != TxnList || o.Limit > MaxTxnListLimit) {
		return fmt.Errorf("limit is taken only by list, at most %d", MaxTxnListLimit)
	}
	return nil
}

// holds evaluates one compare against tree state.
func (f *FSM) holds(c *Compare) bool {
	it, found := f.tree.Get(probe(c.Key))
	if c.Target == TargetValue {
		if !found {
			return false
		}
		return cmpHolds(c.Op, compareStrings(it.value(), c.Value))
	}
	cur := it.modIndex // zero when absent
	if c.Target == TargetCreateIndex {
		cur = it.createIndex
	}
	switch {
	case cur < c.Index:
		return cmpHolds(c.Op, -1)
	case cur > c.Index:
		return cmpHolds(c.Op, 1)
	}
	return cmpHolds(c.Op, 0)
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpHolds(op CompareOp, c int) bool {
	switch op {
	case CmpEqual:
		return c == 0
	case CmpNotEqual:
		return c != 0
	case CmpLess:
		return c < 0
	case CmpGreater:
		return c > 0
	}
	return false
}

// applyTxn decides and runs a transaction. Compares (and success-branch
// cas) are evaluated first against the current state; the branch then
// runs, and stays only if the quota allows the result (else it is undone,
// or its clone dropped): all or none, in one step, under Apply's lock.
func (f *FSM) applyTxn(index uint64, cmd *Command) *Result {
	t := cmd.Txn
	res := &Result{Index: index, Txn: &TxnResult{Succeeded: true}}
	for i := range t.Compare {
		if !f.holds(&t.Compare[i]) {
			res.Txn.Succeeded = false
			break
		}
	}
	if res.Txn.Succeeded {
		for _, o := range t.Success {
			if o.HasCAS && f.modIndex(o.Key) != o.CAS {
				res.Txn.Succeeded = false
				break
			}
		}
	}
	branch := t.Success
	if !res.Txn.Succeeded {
		branch = t.Failure
	}
	// Only the quota can refuse a branch once it is chosen. Without a
	// quota the branch runs on the live tree. With one, put and delete are
	// undone from a log of what they replaced if the branch ends over the
	// quota; a branch with a delete_prefix runs on a copy-on-write clone
	// instead (its undo log would be as long as the prefix).
	tree, bytes := f.tree, f.bytes
	var undo []undoEntry
	track := false
	if cmd.Quota > 0 {
		track = true
		for _, o := range branch {
			if o.Kind == TxnDeletePrefix {
				tree, track = f.tree.Clone(), false
				break
			}
		}
	}
	res.Txn.Ops = make([]OpResult, len(branch))
	mark := f.hist.mark() // the branch's events go if it is undone
	var listed int64      // key and value bytes the lists returned so far
	for i, o := range branch {
		r := &res.Txn.Ops[i]
		r.Kind, r.Key = o.Kind, o.Key
		switch o.Kind {
		case TxnPut:
			if track {
				old, existed := tree.Get(probe(o.Key))
				undo = append(undo, undoEntry{key: o.Key, old: old, existed: existed})
			}
			bytes += f.putItem(tree, index, o.Key, o.Value)
		case TxnDelete:
			if old, ok := tree.Delete(probe(o.Key)); ok {
				bytes -= int64(len(old.kv))
				r.Deleted = 1
				f.emitDelete(index, old)
				if track {
					undo = append(undo, undoEntry{key: o.Key, old: old, existed: true})
				}
			}
		case TxnDeletePrefix:
			n, freed := f.deletePrefixTree(tree, index, o.Key)
			bytes -= freed
			r.Deleted = n
		case TxnGet:
			if it, ok := tree.Get(probe(o.Key)); ok {
				r.Found, r.Entry = true, it.entry()
			}
		case TxnList:
			limit := o.Limit
			if limit == 0 {
				limit = DefaultTxnListLimit
			}
			page := listTree(tree, index, ListQuery{Prefix: o.Key, Limit: int(limit), MaxBytes: max(MaxTxnListBytes-listed, 1)})
			r.Items, r.More = page.Items, page.More
			for _, e := range page.Items {
				listed += int64(len(e.Key) + len(e.Value))
			}
		}
	}
	if over(cmd, f.bytes, bytes) {
		// Undo in reverse order: each entry restores what its operation
		// found, so the tree ends as it was (a clone is simply dropped).
		for i := len(undo) - 1; i >= 0; i-- {
			if u := undo[i]; u.existed {
				tree.ReplaceOrInsert(u.old)
			} else {
				tree.Delete(probe(u.key))
			}
		}
		f.hist.rollback(mark)
		return &Result{Index: index, Err: ErrQuotaExceeded, DataBytes: f.bytes, Quota: cmd.Quota}
	}
	f.tree, f.bytes = tree, bytes
	f.txnDetach(branch)
	return res
}

// undoEntry is what a put or delete inside a transaction replaced: the
// item under key, or its absence.
type undoEntry struct {
	key     string
	old     item
	existed bool
}

// over reports whether going from before to after data bytes breaks the
// entry's quota: only growth is refused, and only past the quota.
func over(cmd *Command, before, after int64) bool {
	return cmd.Quota > 0 && after > before && after > int64(min(cmd.Quota, 1<<62))
}

// putItem stores key = value at index in tree, with its put event, and
// returns the change in data bytes.
func (f *FSM) putItem(tree treeT, index uint64, key, value string) int64 {
	create, prevMod := index, uint64(0)
	var delta int64
	if old, ok := tree.Get(probe(key)); ok {
		create, prevMod = old.createIndex, old.modIndex
		delta -= int64(len(old.kv))
	}
	it := newItem(key, value, create, index)
	tree.ReplaceOrInsert(it)
	f.emitPut(index, it, prevMod)
	return delta + int64(len(it.kv))
}

// encodeTxnRecord is a remembered transaction outcome as a snapshot's
// request record carries it (version 5): "" for no transaction, else a
// byte 0 or 1 (succeeded), then per operation its kind byte and its
// Deleted as a uvarint.
func encodeTxnRecord(rec *txnRecord) string {
	if rec == nil {
		return ""
	}
	b := make([]byte, 1, 1+len(rec.Ops)*2)
	if rec.Succeeded {
		b[0] = 1
	}
	for _, o := range rec.Ops {
		b = append(b, byte(o.Kind))
		b = binary.AppendUvarint(b, o.Deleted)
	}
	return string(b)
}

// decodeTxnRecord reads encodeTxnRecord's form; what does not parse is an
// error (the snapshot is corrupt), never a panic.
func decodeTxnRecord(s string) (*txnRecord, error) {
	if s == "" {
		return nil, nil
	}
	if s[0] > 1 {
		return nil, fmt.Errorf("transaction outcome %d", s[0])
	}
	rec := &txnRecord{Succeeded: s[0] == 1}
	b := []byte(s[1:])
	for len(b) > 0 {
		k := TxnOpKind(b[0])
		if k < TxnPut || k > TxnList {
			return nil, fmt.Errorf("transaction operation kind %d", b[0])
		}
		n, w := binary.Uvarint(b[1:])
		if w <= 0 {
			return nil, errors.New("transaction operation result")
		}
		if len(rec.Ops) == MaxTxnOps {
			return nil, fmt.Errorf("more than %d transaction operations", MaxTxnOps)
		}
		rec.Ops = append(rec.Ops, txnOpRecord{Kind: k, Deleted: n})
		b = b[1+w:]
	}
	return rec, nil
}
