package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// snapHist is the change history a hand-built snapshot carries (version 6
// on): its floor and its events. Builders without one write no events and
// the floor 0.0, as a new FSM has.
type snapHist struct {
	floor  Pos
	events []Event
}

func appendHistHeader(b []byte, version byte, hist []snapHist) []byte {
	if version < historyVersion {
		return b
	}
	var h snapHist
	if len(hist) > 0 {
		h = hist[0]
	}
	b = binary.AppendUvarint(b, uint64(len(h.events)))
	b = binary.AppendUvarint(b, h.floor.Index)
	return binary.AppendUvarint(b, uint64(h.floor.Seq))
}

// appendHistEvents writes the documented 'V' records; an event's size is
// its key and value bytes unless set.
func appendHistEvents(b []byte, hist []snapHist) []byte {
	if len(hist) == 0 {
		return b
	}
	for _, e := range hist[0].events {
		size := uint64(e.size)
		if size == 0 {
			size = uint64(len(e.Key) + len(e.Value))
		}
		b = append(b, 'V')
		b = binary.AppendUvarint(b, e.Pos.Index)
		b = binary.AppendUvarint(b, uint64(e.Pos.Seq))
		b = binary.AppendUvarint(b, uint64(e.Type))
		b = str(b, e.Key)
		b = str(b, e.Value)
		b = binary.AppendUvarint(b, e.CreateIndex)
		b = binary.AppendUvarint(b, e.ModIndex)
		b = binary.AppendUvarint(b, e.PrevModIndex)
		b = binary.AppendUvarint(b, size)
	}
	return b
}

// allEvents reads the whole history after p.
func allEvents(t testing.TB, f *FSM, p Pos, q Filter) []Event {
	t.Helper()
	evs, _, err := f.EventsAfter(p, q, nil, 1<<20)
	if err != nil {
		t.Fatalf("EventsAfter(%s): %v", p, err)
	}
	for i := range evs {
		evs[i].size = 0 // compared without it
	}
	return evs
}

