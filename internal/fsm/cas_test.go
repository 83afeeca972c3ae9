package fsm

import (
	"errors"
	"fmt"
	"testing"
)

func casSet(key, value string, cas uint64) Command {
	return Command{Op: OpSet, Key: key, Value: value, HasCAS: true, CAS: cas}
}

func TestCompareAndSet(t *testing.T) {
	// Each step runs against the state left by the previous ones; "a" is
	// created at index 1 by the first step.
	steps := []struct {
		name        string
		cmd         Command
		wantErr     error
		wantCurrent uint64
		wantValue   string // value of "a" afterwards; "" with wantAbsent
		wantAbsent  bool
	}{
		{"create only if absent", casSet("a", "v1", 0), nil, 0, "v1", false},
		{"create-only on a present key fails", casSet("a", "v2", 0), ErrCASFailed, 1, "v1", false},
		{"stale compare fails", casSet("a", "v3", 7), ErrCASFailed, 1, "v1", false},
		{"matching compare writes", casSet("a", "v4", 1), nil, 0, "v4", false},
		{"old index no longer matches", casSet("a", "v5", 1), ErrCASFailed, 4, "v4", false},
		{"delete with stale compare fails", Command{Op: OpDelete, Key: "a", HasCAS: true, CAS: 1}, ErrCASFailed, 4, "v4", false},
		{"delete with matching compare", Command{Op: OpDelete, Key: "a", HasCAS: true, CAS: 4}, nil, 0, "", true},
		{"delete of absent key with cas=0 is not found", Command{Op: OpDelete, Key: "a", HasCAS: true, CAS: 0}, ErrKeyNotFound, 0, "", true},
		{"set with cas on absent key needs 0", casSet("a", "v9", 4), ErrCASFailed, 0, "", true},
	}
	f := New()
	for i, st := range steps {
		index := uint64(i + 1)
		before := stateOf(f)
		res := applyAll(t, f, cmdLog(index, st.cmd))[0].(*Result)
		if !errors.Is(res.Err, st.wantErr) || (st.wantErr == nil) != (res.Err == nil) {
			t.Fatalf("%s: err = %v, want %v", st.name, res.Err, st.wantErr)
		}
		if res.Current != st.wantCurrent {
			t.Errorf("%s: Current = %d, want %d", st.name, res.Current, st.wantCurrent)
		}
		e, ok := f.Get("a")
		if ok == st.wantAbsent || e.Value != st.wantValue {
			t.Errorf("%s: a = %+v (present %v), want %q (absent %v)", st.name, e, ok, st.wantValue, st.wantAbsent)
		}
		if st.wantErr != nil {
			after := stateOf(f)
			after.Stats.AppliedIndex = before.Stats.AppliedIndex
			requireState(t, after, before) // a failed compare changes nothing
		}
	}
}

func TestIdempotentRequests(t *testing.T) {
	f := New()
	first := applyAll(t, f, cmdLog(1, Command{Op: OpSet, Key: "k", Value: "1", RequestID: "req-1"}))[0].(*Result)
	if first.Err != nil || first.Replayed {
		t.Fatalf("first apply = %+v", first)
	}
	// Another writer changes k, then the first request is retried.
	applyAll(t, f, setLog(2, "k", "other"))
	retry := applyAll(t, f, cmdLog(3, Command{Op: OpSet, Key: "k", Value: "1", RequestID: "req-1"}))[0].(*Result)
	if !retry.Replayed || retry.Index != 1 || retry.Err != nil {
		t.Fatalf("retry = %+v, want replay of index 1", retry)
	}
	if e, _ := f.Get("k"); e.Value != "other" || e.ModIndex != 2 {
		t.Fatalf("retry applied again: k = %+v", e)
	}

	// Failed outcomes replay as the same failure.
	applyAll(t, f, cmdLog(4, Command{Op: OpSet, Key: "k", Value: "x", HasCAS: true, CAS: 99, RequestID: "req-cas"}))
	applyAll(t, f, setLog(5, "k", "moved"))
	again := applyAll(t, f, cmdLog(6, Command{Op: OpSet, Key: "k", Value: "x", HasCAS: true, CAS: 99, RequestID: "req-cas"}))[0].(*Result)
	if !errors.Is(again.Err, ErrCASFailed) || again.Current != 2 || again.Index != 4 || !again.Replayed {
		t.Fatalf("replayed CAS failure = %+v, want the original (index 4, current 2)", again)
	}
	applyAll(t, f, cmdLog(7, Command{Op: OpDelete, Key: "nope", RequestID: "req-del"}))
	del := applyAll(t, f, cmdLog(8, Command{Op: OpDelete, Key: "nope", RequestID: "req-del"}))[0].(*Result)
	if !errors.Is(del.Err, ErrKeyNotFound) || !del.Replayed {
		t.Fatalf("replayed not-found = %+v", del)
	}

	// The table survives a snapshot round trip, byte-identically.
	snap := persist(t, f)
	g := restoreNew(t, snap)
	r := applyAll(t, g, cmdLog(9, Command{Op: OpSet, Key: "k", Value: "1", RequestID: "req-1"}))[0].(*Result)
	if !r.Replayed || r.Index != 1 {
		t.Fatalf("after restore, retry = %+v, want replay of index 1", r)
	}
	if b := persist(t, restoreNew(t, snap)); string(b) != string(snap) {
		t.Fatal("snapshot with requests does not round-trip byte-identically")
	}
}

func TestRequestWindowEviction(t *testing.T) {
	f := New()
	const ids = 3000
	for i := uint64(1); i <= ids; i++ {
		applyAll(t, f, cmdLog(i, Command{Op: OpSet, Key: "k", Value: "v", RequestID: fmt.Sprint("r", i)}))
	}
	// Jump the log forward so that the first 2000 ids fall out of the window.
	applyAll(t, f, setLog(2000+RequestWindow, "other", "v"))
	if got := len(f.requests); got != ids-2000 {
		t.Fatalf("remembered %d requests, want %d", got, ids-2000)
	}
	if f.requestHead != 0 && len(f.requestOrder)-f.requestHead != ids-2000 {
		t.Fatalf("order holds %d live ids, want %d", len(f.requestOrder)-f.requestHead, ids-2000)
	}
	old := applyAll(t, f, cmdLog(2001+RequestWindow, Command{Op: OpSet, Key: "k", Value: "again", RequestID: "r5"}))[0].(*Result)
	if old.Replayed {
		t.Fatal("an evicted request id was replayed")
	}
	kept := applyAll(t, f, cmdLog(2002+RequestWindow, Command{Op: OpSet, Key: "k", Value: "v", RequestID: "r2500"}))[0].(*Result)
	if !kept.Replayed || kept.Index != 2500 {
		t.Fatalf("request inside the window = %+v, want replay of 2500", kept)
	}
}
