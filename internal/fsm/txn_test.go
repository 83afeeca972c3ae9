package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

func txnLog(index uint64, t Txn) *raft.Log {
	return cmdLog(index, Command{Op: OpTxn, Txn: &t})
}

func applyOne(t *testing.T, f *FSM, l *raft.Log) *Result {
	t.Helper()
	res, ok := f.Apply(l).(*Result)
	if !ok {
		t.Fatalf("Apply(%d) returned %T", l.Index, f.Apply)
	}
	return res
}

// txnState: a=1 (create 1, mod 3), b=x (create 2, mod 2); applied 3.
func txnState(t *testing.T) *FSM {
	t.Helper()
	f := New()
	applyOne(t, f, setLog(1, "a", "0"))
	applyOne(t, f, setLog(2, "b", "x"))
	applyOne(t, f, setLog(3, "a", "1"))
	return f
}

func TestTxnCompares(t *testing.T) {
	cases := []struct {
		name string
		c    Compare
		want bool
	}{
		{"value =", Compare{Key: "a", Target: TargetValue, Op: CmpEqual, Value: "1"}, true},
		{"value = other", Compare{Key: "a", Target: TargetValue, Op: CmpEqual, Value: "2"}, false},
		{"value !=", Compare{Key: "a", Target: TargetValue, Op: CmpNotEqual, Value: "2"}, true},
		{"value != same", Compare{Key: "a", Target: TargetValue, Op: CmpNotEqual, Value: "1"}, false},
		{"value <", Compare{Key: "a", Target: TargetValue, Op: CmpLess, Value: "2"}, true},
		{"value < bytewise", Compare{Key: "a", Target: TargetValue, Op: CmpLess, Value: "10"}, true},
		{"value < not", Compare{Key: "a", Target: TargetValue, Op: CmpLess, Value: "0"}, false},
		{"value >", Compare{Key: "a", Target: TargetValue, Op: CmpGreater, Value: "0"}, true},
		{"value > not", Compare{Key: "a", Target: TargetValue, Op: CmpGreater, Value: "1"}, false},
		{"value of absent key is never true (=)", Compare{Key: "zz", Target: TargetValue, Op: CmpEqual}, false},
		{"value of absent key is never true (!=)", Compare{Key: "zz", Target: TargetValue, Op: CmpNotEqual, Value: "v"}, false},
		{"mod =", Compare{Key: "a", Target: TargetModIndex, Op: CmpEqual, Index: 3}, true},
		{"mod = stale", Compare{Key: "a", Target: TargetModIndex, Op: CmpEqual, Index: 1}, false},
		{"mod !=", Compare{Key: "a", Target: TargetModIndex, Op: CmpNotEqual, Index: 1}, true},
		{"mod <", Compare{Key: "a", Target: TargetModIndex, Op: CmpLess, Index: 4}, true},
		{"mod < not", Compare{Key: "a", Target: TargetModIndex, Op: CmpLess, Index: 3}, false},
		{"mod >", Compare{Key: "a", Target: TargetModIndex, Op: CmpGreater, Index: 2}, true},
		{"mod > not", Compare{Key: "a", Target: TargetModIndex, Op: CmpGreater, Index: 3}, false},
		{"create =", Compare{Key: "a", Target: TargetCreateIndex, Op: CmpEqual, Index: 1}, true},
		{"create = mod is not create", Compare{Key: "a", Target: TargetCreateIndex, Op: CmpEqual, Index: 3}, false},
		{"create !=", Compare{Key: "b", Target: TargetCreateIndex, Op: CmpNotEqual, Index: 0}, true},
		{"create <", Compare{Key: "a", Target: TargetCreateIndex, Op: CmpLess, Index: 2}, true},
		{"create >", Compare{Key: "b", Target: TargetCreateIndex, Op: CmpGreater, Index: 1}, true},
		{"create > not", Compare{Key: "b", Target: TargetCreateIndex, Op: CmpGreater, Index: 2}, false},
		{"absent: create_index = 0", Compare{Key: "zz", Target: TargetCreateIndex, Op: CmpEqual}, true},
		{"absent: mod_index = 0", Compare{Key: "zz", Target: TargetModIndex, Op: CmpEqual}, true},
		{"present: create_index = 0 is false", Compare{Key: "a", Target: TargetCreateIndex, Op: CmpEqual}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := txnState(t)
			res := applyOne(t, f, txnLog(4, Txn{
				Compare: []Compare{tc.c},
				Success: []TxnOp{{Kind: TxnPut, Key: "s", Value: "1"}},
				Failure: []TxnOp{{Kind: TxnPut, Key: "f", Value: "1"}},
			}))
			if res.Err != nil || res.Txn == nil {
				t.Fatalf("result %+v", res)
			}
			if res.Txn.Succeeded != tc.want {
				t.Fatalf("succeeded = %v, want %v", res.Txn.Succeeded, tc.want)
			}
			_, s := f.Get("s")
			_, fl := f.Get("f")
			if s != tc.want || fl == tc.want {
				t.Fatalf("success branch applied %v, failure branch applied %v; want only the %v branch", s, fl, tc.want)
			}
		})
	}
}

