package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// captureBytes writes a Capture of f and returns the bytes and the CRC.
func captureBytes(t testing.TB, f *FSM) ([]byte, uint32) {
	t.Helper()
	var buf bytes.Buffer
	crc, err := f.Capture().Write(&buf)
	if err != nil {
		t.Fatalf("Capture.Write: %v", err)
	}
	return buf.Bytes(), crc
}

// withRequests is smallFSM plus remembered idempotent requests.
func withRequests(t testing.TB) *FSM {
	f := smallFSM(t)
	applyAll(t, f,
		cmdLog(7, Command{Op: OpSet, Key: "d", Value: "dee", RequestID: "req-1"}),
		cmdLog(8, Command{Op: OpDelete, Key: "zz", RequestID: "req-2"}),
	)
	return f
}

func TestCaptureIsTheSnapshotFormat(t *testing.T) {
	f := withRequests(t)
	b, crc := captureBytes(t, f)
	if want := persist(t, f); !bytes.Equal(b, want) {
		t.Fatal("a backup differs from the snapshot of the same state")
	}
	if got := binary.BigEndian.Uint32(b[len(b)-4:]); got != crc {
		t.Fatalf("Write returned CRC %08x, trailer holds %08x", crc, got)
	}
	info, err := VerifyBackup(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("VerifyBackup: %v", err)
	}
	want := BackupInfo{Version: snapshotVersion, Applied: 8, Keys: 4, Nodes: 2, Requests: 2, Size: int64(len(b)), CRC: crc}
	info.keyBytes = 0
	if info != want {
		t.Fatalf("VerifyBackup = %+v, want %+v", info, want)
	}
	c := f.Capture()
	if c.AppliedIndex() != 8 || c.Keys() != 4 {
		t.Fatalf("Capture: applied %d keys %d, want 8 and 4", c.AppliedIndex(), c.Keys())
	}
}

func TestCaptureIsFrozen(t *testing.T) {
	f := smallFSM(t)
	c := f.Capture()
	applyAll(t, f, setLog(7, "a", "changed"), delLog(8, "c"), setLog(9, "new", "x"))
	var buf bytes.Buffer
	if _, err := c.Write(&buf); err != nil {
		t.Fatal(err)
	}
	requireState(t, stateOf(restoreNew(t, buf.Bytes())), stateOf(smallFSM(t)))
}

func TestScanBackup(t *testing.T) {
	f := withRequests(t)
	b, _ := captureBytes(t, f)
	var got []Entry
	info, err := ScanBackup(bytes.NewReader(b), func(e Entry) { got = append(got, e) })
	if err != nil {
		t.Fatalf("ScanBackup: %v", err)
	}
	if want := stateOf(f).Entries; !slices.Equal(got, want) {
		t.Fatalf("ScanBackup entries =\n  %+v\nwant\n  %+v", got, want)
	}
	if info.Keys != uint64(len(got)) {
		t.Fatalf("info.Keys = %d, want %d", info.Keys, len(got))
	}
}

// corruptions returns damaged variants of a valid stream b.
func corruptions(b []byte) map[string][]byte {
	out := map[string][]byte{
		"empty":            nil,
		"wrong magic":      append([]byte("RAFTKVSX"), b[8:]...),
		"trailing garbage": append(slices.Clone(b), 'x'),
		"trailing zeros":   append(slices.Clone(b), make([]byte, 4096)...),
		"two backups":      append(slices.Clone(b), b...),
		"wrong version":    append(append([]byte("RAFTKVSN"), 9), b[9:]...),
	}
	for n := range len(b) {
		out[fmt.Sprintf("truncated to %d", n)] = b[:n]
	}
	for i := range len(b) {
		c := slices.Clone(b)
		c[i] ^= 0x01
		out[fmt.Sprintf("byte %d flipped", i)] = c
	}
	return out
}

func TestVerifyBackupRefusesCorruptInput(t *testing.T) {
	b, _ := captureBytes(t, withRequests(t))
	for name, data := range corruptions(b) {
		t.Run(name, func(t *testing.T) {
			if _, err := VerifyBackup(bytes.NewReader(data)); !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("VerifyBackup = %v, want ErrCorruptSnapshot", err)
			}
			if _, err := WriteInstall(io.Discard, bytes.NewReader(data), 100, nil); !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("WriteInstall = %v, want ErrCorruptSnapshot", err)
			}
			// Restore (of raft's own snapshot files) is as strict.
			f := smallFSM(t)
			if err := f.Restore(readCloser(data)); !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore = %v, want ErrCorruptSnapshot", err)
			}
			requireState(t, stateOf(f), stateOf(smallFSM(t)))
		})
	}
	if _, err := VerifyBackup(bytes.NewReader(b)); err != nil {
		t.Fatalf("the undamaged backup: %v", err)
	}
}

