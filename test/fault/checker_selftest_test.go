package fault

import (
	"math"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// These tests prove the checkers can fail: synthetic histories with a
// stale read, a lost write, a write answered "not applied" that applied,
// and a broken cas must be rejected, and a valid history with unknown
// outcomes must pass. They need no cluster.

const ms = int64(time.Millisecond)

func get(client int, key string, call, ret int64, value string, index uint64) *op {
	return &op{Client: client, Kind: opGet, Key: key, Call: call * ms, Return: ret * ms, Outcome: outcomeOK,
		Present: value != "", Out: value, Index: index}
}

func put(client int, key, value string, call, ret int64, index uint64) *op {
	return &op{Client: client, Kind: opPut, Key: key, Value: value, Call: call * ms, Return: ret * ms, Outcome: outcomeOK,
		Present: true, Index: index}
}

func lin(t *testing.T, ops ...*op) porcupine.CheckResult {
	t.Helper()
	res, _, _ := checkLinearizable(ops, 10*time.Second)
	return res
}

func TestCheckerAcceptsValidHistory(t *testing.T) {
	unknownPut := put(1, "a", "u", 30, 0, 0)
	unknownPut.Outcome, unknownPut.Present, unknownPut.Index = outcomeUnknown, false, 0
	failedPut := put(2, "a", "never", 31, 35, 0)
	failedPut.Outcome, failedPut.Status = outcomeFail, 503
	cas := &op{Client: 0, Kind: opCAS, Key: "a", Value: "y", HasCAS: true, CAS: 7, Call: 60 * ms, Return: 70 * ms,
		Outcome: outcomeOK, Present: true, Index: 12}
	casFail := &op{Client: 2, Kind: opCAS, Key: "a", Value: "z", HasCAS: true, CAS: 7, Call: 71 * ms, Return: 80 * ms,
		Outcome: outcomeOK, CASFailed: true, Index: 12}
	del := &op{Client: 0, Kind: opDel, Key: "a", Call: 90 * ms, Return: 95 * ms, Outcome: outcomeOK, Present: true, Index: 14}
	delMissing := &op{Client: 1, Kind: opDel, Key: "a", Call: 96 * ms, Return: 99 * ms, Outcome: outcomeOK}
	ops := []*op{
		get(0, "a", 0, 5, "", 0),
		put(0, "a", "x", 10, 20, 5),
		get(1, "a", 21, 25, "x", 5),
		unknownPut, failedPut,
		// The unknown put shows up; its index is learned from this read.
		get(0, "a", 40, 45, "u", 7),
		get(1, "a", 46, 50, "u", 7),
		cas, casFail, del, delMissing,
		get(2, "a", 100, 105, "", 0),
	}
	if res := lin(t, ops...); res != porcupine.Ok {
		t.Fatalf("valid history judged %s", res)
	}
}

func TestCheckerRejectsStaleRead(t *testing.T) {
	// x is acknowledged at 20; a read that starts after that returns the
	// old value.
	res := lin(t,
		put(0, "a", "old", 0, 10, 3),
		put(0, "a", "x", 11, 20, 5),
		get(1, "a", 25, 30, "old", 3),
	)
	if res != porcupine.Illegal {
		t.Fatalf("stale read judged %s, want Illegal", res)
	}
}

func TestCheckerRejectsLostWrite(t *testing.T) {
	// An acknowledged put is later invisible: the key reads as absent.
	res := lin(t,
		put(0, "a", "x", 0, 10, 5),
		get(1, "a", 20, 25, "", 0),
	)
	if res != porcupine.Illegal {
		t.Fatalf("lost write judged %s, want Illegal", res)
	}
}

func TestCheckerRejectsAppliedFailure(t *testing.T) {
	// A put answered 503 (definitely not applied) becomes visible.
	failed := put(0, "a", "ghost", 0, 10, 0)
	failed.Outcome, failed.Status = outcomeFail, 503
	if res := lin(t, failed, get(1, "a", 20, 25, "ghost", 4)); res != porcupine.Illegal {
		t.Fatalf("visible 503 write judged %s, want Illegal", res)
	}
}

func TestCheckerRejectsWrongIndexes(t *testing.T) {
	cases := map[string][]*op{
		"read reports another mod_index": {put(0, "a", "x", 0, 10, 5), get(1, "a", 20, 25, "x", 6)},
		"cas succeeds against a stale index": {
			put(0, "a", "x", 0, 10, 5), put(0, "a", "y", 11, 15, 8),
			{Client: 1, Kind: opCAS, Key: "a", Value: "z", HasCAS: true, CAS: 5, Call: 20 * ms, Return: 25 * ms, Outcome: outcomeOK, Present: true, Index: 9},
		},
		"cas fails although the index matched": {
			put(0, "a", "x", 0, 10, 5),
			{Client: 1, Kind: opCAS, Key: "a", Value: "z", HasCAS: true, CAS: 5, Call: 20 * ms, Return: 25 * ms, Outcome: outcomeOK, CASFailed: true, Index: 5},
		},
		"cas=0 succeeds on a present key": {
			put(0, "a", "x", 0, 10, 5),
			{Client: 1, Kind: opCAS, Key: "a", Value: "z", HasCAS: true, CAS: 0, Call: 20 * ms, Return: 25 * ms, Outcome: outcomeOK, Present: true, Index: 7},
		},
	}
	for name, ops := range cases {
		if res := lin(t, ops...); res != porcupine.Illegal {
			t.Errorf("%s: judged %s, want Illegal", name, res)
		}
	}
}

func TestCheckerUnknownWriteMayNeverApply(t *testing.T) {
	u := put(0, "a", "u", 10, 0, 0)
	u.Outcome = outcomeUnknown
	ops := []*op{put(1, "a", "x", 0, 5, 3), u, get(1, "a", 20, 25, "x", 3), get(1, "a", 30, 35, "x", 3)}
	if res := lin(t, ops...); res != porcupine.Ok {
		t.Fatalf("unknown write that never applied judged %s", res)
	}
	if got := porcupineOps([]*op{u})[0].Return; got != math.MaxInt64 {
		t.Fatalf("unknown write returns at %d, want MaxInt64", got)
	}
}

func TestSetCheckReportsLostAndPhantom(t *testing.T) {
	sc := setCheck{lost: []string{"s/c0-1"}, phantom: []string{"s/c1-2"}}
	if p := sc.problems(); len(p) != 2 {
		t.Fatalf("set check problems %q, want a lost and a phantom write", p)
	}
	if p := (setCheck{acked: 3, unknown: 1}).problems(); len(p) != 0 {
		t.Fatalf("clean set check reports %q", p)
	}
}

func TestMinorityCheck(t *testing.T) {
	w := []window{{start: 100 * time.Millisecond, end: 5 * time.Second, minority: []string{"n1"}}}
	ok := &op{Kind: opPut, Node: "n1", Call: 1000 * ms, Return: 1100 * ms, Outcome: outcomeOK, Status: 200, Attempts: 1}
	slow := &op{Kind: opGet, Node: "n1", Call: 500 * ms, Return: 4500 * ms, Outcome: outcomeUnknown, Attempts: 1}
	fine := &op{Kind: opGet, Node: "n1", Call: 1200 * ms, Return: 3200 * ms, Outcome: outcomeFail, Status: 503, Attempts: 1}
	majority := &op{Kind: opPut, Node: "n2", Call: 1000 * ms, Return: 1100 * ms, Outcome: outcomeOK, Status: 200, Attempts: 1}
	problems, checked := checkMinority([]*op{ok, slow, fine, majority}, w)
	if len(problems) != 2 || checked != 3 {
		t.Fatalf("minority check: %d checked, problems %q; want 3 checked, 2 problems", checked, problems)
	}
}