func TestTxnAllComparesMustHold(t *testing.T) {
	f := txnState(t)
	res := applyOne(t, f, txnLog(4, Txn{
		Compare: []Compare{
			{Key: "a", Target: TargetValue, Op: CmpEqual, Value: "1"},
			{Key: "b", Target: TargetValue, Op: CmpEqual, Value: "not x"},
		},
		Success: []TxnOp{{Kind: TxnPut, Key: "s", Value: "1"}},
	}))
	if res.Txn.Succeeded || len(res.Txn.Ops) != 0 {
		t.Fatalf("one false compare must fail the txn: %+v", res.Txn)
	}
	if _, ok := f.Get("s"); ok {
		t.Fatal("success branch applied")
	}
	if f.AppliedIndex() != 4 {
		t.Fatalf("applied %d, want 4", f.AppliedIndex())
	}
}

func TestTxnResultsInOrder(t *testing.T) {
	f := txnState(t)
	applyOne(t, f, setLog(4, "p/1", "one"))
	applyOne(t, f, setLog(5, "p/2", "two"))
	applyOne(t, f, setLog(6, "q/1", "q"))
	res := applyOne(t, f, txnLog(7, Txn{
		Compare: []Compare{{Key: "a", Target: TargetModIndex, Op: CmpEqual, Index: 3}},
		Success: []TxnOp{
			{Kind: TxnPut, Key: "a", Value: "60"},
			{Kind: TxnGet, Key: "a"},       // sees the put before it
			{Kind: TxnDelete, Key: "b"},    // present
			{Kind: TxnDelete, Key: "gone"}, // absent: not an error
			{Kind: TxnList, Key: "p/", Limit: 1},
			{Kind: TxnDeletePrefix, Key: "p/"},
			{Kind: TxnList, Key: "p/"},
			{Kind: TxnGet, Key: "b"},
		},
	}))
	if res.Err != nil || !res.Txn.Succeeded || res.Index != 7 {
		t.Fatalf("result %+v", res)
	}
	want := []OpResult{
		{Kind: TxnPut, Key: "a"},
		{Kind: TxnGet, Key: "a", Found: true, Entry: Entry{Key: "a", Value: "60", CreateIndex: 1, ModIndex: 7}},
		{Kind: TxnDelete, Key: "b", Deleted: 1},
		{Kind: TxnDelete, Key: "gone"},
		{Kind: TxnList, Key: "p/", Items: []Entry{{Key: "p/1", Value: "one", CreateIndex: 4, ModIndex: 4}}, More: true},
		{Kind: TxnDeletePrefix, Key: "p/", Deleted: 2},
		{Kind: TxnList, Key: "p/"},
		{Kind: TxnGet, Key: "b"},
	}
	if !reflect.DeepEqual(res.Txn.Ops, want) {
		t.Fatalf("results\n got %+v\nwant %+v", res.Txn.Ops, want)
	}
	st := f.Stats()
	if st.Keys != 2 || st.Bytes != int64(len("a60")+len("q/1q")) {
		t.Fatalf("stats %+v after the txn", st)
	}
}