func TestWriteInstall(t *testing.T) {
	big := strings.Repeat("v", 300) // lengths that need two-byte uvarints
	tests := []struct {
		name  string
		src   *FSM
		index uint64
		nodes map[string]string
	}{
		{"empty backup, no nodes", New(), 1, nil},
		{"small, live nodes replace the backup's", withRequests(t), 100, map[string]string{"b2": "127.0.0.1:8001", "b1": "127.0.0.1:8000"}},
		{"index needing 9 bytes", smallFSM(t), 1 << 62, map[string]string{"x": "h:1"}},
		{"long keys and values", func() *FSM {
			f := New()
			for i := range 50 {
				applyAll(t, f, setLog(uint64(i+1), strings.Repeat("k", 130+i), big))
			}
			return f
		}(), 70_000, map[string]string{"n1": "a:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := captureBytes(t, tt.src)
			info, err := VerifyBackup(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			info2, err := WriteInstall(&out, bytes.NewReader(b), tt.index, tt.nodes)
			if err != nil {
				t.Fatalf("WriteInstall: %v", err)
			}
			if info2 != info {
				t.Fatalf("WriteInstall info %+v, VerifyBackup %+v", info2, info)
			}
			if got, want := int64(out.Len()), InstallSize(info, tt.index, tt.nodes); got != want {
				t.Fatalf("wrote %d bytes, InstallSize %d", got, want)
			}
			dst := smallFSM(t) // prior state must vanish entirely
			if err := dst.Restore(readCloser(out.Bytes())); err != nil {
				t.Fatalf("Restore of the install stream: %v", err)
			}
			var want []Entry
			for _, e := range stateOf(tt.src).Entries {
				e.CreateIndex, e.ModIndex = tt.index, tt.index
				want = append(want, e)
			}
			got := stateOf(dst)
			if !slices.Equal(got.Entries, want) {
				t.Fatalf("restored entries =\n  %+v\nwant\n  %+v", got.Entries, want)
			}
			wantNodes := tt.nodes
			if wantNodes == nil {
				wantNodes = map[string]string{}
			}
			if !maps.Equal(got.Nodes, wantNodes) {
				t.Fatalf("nodes = %v, want %v", got.Nodes, wantNodes)
			}
			if got.Stats.AppliedIndex != tt.index || got.Stats.Bytes != stateOf(tt.src).Stats.Bytes {
				t.Fatalf("stats %+v, want applied %d and bytes %d", got.Stats, tt.index, stateOf(tt.src).Stats.Bytes)
			}
			if len(dst.requests) != 0 || len(dst.requestLog()) != 0 {
				t.Fatalf("idempotency table survived the restore: %v", dst.requests)
			}
			// A request id remembered in the backup applies afresh.
			res := applyAll(t, dst, cmdLog(tt.index+1, Command{Op: OpSet, Key: "d", Value: "again", RequestID: "req-1"}))
			if r := res[0].(*Result); r.Replayed {
				t.Fatal("a request id from the backup was replayed after the install")
			}
		})
	}
}

// failWriter fails every write after the first n bytes.
type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errors.New("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestWriteInstallStopsOnWriteError(t *testing.T) {
	f := New()
	var logs []*raft.Log
	for i := range 20_000 {
		logs = append(logs, setLog(uint64(i+1), fmt.Sprintf("key-%06d", i), strings.Repeat("x", 100)))
	}
	applyAll(t, f, logs...)
	b, _ := captureBytes(t, f)
	src := bytes.NewReader(b)
	_, err := WriteInstall(&failWriter{n: 1000}, src, 5, nil)
	if err == nil || errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("WriteInstall = %v, want the writer's error", err)
	}
	// It stopped early rather than decoding the rest for nothing (the
	// reader is buffered 256 KiB at a time).
	if left := src.Len(); left == 0 {
		t.Fatal("WriteInstall read the whole source after its writer failed")
	}
}