func requireEvents(t testing.TB, got, want []Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d events %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestEventsPerOp: each write leaves the documented events, and a write
// that changes nothing (absent delete, failed compare, replay, malformed
// entry, quota-free node registration) leaves none.
func TestEventsPerOp(t *testing.T) {
	f := New()
	applyAll(t, f,
		setLog(1, "a", "1"),
		setLog(2, "a", "2"),
		setLog(3, "p/x", "x"),
		setLog(4, "p/y", "y"),
		delLog(5, "a"),
		delLog(6, "absent"),
		cmdLog(7, Command{Op: OpSet, Key: "p/x", Value: "no", HasCAS: true, CAS: 1}),
		regLog(8, "n1", "h:1"),
		cmdLog(9, Command{Op: OpSet, Key: "r", Value: "once", RequestID: "id"}),
		cmdLog(10, Command{Op: OpSet, Key: "r", Value: "once", RequestID: "id"}),
		&raft.Log{Index: 11, Type: raft.LogCommand, Data: []byte{0xff}},
		cmdLog(12, Command{Op: OpDeletePrefix, Key: "p/"}),
		setLog(13, "z", "last"),
	)
	want := []Event{
		{Pos: Pos{1, 0}, Type: EventPut, Key: "a", Value: "1", CreateIndex: 1, ModIndex: 1},
		{Pos: Pos{2, 0}, Type: EventPut, Key: "a", Value: "2", CreateIndex: 1, ModIndex: 2, PrevModIndex: 1},
		{Pos: Pos{3, 0}, Type: EventPut, Key: "p/x", Value: "x", CreateIndex: 3, ModIndex: 3},
		{Pos: Pos{4, 0}, Type: EventPut, Key: "p/y", Value: "y", CreateIndex: 4, ModIndex: 4},
		{Pos: Pos{5, 0}, Type: EventDelete, Key: "a", CreateIndex: 1, ModIndex: 5, PrevModIndex: 2},
		{Pos: Pos{9, 0}, Type: EventPut, Key: "r", Value: "once", CreateIndex: 9, ModIndex: 9},
		{Pos: Pos{12, 0}, Type: EventDelete, Key: "p/x", CreateIndex: 3, ModIndex: 12, PrevModIndex: 3},
		{Pos: Pos{12, 1}, Type: EventDelete, Key: "p/y", CreateIndex: 4, ModIndex: 12, PrevModIndex: 4},
		{Pos: Pos{13, 0}, Type: EventPut, Key: "z", Value: "last", CreateIndex: 13, ModIndex: 13},
	}
	requireEvents(t, allEvents(t, f, Pos{}, Filter{}), want)

	// Filters, and resuming strictly after a position inside an entry.
	requireEvents(t, allEvents(t, f, Pos{}, Filter{Prefix: "p/"}), []Event{want[2], want[3], want[6], want[7]})
	requireEvents(t, allEvents(t, f, Pos{}, Filter{Prefix: "p/x", Exact: true}), []Event{want[2], want[6]})
	requireEvents(t, allEvents(t, f, Pos{12, 0}, Filter{}), want[7:])
	requireEvents(t, allEvents(t, f, Pos{12, EndSeq}, Filter{}), want[8:])
	requireEvents(t, allEvents(t, f, Pos{13, EndSeq}, Filter{}), nil)

	if _, next, err := f.EventsAfter(Pos{4, EndSeq}, Filter{Prefix: "nothing"}, nil, 10); err != nil || next != (Pos{13, EndSeq}) {
		t.Fatalf("EventsAfter to the end = next %s, %v; want 13 (the applied index)", next, err)
	}
	if _, _, err := f.EventsAfter(Pos{14, EndSeq}, Filter{}, nil, 10); !errors.Is(err, ErrFuturePosition) {
		t.Fatalf("EventsAfter(14) at applied 13 = %v, want ErrFuturePosition", err)
	}
	// One entry's changes come together even past max; the next read
	// starts after them.
	got, next, err := f.EventsAfter(Pos{11, EndSeq}, Filter{}, nil, 1)
	if err != nil || len(got) != 2 || next != (Pos{12, 1}) {
		t.Fatalf("EventsAfter(11, max 1) = %d events, next %s, %v; want the prefix delete's 2, next 12.1", len(got), next, err)
	}
}

// TestEventsDeleteAll: deleting the whole store ("" prefix) reports every
// key, in key order.
func TestEventsDeleteAll(t *testing.T) {
	f := New()
	applyAll(t, f, setLog(1, "b", "2"), setLog(2, "a", "1"), cmdLog(3, Command{Op: OpDeletePrefix}))
	requireEvents(t, allEvents(t, f, Pos{2, EndSeq}, Filter{}), []Event{
		{Pos: Pos{3, 0}, Type: EventDelete, Key: "a", CreateIndex: 2, ModIndex: 3, PrevModIndex: 2},
		{Pos: Pos{3, 1}, Type: EventDelete, Key: "b", CreateIndex: 1, ModIndex: 3, PrevModIndex: 1},
	})
}

// TestEmitExpire: the TTL code's one call leaves an expire event.
func TestEmitExpire(t *testing.T) {
	f := New()
	applyAll(t, f, setLog(1, "t", "v"))
	f.mu.Lock()
	old, _ := f.tree.Delete(probe("t"))
	f.emitExpire(2, old)
	f.applied.Store(2)
	f.mu.Unlock()
	requireEvents(t, allEvents(t, f, Pos{1, EndSeq}, Filter{}), []Event{
		{Pos: Pos{2, 0}, Type: EventExpire, Key: "t", CreateIndex: 1, ModIndex: 2, PrevModIndex: 1},
	})
}

// TestHistoryBounds: the history keeps at most Events events and Bytes
// bytes, drops the oldest first, and a read from before what it kept is
// ErrHistoryCompacted; positions at or after the floor still read.
func TestHistoryBounds(t *testing.T) {
	f := New()
	f.SetHistoryLimits(HistoryLimits{Events: 3, Bytes: 1 << 20})
	for i := uint64(1); i <= 5; i++ {
		applyAll(t, f, setLog(i, fmt.Sprint("k", i), "v"))
	}
	h := f.History()
	if h.Events != 3 || h.Floor != (Pos{2, 0}) || h.Oldest != (Pos{3, 0}) {
		t.Fatalf("History = %+v, want 3 events after floor 2.0", h)
	}
	if _, _, err := f.EventsAfter(Pos{1, EndSeq}, Filter{}, nil, 10); !errors.Is(err, ErrHistoryCompacted) {
		t.Fatalf("EventsAfter(1) with 2.0 dropped = %v, want ErrHistoryCompacted", err)
	}
	if got := allEvents(t, f, Pos{2, EndSeq}, Filter{}); len(got) != 3 || got[0].Pos != (Pos{3, 0}) {
		t.Fatalf("EventsAfter(2) = %+v, want 3.0, 4.0, 5.0", got)
	}

	// Bytes: each event costs eventOverhead plus its key and value.
	g := New()
	g.SetHistoryLimits(HistoryLimits{Events: 100, Bytes: 2*(eventOverhead+3) + 1})
	applyAll(t, g, setLog(1, "k1", "v"), setLog(2, "k2", "v"), setLog(3, "k3", "v"))
	if h := g.History(); h.Events != 2 || h.Bytes != 2*(eventOverhead+3) || h.Floor != (Pos{1, 0}) {
		t.Fatalf("History = %+v, want 2 events of %d bytes after 1.0", h, eventOverhead+3)
	}
	// An event larger than the whole bound is dropped at once.
	applyAll(t, g, setLog(4, "big", strings.Repeat("x", 300)))
	if h := g.History(); h.Events != 0 || h.Bytes != 0 || h.Floor != (Pos{4, 0}) {
		t.Fatalf("History = %+v, want empty after 4.0", h)
	}
}

// TestHistoryRollback: events taken back (an undone change) leave the
// history as it was, numbering included.
func TestHistoryRollback(t *testing.T) {
	h := newHistory(HistoryLimits{Events: 10, Bytes: 1 << 20})
	h.add(Event{Type: EventPut, Key: "a", size: 1}, 1)
	m := h.mark()
	h.add(Event{Type: EventPut, Key: "b", size: 1}, 2)
	h.add(Event{Type: EventPut, Key: "c", size: 1}, 2)
	h.rollback(m)
	if h.n != 1 || h.bytes != eventOverhead+1 || h.added != 1 {
		t.Fatalf("after rollback n=%d bytes=%d added=%d, want 1, %d, 1", h.n, h.bytes, h.added, eventOverhead+1)
	}
	h.add(Event{Type: EventPut, Key: "d", size: 1}, 2)
	if p := h.at(1).Pos; p != (Pos{2, 0}) {
		t.Fatalf("event after rollback at %s, want 2.0", p)
	}
}

func TestPosFormat(t *testing.T) {
	for s, want := range map[string]Pos{"0": {0, EndSeq}, "42": {42, EndSeq}, "42.0": {42, 0}, "42.7": {42, 7}} {
		got, err := ParsePos(s)
		if err != nil || got != want || got.String() != s {
			t.Errorf("ParsePos(%q) = %v, %v (String %q); want %v", s, got, err, got.String(), want)
		}
	}
	for _, s := range []string{"", ".", "1.", ".1", "-1", "+1", "1.+2", "a", "1.2.3", " 1", "1.4294967295", "18446744073709551616"} {
		if _, err := ParsePos(s); !errors.Is(err, ErrBadPosition) {
			t.Errorf("ParsePos(%q) = %v, want ErrBadPosition", s, err)
		}
	}
}

// TestHistorySnapshot: the history is in snapshots; replicas that apply
// the same entries write identical bytes, a restored replica holds the
// same history and writes the same bytes again, and older versions
// restore with no history, resumable only from their applied index.
func TestHistorySnapshot(t *testing.T) {
	logs := func() []*raft.Log {
		return []*raft.Log{
			setLog(1, "a", "1"), setLog(2, "b", "2"), setLog(3, "a", "3"),
			cmdLog(4, Command{Op: OpDeletePrefix}), setLog(5, "c", "\xff"), delLog(6, "c"),
		}
	}
	a, b := New(), New()
	a.SetHistoryLimits(HistoryLimits{Events: 4, Bytes: 1 << 20})
	b.SetHistoryLimits(HistoryLimits{Events: 4, Bytes: 1 << 20})
	applyAll(t, a, logs()...)
	for _, l := range logs() { // one entry per batch on b
		applyAll(t, b, l)
	}
	sa, sb := persist(t, a), persist(t, b)
	if !bytes.Equal(sa, sb) {
		t.Fatal("two replicas of the same log wrote different snapshots")
	}
	r := New()
	r.SetHistoryLimits(HistoryLimits{Events: 4, Bytes: 1 << 20})
	if err := r.Restore(readCloser(sa)); err != nil {
		t.Fatal(err)
	}
	if r.History() != a.History() {
		t.Fatalf("restored history %+v, want %+v", r.History(), a.History())
	}
	requireEvents(t, allEvents(t, r, r.History().Floor, Filter{}), allEvents(t, a, a.History().Floor, Filter{}))
	if !bytes.Equal(persist(t, r), sa) {
		t.Fatal("restored replica writes different snapshot bytes")
	}
	// Both go on alike.
	applyAll(t, a, setLog(7, "d", "4"))
	applyAll(t, r, setLog(7, "d", "4"))
	if !bytes.Equal(persist(t, a), persist(t, r)) {
		t.Fatal("restored replica diverged after one more entry")
	}

	// A version 4 snapshot has no history: it starts at its applied index.
	old := restoreNew(t, buildSnap(4, 9, nil, []Entry{{Key: "k", Value: "v", CreateIndex: 9, ModIndex: 9}}))
	if h := old.History(); h.Events != 0 || h.Floor != (Pos{9, EndSeq}) {
		t.Fatalf("history from a v4 snapshot = %+v, want none after 9", h)
	}
	if _, _, err := old.EventsAfter(Pos{8, EndSeq}, Filter{}, nil, 10); !errors.Is(err, ErrHistoryCompacted) {
		t.Fatalf("resume before a v4 snapshot's index = %v, want ErrHistoryCompacted", err)
	}
	if got := allEvents(t, old, Pos{9, EndSeq}, Filter{}); len(got) != 0 {
		t.Fatalf("resume at a v4 snapshot's index = %+v, want nothing", got)
	}
}

// TestHistorySnapshotCorrupt: events out of order, before the floor, of an
// unknown type or with a size below their bytes are refused.
func TestHistorySnapshotCorrupt(t *testing.T) {
	ev := func(i uint64, seq uint32) Event {
		return Event{Pos: Pos{i, seq}, Type: EventPut, Key: "k", Value: "v", CreateIndex: i, ModIndex: i}
	}
	entries := []Entry{{Key: "k", Value: "v", CreateIndex: 3, ModIndex: 3}}
	for name, h := range map[string]snapHist{
		"out of order":    {events: []Event{ev(3, 0), ev(2, 0)}},
		"duplicate":       {events: []Event{ev(2, 0), ev(2, 0)}},
		"before floor":    {floor: Pos{2, 0}, events: []Event{ev(2, 0)}},
		"after applied":   {events: []Event{ev(4, 0)}},
		"floor after":     {floor: Pos{4, EndSeq}},
		"unknown type":    {events: []Event{{Pos: Pos{1, 0}, Type: 9, Key: "k"}}},
		"size too small":  {events: []Event{{Pos: Pos{1, 0}, Type: EventPut, Key: "k", Value: "v", size: 1}}},
		"seq out of band": {events: []Event{ev(1, EndSeq)}},
	} {
		t.Run(name, func(t *testing.T) {
			f := New()
			applyAll(t, f, setLog(1, "keep", "me"))
			if err := f.Restore(readCloser(buildSnap(snapshotVersion, 3, nil, entries, h))); !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore = %v, want ErrCorruptSnapshot", err)
			}
			if got := f.History(); got.Events != 1 {
				t.Fatalf("history after a refused restore = %+v, want the one event it had", got)
			}
		})
	}
	restoreNew(t, buildSnap(snapshotVersion, 3, nil, entries, snapHist{floor: Pos{1, 0}, events: []Event{ev(2, 0), ev(3, 0), ev(3, 1)}}))
}