func TestTxnFailureBranchRuns(t *testing.T) {
	f := txnState(t)
	res := applyOne(t, f, txnLog(4, Txn{
		Compare: []Compare{{Key: "a", Target: TargetModIndex, Op: CmpEqual, Index: 1}},
		Success: []TxnOp{{Kind: TxnPut, Key: "a", Value: "x"}},
		Failure: []TxnOp{{Kind: TxnGet, Key: "a"}, {Kind: TxnPut, Key: "log", Value: "lost"}},
	}))
	if res.Txn.Succeeded || len(res.Txn.Ops) != 2 || !res.Txn.Ops[0].Found || res.Txn.Ops[0].Entry.Value != "1" {
		t.Fatalf("failure branch results %+v", res.Txn)
	}
	if e, _ := f.Get("a"); e.Value != "1" {
		t.Fatal("success branch applied")
	}
	if e, ok := f.Get("log"); !ok || e.ModIndex != 4 {
		t.Fatal("failure branch's put not applied")
	}
}

// A put's cas is an extra compare: when it fails, the success branch
// applies none of its operations, even those before the put.
func TestTxnPutCASIsACompare(t *testing.T) {
	f := txnState(t)
	before := persist(t, f)
	res := applyOne(t, f, txnLog(4, Txn{
		Success: []TxnOp{
			{Kind: TxnPut, Key: "first", Value: "1"},
			{Kind: TxnDelete, Key: "b"},
			{Kind: TxnPut, Key: "a", Value: "2", HasCAS: true, CAS: 1}, // a's mod is 3
		},
	}))
	if res.Err != nil || res.Txn.Succeeded || len(res.Txn.Ops) != 0 {
		t.Fatalf("result %+v %+v", res, res.Txn)
	}
	after := persist(t, f)
	// Only the applied index moved.
	if _, ok := f.Get("first"); ok {
		t.Fatal("an operation before the failed cas was applied")
	}
	if _, ok := f.Get("b"); !ok {
		t.Fatal("b was deleted")
	}
	if len(before) != len(after) {
		t.Fatalf("snapshot changed size: %d -> %d", len(before), len(after))
	}
	res = applyOne(t, f, txnLog(5, Txn{Success: []TxnOp{{Kind: TxnPut, Key: "a", Value: "2", HasCAS: true, CAS: 3}}}))
	if !res.Txn.Succeeded {
		t.Fatal("matching cas did not succeed")
	}
}

// The quota is checked on the branch's net effect, after it ran on a
// clone: over the quota, nothing of the branch is applied.
func TestTxnQuotaAllOrNone(t *testing.T) {
	f := New()
	applyOne(t, f, setLog(1, "k", "0123456789")) // 11 bytes
	quota := uint64(20)
	grow := Txn{Success: []TxnOp{
		{Kind: TxnDelete, Key: "k"},
		{Kind: TxnPut, Key: "a", Value: "0123456789"}, // 11
		{Kind: TxnPut, Key: "b", Value: "012345678"},  // 10: 21 in all
		{Kind: TxnGet, Key: "a"},
	}}
	res := applyOne(t, f, cmdLog(2, Command{Op: OpTxn, Txn: &grow, Quota: quota}))
	if !errors.Is(res.Err, ErrQuotaExceeded) || res.DataBytes != 11 || res.Quota != quota || res.Txn != nil {
		t.Fatalf("result %+v", res)
	}
	if _, ok := f.Get("k"); !ok {
		t.Fatal("the delete before the growth was applied")
	}
	if _, ok := f.Get("a"); ok {
		t.Fatal("a put of a refused txn was applied")
	}
	// At the boundary: exactly the quota is allowed.
	grow.Success[2].Value = "01234567" // 20 in all
	res = applyOne(t, f, cmdLog(3, Command{Op: OpTxn, Txn: &grow, Quota: quota}))
	if res.Err != nil || !res.Txn.Succeeded || f.Stats().Bytes != 20 {
		t.Fatalf("result %+v, bytes %d", res, f.Stats().Bytes)
	}
}

