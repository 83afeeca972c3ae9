package fsm

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"unsafe"

	"github.com/google/btree"
)

// Snapshot stream layout (all integers uvarint, strings uvarint-length-prefixed):
//
//	magic "RAFTKVSN", version byte
//	header: applied index, node count, key count[, request count (v2)][, promotion count (v3)]
//	        [, event count, floor index, floor seq (v6)]
//	records: 'N' id addr              (node count times, ids ascending)
//	         'R' id index outcome cur[ digest][ txn] (request count times, apply order; v2; digest v4; txn v5)
//	         'P' id                   (promotion count times, ids strictly ascending; v3)
//	         'V' index seq type key value create mod prevmod size
//	                                  (event count times, positions strictly ascending, after the floor; v6)
//	         'K' key value create mod (key count times, keys ascending)
//	         lease count, 'L' id ttl refreshed remaining since ofKey (ids ascending; v5)
//	         attachment count, 'A' lease key ((lease, key) ascending; v5)
//	trailer: 'E', then 4 bytes big-endian CRC-32C of everything before 'E'
//
// Records are tagged so later state (TTL tables, idempotency tables) can be
// added as new record kinds under a new version. The stream is written and
// read record by record: a snapshot is never held in one buffer.
const (
	snapshotMagic = "RAFTKVSN"
	// 2 added the request table, 3 the promotion marks, 4 the request
	// digest, 5 a transaction's outcome in its request record (a string,
	// "" for other commands: see encodeTxnRecord), 6 the change history
	// (historyVersion), 7 the leases (snapshotLeases); 1 to 6 still read
	// (as having none of what came later).
	snapshotVersion = 7
	// historyVersion is the first version with the change history; an
	// older stream restores with an empty history whose floor is its
	// applied index.
	historyVersion = 6
	// snapshotLeases is the first version with leases (lease_snapshot.go).
	snapshotLeases = 7

	recNode    = 'N'
	recRequest = 'R'
	recPromote = 'P'
	recEvent   = 'V'
	recKey     = 'K'
	recEnd     = 'E'
)

// ErrCorruptSnapshot means a snapshot stream failed to decode or verify.
var ErrCorruptSnapshot = errors.New("corrupt snapshot")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapWriter accumulates a CRC as it writes; the first error sticks.
type snapWriter struct {
	w   *bufio.Writer
	sum uint32
	buf []byte
	err error
}

func (s *snapWriter) bytes(b []byte) {
	if s.err != nil {
		return
	}
	s.sum = crc32.Update(s.sum, castagnoli, b)
	_, s.err = s.w.Write(b)
}

func (s *snapWriter) uvarint(n uint64) {
	s.buf = binary.AppendUvarint(s.buf[:0], n)
	s.bytes(s.buf)
}

func (s *snapWriter) str(v string) {
	s.uvarint(uint64(len(v)))
	if s.err != nil {
		return
	}
	// The CRC only reads the bytes; viewing the string avoids a copy per value.
	s.sum = crc32.Update(s.sum, castagnoli, unsafe.Slice(unsafe.StringData(v), len(v)))
	_, s.err = s.w.WriteString(v)
}

func (s *snapWriter) tag(t byte) {
	s.buf = append(s.buf[:0], t)
	s.bytes(s.buf)
}

