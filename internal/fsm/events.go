package fsm

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// EventType is what happened to a key.
type EventType uint8

// Event types. The numbers are part of the snapshot format: never
// renumber one.
const (
	EventPut    EventType = 1 // the key was written (created or replaced)
	EventDelete EventType = 2 // the key was deleted (by a delete, a prefix delete or a transaction)
	EventExpire EventType = 3 // the key's TTL ran out (EmitExpireLocked)
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	case EventExpire:
		return "expire"
	}
	return fmt.Sprintf("event(%d)", uint8(t))
}

// Pos is a position in the change feed: the log index of an entry and
// the sequence number of a change within it (0, 1, … for the keys one
// transaction or prefix delete changes, in the order it changed them).
// Positions order the feed the same way on every replica: the log order.
type Pos struct {
	Index uint64
	Seq   uint32
}

// EndSeq as a Pos's Seq means "after every change of Index": resuming
// after Pos{N, EndSeq} delivers from index N+1 on.
const EndSeq = math.MaxUint32

// Less orders positions by index, then sequence.
func (p Pos) Less(q Pos) bool {
	return p.Index < q.Index || (p.Index == q.Index && p.Seq < q.Seq)
}

// String is the position as the feed writes it: "N.S" for a change, "N"
// for the end of index N (EndSeq).
func (p Pos) String() string {
	if p.Seq == EndSeq {
		return strconv.FormatUint(p.Index, 10)
	}
	return strconv.FormatUint(p.Index, 10) + "." + strconv.FormatUint(uint64(p.Seq), 10)
}

// ErrBadPosition: a position that is not "N" or "N.S" in decimal.
var ErrBadPosition = errors.New("bad position")

// ParsePos reads what Pos.String writes: "N" (the end of index N) or
// "N.S" (change S of index N), decimal, N and S without signs or spaces,
// S below EndSeq.
func ParsePos(s string) (Pos, error) {
	is, ss, dotted := strings.Cut(s, ".")
	index, err := strconv.ParseUint(is, 10, 64)
	if err != nil || is == "" || is[0] == '+' {
		return Pos{}, fmt.Errorf("%w: %q is not N or N.S", ErrBadPosition, s)
	}
	if !dotted {
		return Pos{Index: index, Seq: EndSeq}, nil
	}
	seq, err := strconv.ParseUint(ss, 10, 32)
	if err != nil || ss == "" || ss[0] == '+' || seq >= EndSeq {
		return Pos{}, fmt.Errorf("%w: %q is not N or N.S", ErrBadPosition, s)
	}
	return Pos{Index: index, Seq: uint32(seq)}, nil
}

// Event is one change to one key, as the change feed delivers it.
//
// For a put, Value is the new value, ModIndex the entry's index,
// CreateIndex the key's (new or kept) create index and PrevModIndex the
// mod index the key had before (0: it did not exist). For a delete or an
// expiry, Value is "", ModIndex the index of the entry that removed the
// key, CreateIndex the removed key's create index and PrevModIndex its
// last mod index.
//
// Key and Value may share memory with the stored entry; an Event is a
// value and never changes.
type Event struct {
	Pos          Pos
	Type         EventType
	Key          string
	Value        string
	CreateIndex  uint64
	ModIndex     uint64
	PrevModIndex uint64

	// size is the key and value bytes the event keeps alive: a delete's
	// key shares the removed item's string, value and all. It is set when
	// the event is made and kept in snapshots, so it is the same on every
	// replica whatever its memory looks like.
	size uint32
}

// eventOverhead is what the history counts for an event besides its key
// and value: the struct in the ring and the string headers, rounded up.
const eventOverhead = 96

// cost is what an event counts against the history's byte bound. It is a
// function of the event alone, so every replica counts alike.
func (e *Event) cost() int64 { return eventOverhead + int64(e.size) }

// Matches reports whether the event's key is under prefix.
func (e *Event) Matches(prefix string) bool { return strings.HasPrefix(e.Key, prefix) }

// The emit functions below are how Apply reports changes; each is called
// under the write lock, by the code that made the change, with the item it
// stored or removed. They allocate nothing: the event shares the item's
// string.

// emitPut records that it was stored at index, replacing an item whose mod
// index was prevMod (0: none).
func (f *FSM) emitPut(index uint64, it item, prevMod uint64) {
	f.hist.add(Event{Type: EventPut, Key: it.key(), Value: it.value(), CreateIndex: it.createIndex, ModIndex: index, PrevModIndex: prevMod, size: uint32(len(it.kv))}, index)
}

// emitDelete records that old was deleted by the entry at index.
func (f *FSM) emitDelete(index uint64, old item) {
	f.hist.add(Event{Type: EventDelete, Key: old.key(), CreateIndex: old.createIndex, ModIndex: index, PrevModIndex: old.modIndex, size: uint32(len(old.kv))}, index)
}

// emitExpire records that old expired (its TTL or lease ran out) and was
// removed by the entry at index. It is the one call the code that applies
// an expiry (TTLs, leases) makes per key: from Apply, under the write lock,
// right after removing the key, in the order the keys are removed. It only
// records the event; removing the key is the caller's.
func (f *FSM) emitExpire(index uint64, old item) {
	f.hist.add(Event{Type: EventExpire, Key: old.key(), CreateIndex: old.createIndex, ModIndex: index, PrevModIndex: old.modIndex, size: uint32(len(old.kv))}, index)
}