func TestSetQuota(t *testing.T) {
	f := New()
	const quota = 10
	set := func(i uint64, k, v string) *Result {
		return applyOne(t, f, cmdLog(i, Command{Op: OpSet, Key: k, Value: v, Quota: quota}))
	}
	if res := set(1, "k", "123456789"); res.Err != nil { // 10: at the quota
		t.Fatalf("at the quota: %v", res.Err)
	}
	res := set(2, "j", "") // 11: over
	if !errors.Is(res.Err, ErrQuotaExceeded) || res.DataBytes != 10 || res.Quota != quota {
		t.Fatalf("over the quota: %+v", res)
	}
	if _, ok := f.Get("j"); ok {
		t.Fatal("refused set applied")
	}
	// Writes that do not grow the state still succeed at the quota.
	if res := set(3, "k", "987654321"); res.Err != nil {
		t.Fatalf("same-size overwrite refused: %v", res.Err)
	}
	if res := set(4, "k", "1"); res.Err != nil {
		t.Fatalf("shrinking overwrite refused: %v", res.Err)
	}
	// Healed: below the quota, growth works again.
	if res := set(5, "j", "1"); res.Err != nil {
		t.Fatalf("after shrinking: %v", res.Err)
	}
	// Quota 0 is off; a lower quota than the data still lets deletes and
	// shrinking writes through.
	if res := applyOne(t, f, cmdLog(6, Command{Op: OpSet, Key: "big", Value: string(make([]byte, 100))})); res.Err != nil {
		t.Fatalf("no quota: %v", res.Err)
	}
	if res := applyOne(t, f, delLog(7, "big")); res.Err != nil {
		t.Fatalf("delete: %v", res.Err)
	}
}

// A quota refusal is not remembered: the retry applies once there is room.
func TestQuotaRefusalNotRemembered(t *testing.T) {
	f := New()
	applyOne(t, f, setLog(1, "fill", "123456789"))
	cmd := Command{Op: OpSet, Key: "k", Value: "v", Quota: 10, RequestID: "r1"}
	if res := applyOne(t, f, cmdLog(2, cmd)); !errors.Is(res.Err, ErrQuotaExceeded) {
		t.Fatalf("want quota refusal, got %+v", res)
	}
	applyOne(t, f, delLog(3, "fill"))
	res := applyOne(t, f, cmdLog(4, cmd))
	if res.Err != nil || res.Replayed || res.Index != 4 {
		t.Fatalf("retry after room was made: %+v", res)
	}
	if res := applyOne(t, f, cmdLog(5, cmd)); !res.Replayed || res.Index != 4 {
		t.Fatalf("second retry must replay: %+v", res)
	}
}

func TestTxnReplay(t *testing.T) {
	f := txnState(t)
	txn := Txn{
		Compare: []Compare{{Key: "a", Target: TargetValue, Op: CmpEqual, Value: "1"}},
		Success: []TxnOp{
			{Kind: TxnPut, Key: "a", Value: "2"},
			{Kind: TxnDelete, Key: "b"},
			{Kind: TxnGet, Key: "a"},
		},
	}
	cmd := Command{Op: OpTxn, Txn: &txn, RequestID: "t1"}
	first := applyOne(t, f, cmdLog(4, cmd))
	if !first.Txn.Succeeded || first.Txn.Ops[1].Deleted != 1 {
		t.Fatalf("first %+v", first.Txn)
	}
	again := applyOne(t, f, cmdLog(5, cmd))
	if !again.Replayed || again.Index != 4 || !again.Txn.Succeeded {
		t.Fatalf("replay %+v", again)
	}
	want := []OpResult{{Kind: TxnPut}, {Kind: TxnDelete, Deleted: 1}, {Kind: TxnGet, NotKept: true}}
	if !reflect.DeepEqual(again.Txn.Ops, want) {
		t.Fatalf("replayed results %+v, want %+v", again.Txn.Ops, want)
	}
	// Not re-run: a's value is what the first run left (its compare would
	// now be false, and a re-run would have taken the failure branch).
	if e, _ := f.Get("a"); e.ModIndex != 4 {
		t.Fatalf("a re-applied: %+v", e)
	}
}