// writeSnapshot writes the captured state as a stream and returns the
// checksum in its trailer.
// promote must be sorted (the FSM keeps it so).
func writeSnapshot(w io.Writer, snap *snapshot) (uint32, error) {
	applied, nodes, promote, requests, tree := snap.applied, snap.nodes, snap.promote, snap.requests, snap.tree
	s := &snapWriter{w: bufio.NewWriterSize(w, 256<<10)}
	s.bytes([]byte(snapshotMagic))
	s.bytes([]byte{snapshotVersion})
	s.uvarint(applied)
	s.uvarint(uint64(len(nodes)))
	s.uvarint(uint64(tree.Len()))
	s.uvarint(uint64(len(requests)))
	s.uvarint(uint64(len(promote)))
	s.uvarint(uint64(len(snap.events))) // v6
	s.uvarint(snap.floor.Index)
	s.uvarint(uint64(snap.floor.Seq))

	ids := make([]string, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids) // deterministic bytes for identical states
	for _, id := range ids {
		s.tag(recNode)
		s.str(id)
		s.str(nodes[id])
	}
	for _, r := range requests {
		s.tag(recRequest)
		s.str(r.ID)
		s.uvarint(r.Index)
		s.uvarint(uint64(r.Outcome))
		s.uvarint(r.Current)
		s.str(r.Digest)               // v4
		s.str(encodeTxnRecord(r.Txn)) // v5
	}
	for _, id := range promote {
		s.tag(recPromote)
		s.str(id)
	}
	for i := range snap.events {
		e := &snap.events[i]
		s.tag(recEvent)
		s.uvarint(e.Pos.Index)
		s.uvarint(uint64(e.Pos.Seq))
		s.uvarint(uint64(e.Type))
		s.str(e.Key)
		s.str(e.Value)
		s.uvarint(e.CreateIndex)
		s.uvarint(e.ModIndex)
		s.uvarint(e.PrevModIndex)
		s.uvarint(uint64(e.size))
	}
	tree.Ascend(func(it item) bool {
		s.tag(recKey)
		s.str(it.key())
		s.str(it.value())
		s.uvarint(it.createIndex)
		s.uvarint(it.modIndex)
		return s.err == nil
	})
	s.leases(snap.leases, snap.attach)
	return s.finish()
}

// finish writes the end record and checksum and flushes.
func (s *snapWriter) finish() (uint32, error) {
	if s.err != nil {
		return 0, s.err
	}
	sum := s.sum
	if err := s.w.WriteByte(recEnd); err != nil {
		return 0, err
	}
	if err := binary.Write(s.w, binary.BigEndian, sum); err != nil {
		return 0, err
	}
	return sum, s.w.Flush()
}

// restoredState is a fully read and verified snapshot.
type restoredState struct {
	applied  uint64
	nodes    map[string]string
	promote  []string // ascending
	requests []requestEntry
	tree     *btree.BTreeG[item]
	bytes    int64
	floor    Pos
	events   []Event
	leases   *btree.BTreeG[leaseItem]
	attach   *btree.BTreeG[attachItem]
	keyLease *btree.BTreeG[attachItem]
}

// snapReader checksums what it consumes. Single bytes are batched in
// pending so the CRC is updated in runs, not once per byte.
type snapReader struct {
	r       *bufio.Reader
	sum     uint32
	pending []byte
	scratch []byte // holds a key until its value's length is known
	err     error
}

func (s *snapReader) fail(format string, args ...any) {
	if s.err == nil {
		s.err = fmt.Errorf("%w: %s", ErrCorruptSnapshot, fmt.Sprintf(format, args...))
	}
}

func (s *snapReader) flush() {
	s.sum = crc32.Update(s.sum, castagnoli, s.pending)
	s.pending = s.pending[:0]
}

func (s *snapReader) byte() byte {
	if s.err != nil {
		return 0
	}
	b, err := s.r.ReadByte()
	if err != nil {
		s.fail("read: %v", err)
		return 0
	}
	if len(s.pending) == cap(s.pending) {
		s.flush()
	}
	s.pending = append(s.pending, b)
	return b
}

func (s *snapReader) ReadByte() (byte, error) { return s.byte(), s.err }

func (s *snapReader) uvarint() uint64 {
	if s.err != nil {
		return 0
	}
	n, err := binary.ReadUvarint(s)
	if err != nil {
		s.fail("varint: %v", err)
	}
	return n
}

// maxSnapshotString bounds a single string so a corrupt length cannot make
// Restore allocate gigabytes.
const maxSnapshotString = 256 << 20

func (s *snapReader) str() string {
	b := s.read(nil, s.length())
	return unsafe.String(unsafe.SliceData(b), len(b)) // b is never written again
}

