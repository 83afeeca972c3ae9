package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// memSink is an in-memory raft.SnapshotSink. With failAfter >= 0, a write
// that would take the stored size past failAfter bytes fails.
type memSink struct {
	buf       bytes.Buffer
	failAfter int
	closed    bool
	cancelled bool
}

var _ raft.SnapshotSink = (*memSink)(nil)

var errSinkFull = errors.New("sink full")

func newMemSink() *memSink { return &memSink{failAfter: -1} }

func (s *memSink) Write(p []byte) (int, error) {
	if s.closed || s.cancelled {
		return 0, errors.New("write to finished sink")
	}
	if s.failAfter >= 0 && s.buf.Len()+len(p) > s.failAfter {
		return 0, errSinkFull
	}
	return s.buf.Write(p)
}

func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) ID() string    { return "mem" }

// trackRC is the io.ReadCloser handed to Restore; it records Close.
type trackRC struct {
	*bytes.Reader
	closed bool
}

func (r *trackRC) Close() error { r.closed = true; return nil }

func readCloser(b []byte) *trackRC { return &trackRC{Reader: bytes.NewReader(b)} }

func persistSnap(t testing.TB, s raft.FSMSnapshot) []byte {
	t.Helper()
	sink := newMemSink()
	if err := s.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	s.Release()
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v after successful Persist", sink.closed, sink.cancelled)
	}
	return sink.buf.Bytes()
}

func persist(t testing.TB, f *FSM) []byte {
	t.Helper()
	s, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return persistSnap(t, s)
}

func restoreNew(t testing.TB, b []byte) *FSM {
	t.Helper()
	f := New()
	rc := readCloser(b)
	if err := f.Restore(rc); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !rc.closed {
		t.Fatal("Restore did not close its reader")
	}
	return f
}

// buildSnap encodes a snapshot by hand from the documented layout, with a
// valid checksum, so tests can express streams writeSnapshot never makes.
func buildSnap(version byte, applied uint64, nodes [][2]string, entries []Entry, hist ...snapHist) []byte {
	b := []byte("RAFTKVSN")
	b = append(b, version)
	b = binary.AppendUvarint(b, applied)
	b = binary.AppendUvarint(b, uint64(len(nodes)))
	b = binary.AppendUvarint(b, uint64(len(entries)))
	if version >= 2 {
		b = binary.AppendUvarint(b, 0) // no remembered requests
	}
	if version >= 3 {
		b = binary.AppendUvarint(b, 0) // no promotion marks
	}
	b = appendHistHeader(b, version, hist)
	for _, n := range nodes {
		b = str(append(b, 'N'), n[0])
		b = str(b, n[1])
	}
	b = appendHistEvents(b, hist)
	return appendSnapTail(b, version, entries)
}

// smallFSM holds a little of everything: nodes, an empty value, overwrites.
func smallFSM(t testing.TB) *FSM {
	f := New()
	applyAll(t, f,
		regLog(1, "n2", "10.0.0.2:8000"),
		regLog(2, "n1", "10.0.0.1:8000"),
		setLog(3, "b", "bee"),
		setLog(4, "a", ""),
		setLog(5, "c", "sea"),
		setLog(6, "b", "bumble"),
	)
	return f
}