// The same log gives byte-identical snapshots on two replicas, whatever
// the transactions did.
func TestTxnDeterministicSnapshots(t *testing.T) {
	logs := []*raft.Log{
		setLog(1, "acct/a", "100"),
		setLog(2, "acct/b", "0"),
		txnLog(3, Txn{
			Compare: []Compare{{Key: "acct/a", Target: TargetModIndex, Op: CmpEqual, Index: 1}},
			Success: []TxnOp{{Kind: TxnPut, Key: "acct/a", Value: "60"}, {Kind: TxnPut, Key: "acct/b", Value: "40"}},
			Failure: []TxnOp{{Kind: TxnGet, Key: "acct/a"}},
		}),
		txnLog(4, Txn{
			Compare: []Compare{{Key: "acct/a", Target: TargetModIndex, Op: CmpEqual, Index: 1}},
			Success: []TxnOp{{Kind: TxnPut, Key: "acct/a", Value: "0"}},
			Failure: []TxnOp{{Kind: TxnDeletePrefix, Key: "acct/b"}, {Kind: TxnPut, Key: "audit", Value: "x"}},
		}),
		cmdLog(5, Command{Op: OpTxn, RequestID: "r", Quota: 1, Txn: &Txn{Success: []TxnOp{{Kind: TxnPut, Key: "big", Value: "v"}}}}),
	}
	a, b := New(), New()
	for _, l := range logs {
		applyOne(t, a, l)
	}
	for _, l := range logs {
		applyOne(t, b, l)
	}
	sa, sb := persist(t, a), persist(t, b)
	if !bytes.Equal(sa, sb) {
		t.Fatal("two replicas of the same log wrote different snapshots")
	}
	want := []Entry{{Key: "acct/a", Value: "60", CreateIndex: 1, ModIndex: 3}, {Key: "audit", Value: "x", CreateIndex: 4, ModIndex: 4}}
	if got := stateOf(restoreNew(t, sa)).Entries; !reflect.DeepEqual(got, want) {
		t.Fatalf("restored entries %+v, want %+v", got, want)
	}
}

func TestTxnEncodingRoundTrip(t *testing.T) {
	txn := &Txn{
		Compare: []Compare{
			{Key: "a", Target: TargetValue, Op: CmpLess, Value: "v\x00\xff"},
			{Key: "b", Target: TargetCreateIndex, Op: CmpEqual},
			{Key: "c", Target: TargetModIndex, Op: CmpGreater, Index: 1 << 40},
		},
		Success: []TxnOp{
			{Kind: TxnPut, Key: "a", Value: "x", HasCAS: true, CAS: 0},
			{Kind: TxnList, Limit: 7},
			{Kind: TxnDeletePrefix, Key: "p/"},
		},
		Failure: []TxnOp{{Kind: TxnGet, Key: "a"}, {Kind: TxnDelete, Key: "b"}},
	}
	cmd := Command{Op: OpTxn, Txn: txn, RequestID: "id", Quota: 2 << 30}
	b := cmd.Encode(nil)
	if len(b) > cmd.EncodedSize() {
		t.Fatalf("encoded %d bytes, EncodedSize %d", len(b), cmd.EncodedSize())
	}
	got, err := DecodeCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cmd) {
		t.Fatalf("round trip\n got %+v %+v\nwant %+v %+v", got, got.Txn, cmd, cmd.Txn)
	}
}

