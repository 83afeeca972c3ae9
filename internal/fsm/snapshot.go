package fsm

import (
	"bufio"
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
//	header: applied index, node count, key count[, request count (v2)]
//	records: 'N' id addr              (node count times, ids ascending)
//	         'R' id index outcome cur (request count times, apply order; v2)
//	         'K' key value create mod (key count times, keys ascending)
//	trailer: 'E', then 4 bytes big-endian CRC-32C of everything before 'E'
//
// Records are tagged so later state (TTL tables, idempotency tables) can be
// added as new record kinds under a new version. The stream is written and
// read record by record: a snapshot is never held in one buffer.
const (
	snapshotMagic   = "RAFTKVSN"
	snapshotVersion = 2 // 2 added the request table; 1 still reads

	recNode    = 'N'
	recRequest = 'R'
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

func writeSnapshot(w io.Writer, applied uint64, nodes map[string]string, requests []requestEntry, tree *btree.BTreeG[item]) error {
	s := &snapWriter{w: bufio.NewWriterSize(w, 256<<10)}
	s.bytes([]byte(snapshotMagic))
	s.bytes([]byte{snapshotVersion})
	s.uvarint(applied)
	s.uvarint(uint64(len(nodes)))
	s.uvarint(uint64(tree.Len()))
	s.uvarint(uint64(len(requests)))

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
	}
	tree.Ascend(func(it item) bool {
		s.tag(recKey)
		s.str(it.key())
		s.str(it.value())
		s.uvarint(it.createIndex)
		s.uvarint(it.modIndex)
		return s.err == nil
	})
	if s.err != nil {
		return s.err
	}
	sum := s.sum
	if err := s.w.WriteByte(recEnd); err != nil {
		return err
	}
	if err := binary.Write(s.w, binary.BigEndian, sum); err != nil {
		return err
	}
	return s.w.Flush()
}

// restoredState is a fully read and verified snapshot.
type restoredState struct {
	applied  uint64
	nodes    map[string]string
	requests []requestEntry
	tree     *btree.BTreeG[item]
	bytes    int64
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
// one allocation, as the FSM stores them.
func (s *snapReader) item() item {
	klen := s.length()
	s.scratch = s.read(s.scratch[:0], klen)
	vlen := s.length()
	if s.err != nil {
		return item{}
	}
	kv := s.read(append(make([]byte, 0, klen+vlen), s.scratch...), vlen)
	it := item{
		kv:   unsafe.String(unsafe.SliceData(kv), len(kv)), // kv is never written again
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
	s := &snapReader{r: bufio.NewReaderSize(r, 256<<10), pending: make([]byte, 0, 4096)}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(s.r, magic); err != nil || string(magic) != snapshotMagic {
		return nil, fmt.Errorf("%w: not a raftkv snapshot", ErrCorruptSnapshot)
	}
	s.sum = crc32.Update(0, castagnoli, magic)
	version := s.byte()
	if s.err == nil && (version < 1 || version > snapshotVersion) {
		return nil, fmt.Errorf("%w: version %d, this build reads 1..%d", ErrCorruptSnapshot, version, snapshotVersion)
	}
	st := &restoredState{
		applied: s.uvarint(),
		nodes:   map[string]string{},
		tree:    btree.NewG(btreeDegree, itemLess),
	}
	nodeCount, keyCount := s.uvarint(), s.uvarint()
	var requestCount uint64
	if version >= 2 {
		requestCount = s.uvarint()
	}
	for i := uint64(0); i < nodeCount && s.err == nil; i++ {
		if t := s.byte(); t != recNode {
			s.fail("record %q where a node was expected", t)
			break
		}
		id, addr := s.str(), s.str()
		st.nodes[id] = addr
	}
	for i := uint64(0); i < requestCount && s.err == nil; i++ {
		if t := s.byte(); t != recRequest {
			s.fail("record %q where a request was expected", t)
			break
		}
		r := requestEntry{ID: s.str()}
		r.Index, r.Outcome, r.Current = s.uvarint(), uint8(s.uvarint()), s.uvarint()
		st.requests = append(st.requests, r)
	}
	var prev string
	for i := uint64(0); i < keyCount && s.err == nil; i++ {
		if t := s.byte(); t != recKey {
			s.fail("record %q where a key was expected", t)
			break
		}
		it := s.item()
		if s.err != nil {
			break
		}
		if i > 0 && it.key() <= prev {
			s.fail("keys out of order at %q", it.key())
			break
		}
		prev = it.key()
		st.tree.ReplaceOrInsert(it)
		st.bytes += int64(len(it.kv))
	}
	if s.err != nil {
		return nil, s.err
	}
	s.flush()
	want := s.sum
	end, err := s.r.ReadByte()
	if err != nil || end != recEnd {
		return nil, fmt.Errorf("%w: missing end record", ErrCorruptSnapshot)
	}
	var got uint32
	if err := binary.Read(s.r, binary.BigEndian, &got); err != nil {
		return nil, fmt.Errorf("%w: missing checksum", ErrCorruptSnapshot)
	}
	if got != want {
		return nil, fmt.Errorf("%w: checksum %08x, computed %08x", ErrCorruptSnapshot, got, want)
	}
	return st, nil
}