// item reads a key record's key, value and indexes; key and value land in
// one allocation, as the FSM stores them. With reuse they land in a buffer
// the next call overwrites.
func (s *snapReader) item(reuse bool) item {
	klen := s.length()
	s.scratch = s.read(s.scratch[:0], klen)
	vlen := s.length()
	if s.err != nil {
		return item{}
	}
	var kv []byte
	if reuse {
		s.scratch = s.read(s.scratch, vlen)
		kv = s.scratch
	} else {
		kv = s.read(append(make([]byte, 0, klen+vlen), s.scratch...), vlen)
	}
	it := item{
		kv:   unsafe.String(unsafe.SliceData(kv), len(kv)), // kv is not written again while it is used
		klen: uint32(klen),
	}
	it.createIndex, it.modIndex = s.uvarint(), s.uvarint()
	return it
}

// length reads a string length, bounded by maxSnapshotString.
func (s *snapReader) length() int {
	n := s.uvarint()
	if s.err == nil && n > maxSnapshotString {
		s.fail("string of %d bytes", n)
	}
	if s.err != nil {
		return 0
	}
	return int(n)
}

// read appends n bytes from the stream to dst, checksumming them.
func (s *snapReader) read(dst []byte, n int) []byte {
	if s.err != nil {
		return dst
	}
	start := len(dst)
	dst = append(dst, make([]byte, n)...)
	if _, err := io.ReadFull(s.r, dst[start:]); err != nil {
		s.fail("read string: %v", err)
		return dst
	}
	s.flush()
	s.sum = crc32.Update(s.sum, castagnoli, dst[start:])
	return dst
}

func readSnapshot(r io.Reader) (*restoredState, error) {
	st := &restoredState{
		nodes:    map[string]string{},
		tree:     btree.NewG(btreeDegree, itemLess),
		leases:   newLeaseTree(),
		attach:   newAttachTree(),
		keyLease: newKeyLeaseTree(),
	}
	var bad error
	_, err := decodeSnapshot(r, snapshotVisitor{
		header: func(h snapshotHeader) { st.applied, st.floor = h.applied, h.floor },
		event:  func(e Event) { st.events = append(st.events, e) },
		node:   func(id, addr string) { st.nodes[id] = addr },
		request: func(r requestEntry) {
			st.requests = append(st.requests, r)
		},
		promote: func(id string) { st.promote = append(st.promote, id) },
		key: func(it item) {
			st.tree.ReplaceOrInsert(it)
			st.bytes += int64(len(it.kv))
		},
		lease:  func(l leaseItem) { st.leases.ReplaceOrInsert(l) },
		attach: func(a attachItem) { bad = cmp.Or(bad, st.restoreAttach(a)) },
	})
	if err != nil {
		return nil, err
	}
	if bad == nil {
		bad = st.checkKeyLeases()
	}
	if bad != nil {
		return nil, bad
	}
	return st, nil
}

// snapshotHeader is a stream's header as read.
type snapshotHeader struct {
	version                       byte
	applied                       uint64
	nodeCount, keyCount, reqCount uint64
	promoteCount                  uint64
	eventCount                    uint64
	// floor is the history's floor (v6); before v6, the applied index's
	// end: the history starts there.
	floor Pos
}

// snapshotVisitor receives a stream's parts in order while it is decoded.
// Nothing a visitor saw counts until decodeSnapshot returns nil: the
// checksum is only known at the end.
type snapshotVisitor struct {
	header  func(snapshotHeader)
	node    func(id, addr string)
	request func(requestEntry)
	promote func(id string)
	event   func(Event)
	key     func(item)
	lease   func(leaseItem)
	attach  func(attachItem)
	// leaseCount and attachCount get the counts before their records.
	leaseCount, attachCount func(uint64)
	// reuseKeys lets key records share one buffer: the item passed to key
	// is valid only during the call. For visitors that keep nothing.
	reuseKeys bool
	// failed, if set, is asked after each key; an error ends decoding.
	failed func() error
}