func TestTxnDecodeRefuses(t *testing.T) {
	enc := func(t Txn) []byte { return t.encode(nil) }
	good := enc(Txn{Success: []TxnOp{{Kind: TxnGet, Key: "a"}}})
	tooMany := Txn{}
	for range MaxTxnOps + 1 {
		tooMany.Success = append(tooMany.Success, TxnOp{Kind: TxnGet, Key: "a"})
	}
	cases := map[string][]byte{
		"empty":                 {},
		"version 2":             append([]byte{2}, good[1:]...),
		"unknown section":       {txnVersion, 4, 0},
		"sections out of order": append(enc(Txn{Failure: []TxnOp{{Kind: TxnGet, Key: "a"}}}), good[1:]...),
		"record length":         {txnVersion, secSuccess, 9, ofKey},
		"unknown op field":      {txnVersion, secSuccess, 8, ofKey, 1, 'a', ofKind, 1, byte(TxnGet), 9, 0},
		"unknown compare field": {txnVersion, secCompare, 3, 9, 1, 'x'},
		"fields out of order":   {txnVersion, secSuccess, 6, ofKind, 1, byte(TxnGet), ofKey, 1, 'a'},
		"unknown kind":          enc(Txn{Success: []TxnOp{{Kind: 9, Key: "a"}}}),
		"unknown target":        enc(Txn{Compare: []Compare{{Key: "a", Target: 9, Op: CmpEqual}}}),
		"unknown compare op":    enc(Txn{Compare: []Compare{{Key: "a", Target: TargetModIndex, Op: 9}}}),
		"compare without key":   enc(Txn{Compare: []Compare{{Target: TargetModIndex, Op: CmpEqual}}}),
		"value on index target": enc(Txn{Compare: []Compare{{Key: "a", Target: TargetModIndex, Op: CmpEqual, Value: "1"}}}),
		"index on value target": enc(Txn{Compare: []Compare{{Key: "a", Target: TargetValue, Op: CmpEqual, Index: 1}}}),
		"put without key":       enc(Txn{Success: []TxnOp{{Kind: TxnPut, Value: "v"}}}),
		"delete_prefix empty":   enc(Txn{Success: []TxnOp{{Kind: TxnDeletePrefix}}}),
		"cas in failure":        enc(Txn{Failure: []TxnOp{{Kind: TxnPut, Key: "a", HasCAS: true}}}),
		"cas on delete":         enc(Txn{Success: []TxnOp{{Kind: TxnDelete, Key: "a", HasCAS: true}}}),
		"value on get":          enc(Txn{Success: []TxnOp{{Kind: TxnGet, Key: "a", Value: "v"}}}),
		"limit on get":          enc(Txn{Success: []TxnOp{{Kind: TxnGet, Key: "a", Limit: 1}}}),
		"limit over max":        enc(Txn{Success: []TxnOp{{Kind: TxnList, Limit: MaxTxnListLimit + 1}}}),
		"too many":              enc(tooMany),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeTxn(body); err == nil {
				t.Fatalf("decodeTxn(%x) accepted", body)
			}
			b := append([]byte{CommandVersion, byte(OpTxn), tagTxn}, byte(len(body)))
			if _, err := decodeNoPanic(t, append(b, body...)); !errors.Is(err, ErrMalformedCommand) {
				t.Fatalf("DecodeCommand: %v", err)
			}
		})
	}
	if _, err := decodeTxn(good); err != nil {
		t.Fatalf("good: %v", err)
	}
	// Commands: a txn field on another op, a quota on a delete, OpTxn
	// without a transaction, an unknown tag after the txn.
	for name, c := range map[string]Command{
		"txn on set":       {Op: OpSet, Key: "a", Txn: &Txn{}},
		"quota on delete":  {Op: OpDelete, Key: "a", Quota: 1},
		"txn without body": {Op: OpTxn},
		"txn with key":     {Op: OpTxn, Key: "a", Txn: &Txn{}},
	} {
		if _, err := DecodeCommand(c.Encode(nil)); !errors.Is(err, ErrMalformedCommand) {
			t.Errorf("%s: DecodeCommand = %v", name, err)
		}
	}
	withTag := append((&Command{Op: OpTxn, Txn: &Txn{}}).Encode(nil), 9, 0)
	if _, err := DecodeCommand(withTag); !errors.Is(err, ErrMalformedCommand) {
		t.Errorf("unknown tag 9: %v", err)
	}
	// A malformed txn entry is a result, never a panic, and changes nothing.
	f := txnState(t)
	res := applyOne(t, f, rawLog(4, append([]byte{CommandVersion, byte(OpTxn), tagTxn, 3}, txnVersion, 4, 0)))
	if !errors.Is(res.Err, ErrMalformedCommand) || f.AppliedIndex() != 4 {
		t.Fatalf("malformed: %+v", res)
	}
}

func FuzzDecodeTxn(f *testing.F) {
	f.Add((&Command{Op: OpTxn, Txn: &Txn{
		Compare: []Compare{{Key: "a", Target: TargetModIndex, Op: CmpEqual, Index: 3}},
		Success: []TxnOp{{Kind: TxnPut, Key: "a", Value: "v", HasCAS: true, CAS: 3}, {Kind: TxnList, Key: "p", Limit: 2}},
		Failure: []TxnOp{{Kind: TxnGet, Key: "a"}},
	}}).Encode(nil))
	f.Add([]byte{CommandVersion, byte(OpTxn), tagTxn, 1, txnVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeNoPanic(t, b)
		if err != nil {
			if !errors.Is(err, ErrMalformedCommand) {
				t.Fatalf("error %v is not ErrMalformedCommand", err)
			}
			return
		}
		// What decodes re-encodes to something that decodes alike, and
		// applies without panicking.
		again, err := DecodeCommand(c.Encode(nil))
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("re-encode: %v\n%+v\n%+v", err, again, c)
		}
		fsm := New()
		fsm.Apply(setLog(1, "a", "v"))
		fsm.Apply(rawLog(2, b))
	})
}