func TestSnapshotMatchesDocumentedLayout(t *testing.T) {
	tests := []struct {
		name    string
		fsm     func(testing.TB) *FSM
		applied uint64
		nodes   [][2]string
		entries []Entry
		hist    snapHist
	}{
		{"empty", func(testing.TB) *FSM { return New() }, 0, nil, nil, snapHist{}},
		{"small", smallFSM, 6,
			[][2]string{{"n1", "10.0.0.1:8000"}, {"n2", "10.0.0.2:8000"}},
			[]Entry{
				{Key: "a", Value: "", CreateIndex: 4, ModIndex: 4},
				{Key: "b", Value: "bumble", CreateIndex: 3, ModIndex: 6},
				{Key: "c", Value: "sea", CreateIndex: 5, ModIndex: 5},
			},
			snapHist{events: []Event{
				{Pos: Pos{3, 0}, Type: EventPut, Key: "b", Value: "bee", CreateIndex: 3, ModIndex: 3},
				{Pos: Pos{4, 0}, Type: EventPut, Key: "a", Value: "", CreateIndex: 4, ModIndex: 4},
				{Pos: Pos{5, 0}, Type: EventPut, Key: "c", Value: "sea", CreateIndex: 5, ModIndex: 5},
				{Pos: Pos{6, 0}, Type: EventPut, Key: "b", Value: "bumble", CreateIndex: 3, ModIndex: 6, PrevModIndex: 3},
			}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := persist(t, tt.fsm(t))
			want := buildSnap(snapshotVersion, tt.applied, tt.nodes, tt.entries, tt.hist)
			if !bytes.Equal(got, want) {
				t.Fatalf("snapshot =\n  %q\nwant\n  %q", got, want)
			}
		})
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	many := func(n, valueLen int) []*raft.Log {
		logs := make([]*raft.Log, n)
		for i := range logs {
			logs[i] = setLog(uint64(i+1), fmt.Sprintf("key-%06d", i), strings.Repeat("v", valueLen))
		}
		return logs
	}
	tests := []struct {
		name string
		logs []*raft.Log
	}{
		{"empty", nil},
		{"one key", []*raft.Log{setLog(7, "k", "v")}},
		{"empty value", []*raft.Log{setLog(1, "k", "")}},
		{"nodes only", []*raft.Log{regLog(1, "n1", "a:1"), regLog(2, "n2", "b:2")}},
		{"binary keys and values", []*raft.Log{setLog(1, "\x00", "\xff\x00"), setLog(2, "\xff\xfe", "\n"), setLog(3, "\x00\x00", "")}},
		{"overwrites and deletes", []*raft.Log{setLog(1, "a", "1"), setLog(2, "b", "2"), setLog(3, "a", "3"), delLog(4, "b"), confLog(5)}},
		{"value larger than the stream buffers", []*raft.Log{setLog(1, "big", strings.Repeat("x", 600<<10)), setLog(2, "small", "y")}},
		{"many keys", many(5000, 20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := New()
			if len(tt.logs) > 0 {
				applyAll(t, src, tt.logs...)
			}
			want := stateOf(src)
			snap := persist(t, src)

			dst := restoreNew(t, snap)
			requireState(t, stateOf(dst), want)
			if dst.AppliedIndex() != src.AppliedIndex() {
				t.Errorf("AppliedIndex = %d, want %d", dst.AppliedIndex(), src.AppliedIndex())
			}
			for _, e := range want.Entries {
				if got, ok := dst.Get(e.Key); !ok || got != e {
					t.Fatalf("Get(%q) = %+v, %v; want %+v", e.Key, got, ok, e)
				}
			}
			// Restored state snapshots to the very same bytes.
			if again := persist(t, dst); !bytes.Equal(again, snap) {
				t.Fatal("snapshot of restored FSM differs from the original snapshot")
			}
		})
	}
}

func TestRestoreReplacesState(t *testing.T) {
	src := New()
	applyAll(t, src, setLog(8, "a", "1"), setLog(9, "m", "2"), regLog(10, "n1", "h1:1"))
	want := stateOf(src)
	snap := persist(t, src)

	dst := New()
	applyAll(t, dst,
		setLog(100, "a", "other"), setLog(101, "x", "gone"), setLog(102, "z", "gone too"),
		regLog(103, "n9", "h9:9"), regLog(104, "n1", "stale:1"),
	)
	if err := dst.Restore(readCloser(snap)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	requireState(t, stateOf(dst), want)
	for _, k := range []string{"x", "z"} {
		if e, ok := dst.Get(k); ok {
			t.Errorf("Get(%q) = %+v after Restore, want absent", k, e)
		}
	}
	if _, ok := dst.NodeHTTPAddr("n9"); ok {
		t.Error("node n9 survived Restore")
	}

	// The restored FSM keeps working: an overwrite keeps the snapshot's
	// create index, and Stats follow.
	applyAll(t, dst, setLog(11, "a", "three"))
	if e, _ := dst.Get("a"); e != (Entry{Key: "a", Value: "three", CreateIndex: 8, ModIndex: 11}) {
		t.Fatalf("Get(a) after restore+set = %+v", e)
	}
	if got, want := dst.Stats(), (Stats{Keys: 2, Bytes: 1 + 5 + 1 + 1, AppliedIndex: 11}); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
}

// workload is a fixed mix of every kind of entry, deterministic in n.
func workload(n int) []*raft.Log {
	logs := make([]*raft.Log, 0, n)
	for i := 1; i <= n; i++ {
		idx := uint64(i)
		var l *raft.Log
		switch {
		case i%97 == 0:
			l = confLog(idx)
		case i%50 == 0:
			l = regLog(idx, fmt.Sprintf("n%d", i%7), fmt.Sprintf("10.0.0.%d:8000", i%13))
		case i%71 == 0:
			l = forgetLog(idx, fmt.Sprintf("n%d", i%7))
		case i%5 == 0:
			l = delLog(idx, fmt.Sprintf("k%04d", (i*7)%400))
		case i%89 == 0:
			l = rawLog(idx, []byte{CommandVersion, 77})
		default:
			l = setLog(idx, fmt.Sprintf("k%04d", (i*13)%400), strings.Repeat("v", i%30))
		}
		logs = append(logs, l)
	}
	return logs
}

func TestSnapshotDeterministic(t *testing.T) {
	logs := workload(3000)
	tests := []struct {
		name   string
		midA   int // take (and persist) a snapshot of A after this many logs; 0: none
		midB   int
		batchA int
		batchB int
	}{
		{"no mid snapshots", 0, 0, 1, 1},
		{"mid snapshot on one side", 1500, 0, 1, 1},
		{"mid snapshots at different points", 700, 2200, 1, 1},
		{"different batch sizes", 1000, 0, 64, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := func(mid, batch int) []byte {
				f := New()
				for i := 0; i < len(logs); i += batch {
					j := min(i+batch, len(logs))
					if i < mid && mid <= j {
						applyAll(t, f, logs[i:mid]...)
						persist(t, f)
						if j > mid {
							applyAll(t, f, logs[mid:j]...)
						}
						continue
					}
					applyAll(t, f, logs[i:j]...)
				}
				return persist(t, f)
			}
			a, b := run(tt.midA, tt.batchA), run(tt.midB, tt.batchB)
			if !bytes.Equal(a, b) {
				t.Fatalf("snapshots differ: %d and %d bytes", len(a), len(b))
			}
		})
	}
}

// Equal node tables give equal bytes however the map was filled.
func TestSnapshotNodeOrderDeterministic(t *testing.T) {
	const n = 40
	fwd, rev := New(), New()
	for i := range n {
		applyAll(t, fwd, regLog(uint64(i+1), fmt.Sprintf("node-%02d", i), fmt.Sprintf("h%d:1", i)))
		j := n - 1 - i
		applyAll(t, rev, regLog(uint64(i+1), fmt.Sprintf("node-%02d", j), fmt.Sprintf("h%d:1", j)))
	}
	if a, b := persist(t, fwd), persist(t, rev); !bytes.Equal(a, b) {
		t.Fatal("snapshots of equal node tables differ")
	}
}

func TestSnapshotCopyOnWrite(t *testing.T) {
	for _, concurrent := range []bool{false, true} {
		t.Run(fmt.Sprint("concurrent=", concurrent), func(t *testing.T) {
			f := New()
			var logs []*raft.Log
			for i := range 2000 { // several levels of btree nodes
				logs = append(logs, setLog(uint64(i+1), fmt.Sprintf("k%05d", i), fmt.Sprint("v", i)))
			}
			logs = append(logs, regLog(2001, "n1", "h1:1"), regLog(2002, "n2", "h2:1"))
			applyAll(t, f, logs...)
			want := stateOf(f)
			snap, err := f.Snapshot()
			if err != nil {
				t.Fatal(err)
			}

			later := []*raft.Log{
				setLog(2003, "k00000", "overwritten"),
				delLog(2004, "k00001"),
				setLog(2005, "k99999", "new"),
				setLog(2006, "a-new-first-key", "new"),
				regLog(2007, "n3", "h3:1"),
				forgetLog(2008, "n1"),
				regLog(2009, "n2", "moved:1"),
			}
			for i := range 1000 {
				later = append(later, delLog(uint64(2010+i), fmt.Sprintf("k%05d", 1000+i)))
			}

			var data []byte
			if concurrent {
				sink := newMemSink()
				done := make(chan error)
				go func() { done <- snap.Persist(sink) }()
				for _, l := range later {
					f.Apply(l)
				}
				if err := <-done; err != nil {
					t.Fatalf("Persist: %v", err)
				}
				data = sink.buf.Bytes()
			} else {
				applyAll(t, f, later...)
				data = persistSnap(t, snap)
			}

			requireState(t, stateOf(restoreNew(t, data)), want)
			if e, _ := f.Get("k00000"); e.Value != "overwritten" {
				t.Fatalf("live FSM lost a later write: %+v", e)
			}
		})
	}
}

func TestPersistSinkError(t *testing.T) {
	big := New()
	for i := range 4000 {
		big.Apply(setLog(uint64(i+1), fmt.Sprintf("k%05d", i), strings.Repeat("v", 100)))
	}
	tests := []struct {
		name      string
		fsm       *FSM
		failAfter int
	}{
		{"small, fails at flush", smallFSM(t), 0},
		{"large, fails mid-stream", big, 100 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.fsm.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			sink := &memSink{failAfter: tt.failAfter}
			err = s.Persist(sink)
			if !errors.Is(err, errSinkFull) {
				t.Fatalf("Persist = %v, want errSinkFull", err)
			}
			if !sink.cancelled || sink.closed {
				t.Fatalf("sink cancelled=%v closed=%v, want cancelled only", sink.cancelled, sink.closed)
			}
		})
	}
}