// decodedInfo is what decodeSnapshot learns besides the records.
type decodedInfo struct {
	header snapshotHeader
	size   int64  // bytes consumed, trailer included
	crc    uint32 // the verified checksum
	// keyBytes sums, over key records, the tag and the length-prefixed key
	// and value: everything of a key record but its two indexes.
	keyBytes int64
	// leases and attachments counts them; leaseBytes sums what WriteInstall
	// writes of them but the two indexes of each lease.
	leases, attachments int64
	leaseBytes          int64
}

// countingReader counts the bytes its reader returned.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// decodeSnapshot reads and verifies a whole stream, record by record,
// handing each to v: magic, version, counts that agree with the records,
// strictly ascending keys, the end record and its checksum, and nothing
// after it.
func decodeSnapshot(r io.Reader, v snapshotVisitor) (decodedInfo, error) {
	var info decodedInfo
	cr := &countingReader{r: r}
	s := &snapReader{r: bufio.NewReaderSize(cr, 256<<10), pending: make([]byte, 0, 4096)}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(s.r, magic); err != nil || string(magic) != snapshotMagic {
		return info, fmt.Errorf("%w: not a raftkv snapshot", ErrCorruptSnapshot)
	}
	s.sum = crc32.Update(0, castagnoli, magic)
	h := snapshotHeader{version: s.byte()}
	if s.err == nil && (h.version < 1 || h.version > snapshotVersion) {
		return info, fmt.Errorf("%w: version %d, this build reads 1..%d", ErrCorruptSnapshot, h.version, snapshotVersion)
	}
	h.applied = s.uvarint()
	h.nodeCount, h.keyCount = s.uvarint(), s.uvarint()
	if h.version >= 2 {
		h.reqCount = s.uvarint()
	}
	if h.version >= 3 {
		h.promoteCount = s.uvarint()
	}
	h.floor = Pos{Index: h.applied, Seq: EndSeq}
	if h.version >= historyVersion {
		h.eventCount = s.uvarint()
		h.floor.Index = s.uvarint()
		seq := s.uvarint()
		if s.err == nil && (seq > EndSeq || h.floor.Index > h.applied) {
			s.fail("history floor %d.%d beyond applied index %d", h.floor.Index, seq, h.applied)
		}
		h.floor.Seq = uint32(seq)
	}
	if s.err != nil {
		return info, s.err
	}
	info.header = h
	if v.header != nil {
		v.header(h)
	}
	for i := uint64(0); i < h.nodeCount && s.err == nil; i++ {
		if t := s.byte(); t != recNode {
			s.fail("record %q where a node was expected", t)
			break
		}
		id, addr := s.str(), s.str()
		if s.err == nil && v.node != nil {
			v.node(id, addr)
		}
	}
	for i := uint64(0); i < h.reqCount && s.err == nil; i++ {
		if t := s.byte(); t != recRequest {
			s.fail("record %q where a request was expected", t)
			break
		}
		r := requestEntry{ID: s.str()}
		r.Index, r.Outcome, r.Current = s.uvarint(), uint8(s.uvarint()), s.uvarint()
		if h.version >= 4 {
			r.Digest = s.str()
		}
		if h.version >= 5 {
			txn, err := decodeTxnRecord(s.str())
			if err != nil && s.err == nil {
				s.fail("request %q: %v", r.ID, err)
			}
			r.Txn = txn
		}
		maxOutcome := outcomeCASFailed
		if h.version >= snapshotLeases {
			maxOutcome = outcomeNoTTL
		}
		if s.err == nil && r.Outcome > maxOutcome {
			s.fail("request %q has outcome %d", r.ID, r.Outcome)
		}
		if s.err == nil && r.Digest != "" && len(r.Digest) != digestSize {
			s.fail("request %q has a digest of %d bytes", r.ID, len(r.Digest))
		}
		if s.err == nil && v.request != nil {
			v.request(r)
		}
	}
	var prevPromote string
	for i := uint64(0); i < h.promoteCount && s.err == nil; i++ {
		if t := s.byte(); t != recPromote {
			s.fail("record %q where a promotion mark was expected", t)
			break
		}
		id := s.str()
		if s.err == nil && (id == "" || (i > 0 && id <= prevPromote)) {
			s.fail("promotion mark %q empty or out of order", id)
		}
		prevPromote = id
		if s.err == nil && v.promote != nil {
			v.promote(id)
		}
	}
	prevPos := h.floor
	for i := uint64(0); i < h.eventCount && s.err == nil; i++ {
		if t := s.byte(); t != recEvent {
			s.fail("record %q where an event was expected", t)
			break
		}
		e := Event{Pos: Pos{Index: s.uvarint()}}
		seq := s.uvarint()
		typ := s.uvarint()
		e.Key, e.Value = s.str(), s.str()
		e.CreateIndex, e.ModIndex, e.PrevModIndex = s.uvarint(), s.uvarint(), s.uvarint()
		size := s.uvarint()
		if s.err != nil {
			break
		}
		e.Pos.Seq, e.Type, e.size = uint32(seq), EventType(typ), uint32(size)
		switch {
		case seq >= EndSeq || !prevPos.Less(e.Pos) || e.Pos.Index > h.applied:
			s.fail("event at %d.%d out of order (after %s, applied %d)", e.Pos.Index, seq, prevPos, h.applied)
		case typ < uint64(EventPut) || typ > uint64(EventExpire):
			s.fail("event %s has type %d", e.Pos, typ)
		case size > 1<<32-1 || size < uint64(len(e.Key)+len(e.Value)):
			s.fail("event %s has size %d", e.Pos, size)
		}
		prevPos = e.Pos
		if s.err == nil && v.event != nil {
			v.event(e)
		}
	}
	// prev is the previous key; copied into prevBuf when items share a
	// buffer, else the item's own (immutable) string.
	var prev string
	var prevBuf []byte
	for i := uint64(0); i < h.keyCount && s.err == nil; i++ {
		if t := s.byte(); t != recKey {
			s.fail("record %q where a key was expected", t)
			break
		}
		it := s.item(v.reuseKeys)
		if s.err != nil {
			break
		}
		if i > 0 && it.key() <= prev {
			s.fail("keys out of order at %q", it.key())
			break
		}
		if v.reuseKeys {
			prevBuf = append(prevBuf[:0], it.key()...)
			prev = unsafe.String(unsafe.SliceData(prevBuf), len(prevBuf))
		} else {
			prev = it.key()
		}
		info.keyBytes += 1 + int64(uvarintLen(uint64(it.klen))+uvarintLen(uint64(len(it.kv))-uint64(it.klen))+len(it.kv))
		if v.key != nil {
			v.key(it)
		}
		if v.failed != nil {
			if err := v.failed(); err != nil {
				return info, err
			}
		}
	}
	if s.err == nil && h.version >= snapshotLeases {
		s.readLeases(&info, v)
	}
	if s.err != nil {
		return info, s.err
	}
	s.flush()
	want := s.sum
	end, err := s.r.ReadByte()
	if err != nil || end != recEnd {
		return info, fmt.Errorf("%w: missing end record", ErrCorruptSnapshot)
	}
	var got uint32
	if err := binary.Read(s.r, binary.BigEndian, &got); err != nil {
		return info, fmt.Errorf("%w: missing checksum", ErrCorruptSnapshot)
	}
	if got != want {
		return info, fmt.Errorf("%w: checksum %08x, computed %08x", ErrCorruptSnapshot, got, want)
	}
	// A stream ends at its checksum; anything after it means the input is
	// not what it claims to be (two files concatenated, a bad upload).
	if _, err := s.r.ReadByte(); err != io.EOF {
		if err == nil {
			return info, fmt.Errorf("%w: data after the end record", ErrCorruptSnapshot)
		}
		return info, fmt.Errorf("%w: read after the end record: %v", ErrCorruptSnapshot, err)
	}
	info.size = cr.n
	info.crc = got
	return info, nil
}

// uvarintLen is the encoded length of n as a uvarint.
func uvarintLen(n uint64) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}