// TestHistoryInstall: a restore's snapshot has no history and starts at
// its index, so a watcher from before it is told to re-read.
func TestHistoryInstall(t *testing.T) {
	f := New()
	applyAll(t, f, setLog(1, "a", "1"), setLog(2, "b", "2"))
	var backup, install bytes.Buffer
	if _, err := f.Capture().Write(&backup); err != nil {
		t.Fatal(err)
	}
	info, err := WriteInstall(&install, bytes.NewReader(backup.Bytes()), 100, map[string]string{"n1": "h:1"})
	if err != nil {
		t.Fatal(err)
	}
	if int64(install.Len()) != InstallSize(info, 100, map[string]string{"n1": "h:1"}) {
		t.Fatalf("install is %d bytes, InstallSize says %d", install.Len(), InstallSize(info, 100, map[string]string{"n1": "h:1"}))
	}
	r := restoreNew(t, install.Bytes())
	if h := r.History(); h.Events != 0 || h.Floor != (Pos{100, EndSeq}) {
		t.Fatalf("history after install = %+v, want none after 100", h)
	}
}

// TestChanged: the channel closes when Apply adds events, not otherwise.
func TestChanged(t *testing.T) {
	f := New()
	ch := f.Changed()
	applyAll(t, f, regLog(1, "n1", "h:1"))
	select {
	case <-ch:
		t.Fatal("Changed closed by an entry without events")
	default:
	}
	applyAll(t, f, setLog(2, "a", "1"))
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed by a put")
	}
}

