package fsm

import (
	"errors"
	"fmt"
	"sort"
)

// HistoryLimits bound the change history every replica keeps (the recent
// events, for watchers that resume): at most Events events and at most
// Bytes bytes, counting for each event its key and value bytes plus a
// fixed overhead (eventOverhead). The oldest events go first.
type HistoryLimits struct {
	Events int   // WATCH_HISTORY_EVENTS; DefaultHistoryEvents
	Bytes  int64 // WATCH_HISTORY_BYTES; DefaultHistoryBytes
}

// Defaults for HistoryLimits: 100,000 events (a minute and a half of
// writes at this store's measured single-node write rate), at most 64 MiB.
const (
	DefaultHistoryEvents = 100_000
	DefaultHistoryBytes  = 64 << 20
)

// DefaultHistoryLimits are the limits of a replica made by New.
var DefaultHistoryLimits = HistoryLimits{Events: DefaultHistoryEvents, Bytes: DefaultHistoryBytes}

// ErrHistoryCompacted: the changes after a position are no longer all in
// the history (the oldest were dropped to keep it bounded, or the state
// was installed from a snapshot or a restore without them). The caller
// must re-read the state and resume from its index.
var ErrHistoryCompacted = errors.New("history compacted")

// ErrFuturePosition: a position beyond this replica's applied index.
var ErrFuturePosition = errors.New("position beyond the applied index")

// history is a ring of the most recent events in log order, bounded by
// count and bytes. Everything about it is a function of the log: the
// same entries leave the same events, the same drops and the same floor
// on every replica, so it can be written into snapshots byte for byte.
type history struct {
	lim   HistoryLimits
	ring  []Event // grows by doubling up to lim.Events
	head  int     // ring[head] is the oldest event
	n     int
	bytes int64 // sum of the events' cost
	// floor is the newest position whose change is not in the ring: the
	// last dropped event, or where the history began (New: 0.0; a
	// snapshot without history: its applied index). Every change after
	// floor is in the ring.
	floor Pos
	// cur and seq number the changes of one entry: seq is the next
	// sequence number for index cur.
	cur   uint64
	seq   uint32
	added uint64 // events ever added, for rollback marks
}

func newHistory(lim HistoryLimits) history {
	return history{lim: lim}
}

// add appends e as the next change of the entry at index and drops the
// oldest events beyond the bounds. It allocates only when the ring grows.
func (h *history) add(e Event, index uint64) {
	if index != h.cur {
		h.cur, h.seq = index, 0
	}
	e.Pos = Pos{Index: index, Seq: h.seq}
	h.seq++
	h.push(e)
}

// push appends e, positioned, and drops the oldest events beyond the
// bounds.
func (h *history) push(e Event) {
	if h.n >= h.lim.Events {
		h.drop()
	}
	if h.n == len(h.ring) {
		h.grow()
	}
	h.ring[(h.head+h.n)%len(h.ring)] = e
	h.n++
	h.bytes += e.cost()
	h.added++
	for h.bytes > h.lim.Bytes && h.n > 0 {
		h.drop()
	}
}

// drop forgets the oldest event; its position becomes the floor.
func (h *history) drop() {
	e := &h.ring[h.head]
	h.floor = e.Pos
	h.bytes -= e.cost()
	*e = Event{} // let its strings go
	h.head = (h.head + 1) % len(h.ring)
	h.n--
}

func (h *history) grow() {
	size := min(max(2*len(h.ring), 64), max(h.lim.Events, 1))
	ring := make([]Event, size)
	for i := 0; i < h.n; i++ {
		ring[i] = h.ring[(h.head+i)%len(h.ring)]
	}
	h.ring, h.head = ring, 0
}

// at is the i-th oldest event kept.
func (h *history) at(i int) *Event { return &h.ring[(h.head+i)%len(h.ring)] }

// historyMark is what rollback needs to take back the events added after
// it.
type historyMark struct {
	added uint64
	cur   uint64
	seq   uint32
}

func (h *history) mark() historyMark { return historyMark{added: h.added, cur: h.cur, seq: h.seq} }

// rollback takes back the events added since m that are still kept (a
// change that was undone, such as a transaction over the quota). Events
// dropped meanwhile to make room stay dropped; the floor stays where it
// is, which only makes resuming from before it a 410, the same on every
// replica.
func (h *history) rollback(m historyMark) {
	for k := h.added - m.added; k > 0 && h.n > 0; k-- {
		e := h.at(h.n - 1)
		h.bytes -= e.cost()
		*e = Event{}
		h.n--
	}
	h.added, h.cur, h.seq = m.added, m.cur, m.seq
}

// search is the number of kept events at or before p.
func (h *history) search(p Pos) int {
	return sort.Search(h.n, func(i int) bool { return p.Less(h.at(i).Pos) })
}