// A remembered transaction survives a snapshot (format 5): the restored
// replica replays it as the original did, byte-identically.
func TestTxnReplayAfterRestore(t *testing.T) {
	f := txnState(t)
	txn := Txn{
		Compare: []Compare{{Key: "a", Target: TargetValue, Op: CmpEqual, Value: "1"}},
		Success: []TxnOp{{Kind: TxnDeletePrefix, Key: "b"}, {Kind: TxnGet, Key: "a"}, {Kind: TxnPut, Key: "c", Value: "3"}},
	}
	cmd := Command{Op: OpTxn, Txn: &txn, RequestID: "t1"}
	applyOne(t, f, cmdLog(4, cmd))
	applyOne(t, f, cmdLog(5, Command{Op: OpSet, Key: "s", Value: "v", RequestID: "s1"}))
	snap := persist(t, f)
	if snap[len(snapshotMagic)] < 5 { // 5 added transaction outcomes
		t.Fatalf("written as version %d", snap[len(snapshotMagic)])
	}
	g := restoreNew(t, snap)
	if again := persist(t, g); !bytes.Equal(again, snap) {
		t.Fatal("restored replica writes a different snapshot")
	}
	for name, r := range map[string]*FSM{"original": f, "restored": g} {
		res := applyOne(t, r, cmdLog(6, cmd))
		want := &TxnResult{Succeeded: true, Ops: []OpResult{{Kind: TxnDeletePrefix, Deleted: 1}, {Kind: TxnGet, NotKept: true}, {Kind: TxnPut}}}
		if !res.Replayed || res.Index != 4 || !reflect.DeepEqual(res.Txn, want) {
			t.Fatalf("%s: replay %+v %+v", name, res, res.Txn)
		}
		if res := applyOne(t, r, cmdLog(7, Command{Op: OpSet, Key: "s", Value: "v", RequestID: "s1"})); !res.Replayed || res.Txn != nil {
			t.Fatalf("%s: set replay %+v", name, res)
		}
	}
}

// The idempotency digest covers the transaction but not the quota the
// leader stamps: a retry under another leader's quota replays, another
// transaction under the same key is refused.
func TestTxnDigest(t *testing.T) {
	f := txnState(t)
	txn := Txn{Success: []TxnOp{{Kind: TxnPut, Key: "n", Value: "1"}}}
	applyOne(t, f, cmdLog(4, Command{Op: OpTxn, Txn: &txn, RequestID: "t", Quota: 100}))
	if res := applyOne(t, f, cmdLog(5, Command{Op: OpTxn, Txn: &txn, RequestID: "t", Quota: 200})); !res.Replayed || res.Index != 4 {
		t.Fatalf("retry with another quota: %+v", res)
	}
	other := Txn{Success: []TxnOp{{Kind: TxnPut, Key: "n", Value: "2"}}}
	if res := applyOne(t, f, cmdLog(6, Command{Op: OpTxn, Txn: &other, RequestID: "t"})); !errors.Is(res.Err, ErrIdempotencyKeyReused) {
		t.Fatalf("another txn under the key: %+v", res)
	}
	if e, _ := f.Get("n"); e.Value != "1" {
		t.Fatalf("n = %+v", e)
	}
}