// TestEventsTxn: a transaction's writes are events of its one index, in
// the order of its operations; a branch refused by the quota leaves none,
// whether it was undone in place or ran on a clone (delete_prefix).
func TestEventsTxn(t *testing.T) {
	f := New()
	applyAll(t, f, setLog(1, "a", "1"), setLog(2, "p/x", "x"), setLog(3, "p/y", "y"))
	txn := Txn{Success: []TxnOp{
		{Kind: TxnPut, Key: "a", Value: "2"},
		{Kind: TxnGet, Key: "a"},
		{Kind: TxnDeletePrefix, Key: "p/"},
		{Kind: TxnPut, Key: "n", Value: "new"},
		{Kind: TxnDelete, Key: "n"},
	}}
	applyAll(t, f, cmdLog(4, Command{Op: OpTxn, Txn: &txn}))
	requireEvents(t, allEvents(t, f, Pos{3, EndSeq}, Filter{}), []Event{
		{Pos: Pos{4, 0}, Type: EventPut, Key: "a", Value: "2", CreateIndex: 1, ModIndex: 4, PrevModIndex: 1},
		{Pos: Pos{4, 1}, Type: EventDelete, Key: "p/x", CreateIndex: 2, ModIndex: 4, PrevModIndex: 2},
		{Pos: Pos{4, 2}, Type: EventDelete, Key: "p/y", CreateIndex: 3, ModIndex: 4, PrevModIndex: 3},
		{Pos: Pos{4, 3}, Type: EventPut, Key: "n", Value: "new", CreateIndex: 4, ModIndex: 4},
		{Pos: Pos{4, 4}, Type: EventDelete, Key: "n", CreateIndex: 4, ModIndex: 4, PrevModIndex: 4},
	})

	for name, ops := range map[string][]TxnOp{
		"undo log": {{Kind: TxnPut, Key: "a", Value: strings.Repeat("x", 100)}, {Kind: TxnDelete, Key: "a"}, {Kind: TxnPut, Key: "b", Value: strings.Repeat("x", 100)}},
		"clone":    {{Kind: TxnDeletePrefix, Key: "a"}, {Kind: TxnPut, Key: "b", Value: strings.Repeat("x", 100)}},
	} {
		t.Run(name, func(t *testing.T) {
			g := New()
			applyAll(t, g, setLog(1, "a", "1"))
			before := g.History()
			big := Txn{Success: ops}
			res := applyAll(t, g, cmdLog(2, Command{Op: OpTxn, Txn: &big, Quota: 50}))
			if r := res[0].(*Result); !errors.Is(r.Err, ErrQuotaExceeded) {
				t.Fatalf("txn over the quota = %+v, want ErrQuotaExceeded", r)
			}
			if after := g.History(); after != before {
				t.Fatalf("history after a refused txn %+v, want %+v", after, before)
			}
			applyAll(t, g, setLog(3, "c", "3"))
			requireEvents(t, allEvents(t, g, Pos{1, EndSeq}, Filter{}), []Event{
				{Pos: Pos{3, 0}, Type: EventPut, Key: "c", Value: "3", CreateIndex: 3, ModIndex: 3},
			})
		})
	}
}