// events returns a copy of the kept events, oldest first (for snapshots).
func (h *history) events() []Event {
	out := make([]Event, h.n)
	for i := range out {
		out[i] = *h.at(i)
	}
	return out
}

// restore replaces the history with events (in log order) after floor,
// then applies h's limits to them.
func (h *history) restore(floor Pos, events []Event) {
	lim := h.lim
	*h = newHistory(lim)
	h.floor = floor
	if len(events) > 0 {
		last := events[len(events)-1].Pos
		h.cur, h.seq = last.Index, last.Seq+1
	}
	for _, e := range events {
		h.push(e)
	}
}

// HistoryInfo describes the change history a replica keeps.
type HistoryInfo struct {
	// Floor: every change after Floor is kept; resuming after an older
	// position is ErrHistoryCompacted.
	Floor  Pos
	Events int   // events kept
	Bytes  int64 // their cost against HistoryLimits.Bytes
	Oldest Pos   // the oldest kept event's position (zero when none)
	Limits HistoryLimits
}

// SetHistoryLimits sets the history's bounds (a field below 1: its
// default). Call it before the replica
// applies or restores anything (node.Open does): replicas with the same
// limits keep the same history.
func (f *FSM) SetHistoryLimits(l HistoryLimits) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l.Events < 1 {
		l.Events = DefaultHistoryEvents
	}
	if l.Bytes < 1 {
		l.Bytes = DefaultHistoryBytes
	}
	f.hist.lim = l
	f.hist.restore(f.hist.floor, f.hist.events())
}

// History describes the history this replica keeps.
func (f *FSM) History() HistoryInfo {
	f.mu.RLock()
	defer f.mu.RUnlock()
	info := HistoryInfo{Floor: f.hist.floor, Events: f.hist.n, Bytes: f.hist.bytes, Limits: f.hist.lim}
	if f.hist.n > 0 {
		info.Oldest = f.hist.at(0).Pos
	}
	return info
}

// Filter selects the events a reader wants: keys under Prefix, or with
// Exact the key Prefix alone.
type Filter struct {
	Prefix string
	Exact  bool
}

func (q Filter) match(e *Event) bool {
	if q.Exact {
		return e.Key == q.Prefix
	}
	return e.Matches(q.Prefix)
}

// MaxEventsBatch bounds one EventsAfter answer whatever its max: an
// entry with more matching changes than this (a large prefix delete) is
// read in several answers.
const MaxEventsBatch = 4096

// EventsAfter appends to dst the events strictly after p that q selects,
// in log order, and returns them with the position to read after next.
// It takes at most max events, but does not stop inside an entry's
// changes until MaxEventsBatch: one entry's changes come together. When
// it read to the end of the history, next is the end of the applied
// index (Pos{applied, EndSeq}).
//
// Errors: ErrHistoryCompacted when changes after p have been dropped (see
// HistoryInfo.Floor); ErrFuturePosition when p's index is beyond the
// applied index.
func (f *FSM) EventsAfter(p Pos, q Filter, dst []Event, max int) ([]Event, Pos, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	applied := f.applied.Load()
	if p.Index > applied {
		return dst, p, fmt.Errorf("%w: %s is after index %d", ErrFuturePosition, p, applied)
	}
	h := &f.hist
	if p.Less(h.floor) {
		return dst, p, fmt.Errorf("%w: changes after %s are no longer kept (the history starts after %s)", ErrHistoryCompacted, p, h.floor)
	}
	taken := 0
	var last uint64
	for i := h.search(p); i < h.n; i++ {
		e := h.at(i)
		if taken > 0 && (taken >= MaxEventsBatch || (taken >= max && e.Pos.Index != last)) {
			return dst, h.at(i - 1).Pos, nil
		}
		if q.match(e) {
			dst = append(dst, *e)
			taken++
			last = e.Pos.Index
		}
	}
	end := Pos{Index: applied, Seq: EndSeq}
	if end.Less(p) {
		end = p
	}
	return dst, end, nil
}

// Changed returns a channel that is closed the next time Apply adds
// events to the history or the state is restored: wait on it, then read
// with EventsAfter. Take it before reading, so nothing added in between
// is missed.
func (f *FSM) Changed() <-chan struct{} {
	f.cmu.Lock()
	defer f.cmu.Unlock()
	if f.changed == nil {
		f.changed = make(chan struct{})
	}
	return f.changed
}

// notifyChanged closes the channel Changed handed out, if any: no
// allocation while nobody watches.
func (f *FSM) notifyChanged() {
	f.cmu.Lock()
	if f.changed != nil {
		close(f.changed)
		f.changed = nil
	}
	f.cmu.Unlock()
}
