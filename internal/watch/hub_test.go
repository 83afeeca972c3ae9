package watch

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
)

func set(f *fsm.FSM, index uint64, key, value string) {
	data := (&fsm.Command{Op: fsm.OpSet, Key: key, Value: value}).Encode(nil)
	f.ApplyBatch([]*raft.Log{{Index: index, Type: raft.LogCommand, Data: data}})
}

func keys(evs []fsm.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = fmt.Sprintf("%s@%s", e.Key, e.Pos)
	}
	return out
}

// TestWatcherDelivers: a watcher gets, in order, the events under its
// prefix after its position, as they are applied, and an empty batch when
// the wait passes with none.
func TestWatcherDelivers(t *testing.T) {
	f := fsm.New()
	set(f, 1, "a/1", "x")
	set(f, 2, "b/1", "x")
	h := New(f, Limits{MaxWatchers: 4, Buffer: 8})
	w, err := h.Watch(fsm.Pos{Index: 0, Seq: fsm.EndSeq}, fsm.Filter{Prefix: "a/"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx := context.Background()
	got, err := w.Next(ctx, time.Second)
	if err != nil || fmt.Sprint(keys(got)) != "[a/1@1.0]" {
		t.Fatalf("first batch %v, %v; want a/1@1.0", keys(got), err)
	}
	done := make(chan []string, 1)
	go func() {
		evs, err := w.Next(ctx, 10*time.Second)
		if err != nil {
			done <- []string{err.Error()}
			return
		}
		done <- keys(evs)
	}()
	set(f, 3, "b/2", "x") // not under a/: the watcher keeps waiting
	set(f, 4, "a/2", "y")
	select {
	case k := <-done:
		if fmt.Sprint(k) != "[a/2@4.0]" {
			t.Fatalf("next batch %v, want a/2@4.0", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watcher did not wake for a/2")
	}
	evs, err := w.Next(ctx, 10*time.Millisecond)
	if err != nil || len(evs) != 0 || w.Pos() != (fsm.Pos{Index: 4, Seq: fsm.EndSeq}) {
		t.Fatalf("idle Next = %v, %v at %s; want nothing at 4", keys(evs), err, w.Pos())
	}
}

// readSignal is an FSM that says when a watcher has read it.
type readSignal struct {
	*fsm.FSM
	read chan struct{}
}

func (r readSignal) EventsAfter(p fsm.Pos, q fsm.Filter, dst []fsm.Event, max int) ([]fsm.Event, fsm.Pos, error) {
	dst, p, err := r.FSM.EventsAfter(p, q, dst, max)
	select {
	case r.read <- struct{}{}:
	default:
	}
	return dst, p, err
}

// TestIdlePosIsApplied: an entry that makes no event (here a lease grant)
// wakes no watcher, but an idle Next still ends at the applied index, which
// the progress event reports (issue 12's trial: it lagged by up to half the
// progress interval).
func TestIdlePosIsApplied(t *testing.T) {
	f := fsm.New()
	set(f, 1, "a/1", "x")
	src := readSignal{f, make(chan struct{}, 1)}
	h := New(src, Limits{MaxWatchers: 4, Buffer: 8})
	w, err := h.Watch(fsm.Pos{Index: 1, Seq: fsm.EndSeq}, fsm.Filter{Prefix: "a/"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	select { // Watch may have read to check the position: not Next
	case <-src.read:
	default:
	}
	done := make(chan error, 1)
	go func() {
		evs, err := w.Next(context.Background(), 200*time.Millisecond)
		if err == nil && len(evs) != 0 {
			err = fmt.Errorf("events %v", keys(evs))
		}
		done <- err
	}()
	select {
	case <-src.read: // Next has read up to index 1 and now waits
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not read")
	}
	grant := (&fsm.Command{Op: fsm.OpLeaseGrant, TTLMillis: 10_000}).Encode(nil)
	f.ApplyBatch([]*raft.Log{{Index: 2, Type: raft.LogCommand, Data: grant}})
	if f.AppliedIndex() != 2 {
		t.Fatalf("applied %d after the grant, want 2", f.AppliedIndex())
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not return after its wait")
	}
	if w.Pos() != (fsm.Pos{Index: 2, Seq: fsm.EndSeq}) {
		t.Fatalf("idle Pos %s after a 200ms wait, want the applied index 2", w.Pos())
	}
}

// TestHubBounds: at most MaxWatchers at once; a closed watcher frees its
// place; a position before the history or after the applied index is
// refused at Watch.
func TestHubBounds(t *testing.T) {
	f := fsm.New()
	f.SetHistoryLimits(fsm.HistoryLimits{Events: 2, Bytes: 1 << 20})
	for i := uint64(1); i <= 4; i++ {
		set(f, i, "k", "v")
	}
	h := New(f, Limits{MaxWatchers: 2, Buffer: 8})
	end := fsm.Pos{Index: 4, Seq: fsm.EndSeq}
	w1, err1 := h.Watch(end, fsm.Filter{})
	w2, err2 := h.Watch(end, fsm.Filter{})
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if _, err := h.Watch(end, fsm.Filter{}); !errors.Is(err, ErrTooManyWatchers) {
		t.Fatalf("third watcher: %v, want ErrTooManyWatchers", err)
	}
	w1.Close()
	w1.Close() // twice is once
	if h.Watchers() != 1 {
		t.Fatalf("%d watchers after one closed, want 1", h.Watchers())
	}
	if _, err := h.Watch(fsm.Pos{Index: 1, Seq: fsm.EndSeq}, fsm.Filter{}); !errors.Is(err, fsm.ErrHistoryCompacted) {
		t.Fatalf("watch from 1 with 2 events kept: %v, want ErrHistoryCompacted", err)
	}
	if _, err := h.Watch(fsm.Pos{Index: 9, Seq: fsm.EndSeq}, fsm.Filter{}); !errors.Is(err, fsm.ErrFuturePosition) {
		t.Fatalf("watch from 9 at applied 4: %v, want ErrFuturePosition", err)
	}
	if h.Watchers() != 1 {
		t.Fatalf("%d watchers after refused ones, want 1", h.Watchers())
	}
	w2.Close()
}

// TestSlowWatcherReset: a watcher that does not read while the history
// moves past its position is told ErrHistoryCompacted; it held no events
// meanwhile.
func TestSlowWatcherReset(t *testing.T) {
	f := fsm.New()
	f.SetHistoryLimits(fsm.HistoryLimits{Events: 3, Bytes: 1 << 20})
	h := New(f, Limits{MaxWatchers: 2, Buffer: 2})
	w, err := h.Watch(fsm.Pos{}, fsm.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := uint64(1); i <= 10; i++ {
		set(f, i, fmt.Sprint("k", i), "v")
	}
	if _, err := w.Next(context.Background(), time.Second); !errors.Is(err, fsm.ErrHistoryCompacted) {
		t.Fatalf("slow watcher: %v, want ErrHistoryCompacted", err)
	}
	// A watcher that keeps up reads everything in batches of Buffer.
	g := fsm.New()
	g.SetHistoryLimits(fsm.HistoryLimits{Events: 3, Bytes: 1 << 20})
	h2 := New(g, Limits{MaxWatchers: 2, Buffer: 2})
	w2, _ := h2.Watch(fsm.Pos{}, fsm.Filter{})
	defer w2.Close()
	var got []string
	for i := uint64(1); i <= 10; i++ {
		set(g, i, fmt.Sprint("k", i), "v")
		evs, err := w2.Next(context.Background(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, keys(evs)...)
	}
	if len(got) != 10 {
		t.Fatalf("a watcher that kept up got %v, want 10 events", got)
	}
}

// TestHubClose: Close ends waiting watchers at once and refuses new ones.
func TestHubClose(t *testing.T) {
	f := fsm.New()
	h := New(f, Limits{})
	w, err := h.Watch(fsm.Pos{}, fsm.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := w.Next(context.Background(), time.Minute)
		errc <- err
	}()
	h.Close()
	h.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Next after Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next still waiting 5 s after Close")
	}
	if _, err := h.Watch(fsm.Pos{}, fsm.Filter{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Watch after Close = %v, want ErrClosed", err)
	}
}

// TestNextReusesItsTimer: waiting for events allocates nothing per call
// (a stream waits once per event it sends), and a wait that passed does
// not cut the next one short.
func TestNextReusesItsTimer(t *testing.T) {
	f := fsm.New()
	h := New(f, Limits{MaxWatchers: 1, Buffer: 8})
	w, err := h.Watch(fsm.Pos{Index: 0, Seq: fsm.EndSeq}, fsm.Filter{Prefix: "a/"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx := context.Background()
	if evs, err := w.Next(ctx, time.Millisecond); err != nil || len(evs) != 0 {
		t.Fatalf("idle Next: %v %v", evs, err)
	}
	if n := testing.AllocsPerRun(50, func() { w.Next(ctx, time.Microsecond) }); n != 0 {
		t.Errorf("an idle Next allocates %.1f times per call, want 0", n)
	}
	// A short wait that ran out, then a long one: the long one waits for
	// the event rather than returning at once on a stale tick.
	w.Next(ctx, time.Microsecond)
	time.Sleep(2 * time.Millisecond) // let a stale tick be due, were there one
	got := make(chan []string, 1)
	go func() {
		evs, _ := w.Next(ctx, 10*time.Second)
		got <- keys(evs)
	}()
	set(f, 1, "a/1", "x")
	select {
	case k := <-got:
		if fmt.Sprint(k) != "[a/1@1.0]" {
			t.Fatalf("after a short wait: %v, want a/1@1.0", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no batch within 5 s")
	}
}