func TestTxnRecordCorrupt(t *testing.T) {
	for name, rec := range map[string]string{
		"outcome 2":    "\x02",
		"unknown kind": "\x01\x09\x00",
		"truncated":    "\x01\x01",
		"bad uvarint":  "\x01\x02\x80",
		"too many ops": "\x01" + string(bytes.Repeat([]byte{1, 0}, MaxTxnOps+1)),
	} {
		b := buildSnapRequests(snapshotVersion, 1, []requestEntry{{ID: "r", requestRecord: requestRecord{Index: 1}}}, nil)
		// Replace the empty transaction string (the byte before 'E') with rec.
		at := len(b) - 5 - 1
		if b[at] != 0 {
			t.Fatalf("layout: byte %d is %d", at, b[at])
		}
		body := append(binary.AppendUvarint(append([]byte{}, b[:at]...), uint64(len(rec))), rec...)
		sum := crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli))
		b = binary.BigEndian.AppendUint32(append(body, 'E'), sum)
		err := New().Restore(readCloser(b))
		if name == "valid" {
			if err != nil {
				t.Errorf("a valid record: Restore = %v", err)
			}
			continue
		}
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Errorf("%s: Restore = %v, want ErrCorruptSnapshot", name, err)
		}
	}
}

// A branch refused by the quota leaves every key exactly as it was, on
// both paths: undoing puts and deletes (overwrites, re-puts and deletes
// of keys the branch created), and dropping the clone of a branch with a
// delete_prefix.
func TestTxnQuotaUndo(t *testing.T) {
	for _, withPrefix := range []bool{false, true} {
		f := New()
		applyOne(t, f, setLog(1, "a", "1"))
		applyOne(t, f, setLog(2, "b", "2"))
		applyOne(t, f, setLog(3, "p/1", "x"))
		applyOne(t, f, setLog(4, "a", "11"))
		before := stateOf(f)
		ops := []TxnOp{
			{Kind: TxnPut, Key: "a", Value: "changed"},
			{Kind: TxnDelete, Key: "b"},
			{Kind: TxnPut, Key: "c", Value: "new"},
			{Kind: TxnPut, Key: "a", Value: "again"},
			{Kind: TxnDelete, Key: "c"},
			{Kind: TxnPut, Key: "b", Value: "back"},
			{Kind: TxnPut, Key: "big", Value: string(make([]byte, 100))},
		}
		if withPrefix {
			ops = append([]TxnOp{{Kind: TxnDeletePrefix, Key: "p/"}}, ops...)
		}
		res := applyOne(t, f, cmdLog(5, Command{Op: OpTxn, Quota: 50, Txn: &Txn{Success: ops}}))
		if !errors.Is(res.Err, ErrQuotaExceeded) {
			t.Fatalf("prefix %v: %+v", withPrefix, res)
		}
		before.Stats.AppliedIndex = 5
		requireState(t, stateOf(f), before)
		// Without the big put the same branch applies.
		res = applyOne(t, f, cmdLog(6, Command{Op: OpTxn, Quota: 50, Txn: &Txn{Success: ops[:len(ops)-1]}}))
		if res.Err != nil || !res.Txn.Succeeded {
			t.Fatalf("prefix %v: %+v", withPrefix, res)
		}
		if e, _ := f.Get("a"); e.Value != "again" || e.CreateIndex != 1 || e.ModIndex != 6 {
			t.Fatalf("prefix %v: a = %+v", withPrefix, e)
		}
		if _, ok := f.Get("p/1"); ok == withPrefix {
			t.Fatalf("prefix %v: p/1 present %v", withPrefix, ok)
		}
	}
}

// The lists of one transaction return at most MaxTxnListBytes together,
// each at least one key, with More when they stop early.
func TestTxnListBytes(t *testing.T) {
	f := New()
	big := string(make([]byte, 1<<20))
	for i := range 6 {
		applyOne(t, f, setLog(uint64(i+1), fmt.Sprintf("big/%d", i), big))
	}
	res := applyOne(t, f, txnLog(7, Txn{Success: []TxnOp{
		{Kind: TxnList, Key: "big/"},
		{Kind: TxnList, Key: "big/"},
		{Kind: TxnGet, Key: "big/0"},
	}}))
	first, second := res.Txn.Ops[0], res.Txn.Ops[1]
	if len(first.Items) != 3 || !first.More {
		t.Fatalf("first list: %d items, more %v; want 3 (the 4th would pass 4 MiB), more", len(first.Items), first.More)
	}
	if len(second.Items) != 1 || !second.More {
		t.Fatalf("second list: %d items, more %v; want 1 (the budget is spent), more", len(second.Items), second.More)
	}
	if !res.Txn.Ops[2].Found {
		t.Fatal("get cut")
	}
}