func TestRestoreCorrupt(t *testing.T) {
	base := persist(t, smallFSM(t))
	entries := []Entry{{Key: "a", Value: "1", CreateIndex: 1, ModIndex: 1}, {Key: "b", Value: "2", CreateIndex: 2, ModIndex: 2}}
	with := func(b []byte, i int, v byte) []byte {
		c := slices.Clone(b)
		c[i] = v
		return c
	}
	oversized := []byte("RAFTKVSN\x01\x00\x01\x00N")
	oversized = binary.AppendUvarint(oversized, maxSnapshotString+1)

	type tc struct {
		name string
		data []byte
	}
	tests := []tc{
		{"empty", nil},
		{"not a snapshot", []byte("hello, world")},
		{"wrong magic", with(base, 0, 'X')},
		{"magic lower case", append([]byte("raftkvsn"), base[8:]...)},
		{"wrong version 0", buildSnap(0, 2, nil, entries)},
		{"wrong version next", buildSnap(snapshotVersion+1, 2, nil, entries)},
		{"keys out of order", buildSnap(snapshotVersion, 2, nil, []Entry{entries[1], entries[0]})},
		{"duplicate keys", buildSnap(snapshotVersion, 2, nil, []Entry{entries[0], entries[0]})},
		{"empty key after empty key", buildSnap(snapshotVersion, 2, nil, []Entry{{}, {}})},
		{"checksum flipped", with(base, len(base)-1, base[len(base)-1]^0xff)},
		{"end record missing", with(base, len(base)-5, 'X')},
		{"oversized string", oversized},
		{"trailer only", []byte("RAFTKVSN\x01\x00\x00\x00")},
	}
	// A key count that disagrees with the records.
	{
		good := buildSnap(snapshotVersion, 2, nil, entries)
		countAt := len("RAFTKVSN") + 1 + 1 + 1 // magic, version, applied, nodes
		tests = append(tests,
			tc{"key count too small", with(good, countAt, 1)},
			tc{"key count too large", with(good, countAt, 3)},
			tc{"node count too large", with(good, countAt-1, 1)},
		)
	}
	for n := range len(base) {
		tests = append(tests, tc{fmt.Sprintf("truncated to %d", n), base[:n]})
	}
	for i := range len(base) {
		for _, mask := range []byte{0x01, 0x80} {
			tests = append(tests, tc{fmt.Sprintf("byte %d xor %#x", i, mask), with(base, i, base[i]^mask)})
		}
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New()
			applyAll(t, f, setLog(40, "keep", "me"), regLog(41, "n7", "h7:7"))
			before := stateOf(f)
			rc := readCloser(tt.data)
			err := f.Restore(rc)
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore = %v, want ErrCorruptSnapshot", err)
			}
			if !rc.closed {
				t.Error("Restore did not close its reader")
			}
			requireState(t, stateOf(f), before)
		})
	}

	// The unmodified base restores, so the cases above fail for their
	// corruption and not for something else.
	restoreNew(t, base)
	restoreNew(t, buildSnap(snapshotVersion, 2, nil, entries))
	restoreNew(t, buildSnap(1, 2, nil, entries)) // version 1 still reads
	restoreNew(t, buildSnap(2, 2, nil, entries)) // version 2 still reads
}

// appendSnapTail ends a hand-built snapshot of the given version: the key
// records, no leases (from the lease version on), and the checksummed
// trailer.
func appendSnapTail(b []byte, version byte, entries []Entry) []byte {
	for _, e := range entries {
		b = str(append(b, 'K'), e.Key)
		b = str(b, e.Value)
		b = binary.AppendUvarint(b, e.CreateIndex)
		b = binary.AppendUvarint(b, e.ModIndex)
	}
	if version >= snapshotLeases {
		b = append(b, 0, 0) // no leases, no attachments
	}
	sum := crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
	return binary.BigEndian.AppendUint32(append(b, 'E'), sum)
}

// str appends a length-prefixed string, as snapshot records write one.
func str(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}
