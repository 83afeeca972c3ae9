package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
)

// TestIdempotencyKeyReuse: a request id that comes back with the same
// request replays the first outcome; with a different one (any field the
// client chose) it is refused with ErrIdempotencyKeyReused, applies
// nothing, and leaves the remembered outcome as it was.
func TestIdempotencyKeyReuse(t *testing.T) {
	first := Command{Op: OpSet, Key: "k", Value: "v1", HasCAS: true, CAS: 0, RequestID: "req"}
	tests := []struct {
		name   string
		retry  Command
		replay bool
	}{
		{"same request", first, true},
		{"different value", Command{Op: OpSet, Key: "k", Value: "v2", HasCAS: true, CAS: 0, RequestID: "req"}, false},
		{"different key", Command{Op: OpSet, Key: "k2", Value: "v1", HasCAS: true, CAS: 0, RequestID: "req"}, false},
		{"different op", Command{Op: OpDelete, Key: "k", HasCAS: true, CAS: 0, RequestID: "req"}, false},
		{"different compare index", Command{Op: OpSet, Key: "k", Value: "v1", HasCAS: true, CAS: 1, RequestID: "req"}, false},
		{"no compare", Command{Op: OpSet, Key: "k", Value: "v1", RequestID: "req"}, false},
		{"empty value", Command{Op: OpSet, Key: "k", HasCAS: true, CAS: 0, RequestID: "req"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New()
			applyAll(t, f, setLog(1, "other", "x"), cmdLog(2, first))
			before, snap := stateOf(f), persist(t, f)
			res := applyAll(t, f, cmdLog(3, tt.retry))[0].(*Result)
			if tt.replay {
				if !res.Replayed || res.Err != nil || res.Index != 2 {
					t.Fatalf("retry = %+v, want a replay of index 2", res)
				}
			} else {
				if !errors.Is(res.Err, ErrIdempotencyKeyReused) || res.Replayed || res.Index != 3 {
					t.Fatalf("reuse = %+v, want ErrIdempotencyKeyReused at index 3, not replayed", res)
				}
			}
			after := stateOf(f)
			before.Stats.AppliedIndex = 3 // the entry is applied as a no-op
			requireState(t, after, before)
			// The remembered outcome is the first request's still: the
			// snapshot differs from before only by the applied index.
			snap2 := persist(t, f)
			if want := rewriteApplied(t, snap, 3); !bytes.Equal(snap2, want) {
				t.Fatalf("request table changed:\n  %q\nwant\n  %q", snap2, want)
			}
			again := applyAll(t, f, cmdLog(4, first))[0].(*Result)
			if !again.Replayed || again.Index != 2 || again.Err != nil {
				t.Fatalf("the original request after a reuse = %+v, want a replay of index 2", again)
			}
		})
	}
}

// rewriteApplied is snapshot b with the applied index set to applied (a
// one-byte uvarint in both) and the checksum recomputed.
func rewriteApplied(t *testing.T, b []byte, applied byte) []byte {
	t.Helper()
	at := len(snapshotMagic) + 1
	if b[at] >= 0x80 || applied >= 0x80 {
		t.Fatal("rewriteApplied handles one-byte indexes only")
	}
	out := slices.Clone(b[:len(b)-5])
	out[at] = applied
	sum := crc32.Checksum(out, crc32.MakeTable(crc32.Castagnoli))
	return binary.BigEndian.AppendUint32(append(out, 'E'), sum)
}

// TestRequestDigestLayout: a version 4 request record carries the first
// 16 bytes of the SHA-256 of the command's encoding after the version
// byte, without its request id, after the fields of version 2, as DESIGN.md and snapshot.go say.
func TestRequestDigestLayout(t *testing.T) {
	f := New()
	cmd := Command{Op: OpSet, Key: "k", Value: "v", HasCAS: true, CAS: 0, RequestID: "r1"}
	applyAll(t, f, cmdLog(1, cmd))
	plain := cmd
	plain.RequestID = ""
	sum := sha256.Sum256(plain.Encode(nil)[1:])
	want := buildSnapRequests(snapshotVersion, 1, []requestEntry{{ID: "r1", requestRecord: requestRecord{Index: 1, Digest: string(sum[:16])}}},
		[]Entry{{Key: "k", Value: "v", CreateIndex: 1, ModIndex: 1}},
		snapHist{events: []Event{{Pos: Pos{1, 0}, Type: EventPut, Key: "k", Value: "v", CreateIndex: 1, ModIndex: 1}}})
	if got := persist(t, f); !bytes.Equal(got, want) {
		t.Fatalf("snapshot =\n  %q\nwant\n  %q", got, want)
	}
}

// buildSnapRequests writes a snapshot with request records from the
// documented layout: version 2 or 3 records have no digest, versions
// before 5 no transaction outcome.
func buildSnapRequests(version byte, applied uint64, reqs []requestEntry, entries []Entry, hist ...snapHist) []byte {
	b := append([]byte("RAFTKVSN"), version)
	b = binary.AppendUvarint(b, applied)
	b = binary.AppendUvarint(b, 0) // nodes
	b = binary.AppendUvarint(b, uint64(len(entries)))
	b = binary.AppendUvarint(b, uint64(len(reqs)))
	if version >= 3 {
		b = binary.AppendUvarint(b, 0) // promotion marks
	}
	b = appendHistHeader(b, version, hist)
	for _, r := range reqs {
		b = str(append(b, 'R'), r.ID)
		b = binary.AppendUvarint(b, r.Index)
		b = binary.AppendUvarint(b, uint64(r.Outcome))
		b = binary.AppendUvarint(b, r.Current)
		if version >= 4 {
			b = str(b, r.Digest)
		}
		if version >= 5 {
			b = str(b, encodeTxnRecord(r.Txn))
		}
	}
	b = appendHistEvents(b, hist)
	return appendSnapTail(b, version, entries)
}

// TestRequestRecordsFromOldSnapshots: version 2 and 3 snapshots with
// request records still load; their records have no digest and so match
// any request under their id (the replay of before version 4), also after
// being written again as version 4.
func TestRequestRecordsFromOldSnapshots(t *testing.T) {
	reqs := []requestEntry{
		{ID: "set-1", requestRecord: requestRecord{Index: 5}},
		{ID: "del-1", requestRecord: requestRecord{Index: 6, Outcome: outcomeNotFound}},
		{ID: "cas-1", requestRecord: requestRecord{Index: 7, Outcome: outcomeCASFailed, Current: 5}},
	}
	entries := []Entry{{Key: "a", Value: "1", CreateIndex: 5, ModIndex: 5}}
	for _, version := range []byte{2, 3, 4} {
		t.Run(fmt.Sprint("version ", version), func(t *testing.T) {
			old := buildSnapRequests(version, 7, reqs, entries)
			info, err := VerifyBackup(bytes.NewReader(old))
			if err != nil || info.Requests != 3 {
				t.Fatalf("VerifyBackup = %+v, %v; want 3 requests", info, err)
			}
			for _, reload := range []bool{false, true} {
				f := restoreNew(t, old)
				if reload {
					b := persist(t, f)
					if b[len(snapshotMagic)] != snapshotVersion {
						t.Fatalf("written back as version %d", b[len(snapshotMagic)])
					}
					f = restoreNew(t, b)
				}
				before := stateOf(f)
				// Not what set-1 was: with no digest it still replays.
				res := applyAll(t, f,
					cmdLog(8, Command{Op: OpSet, Key: "a", Value: "other", RequestID: "set-1"}),
					cmdLog(9, Command{Op: OpDelete, Key: "zz", RequestID: "del-1"}),
					cmdLog(10, Command{Op: OpSet, Key: "a", Value: "x", HasCAS: true, CAS: 1, RequestID: "cas-1"}),
				)
				if r := res[0].(*Result); !r.Replayed || r.Err != nil || r.Index != 5 {
					t.Errorf("reload %v: set-1 = %+v, want replay of index 5", reload, r)
				}
				if r := res[1].(*Result); !r.Replayed || !errors.Is(r.Err, ErrKeyNotFound) || r.Index != 6 {
					t.Errorf("reload %v: del-1 = %+v, want replayed not-found at 6", reload, r)
				}
				if r := res[2].(*Result); !r.Replayed || !errors.Is(r.Err, ErrCASFailed) || r.Current != 5 || r.Index != 7 {
					t.Errorf("reload %v: cas-1 = %+v, want replayed compare failure (current 5) at 7", reload, r)
				}
				before.Stats.AppliedIndex = 10
				requireState(t, stateOf(f), before)
			}
		})
	}
}

// TestRequestDigestCorrupt: a version 4 request record whose digest is
// neither empty nor 16 bytes is corruption.
func TestRequestDigestCorrupt(t *testing.T) {
	for _, n := range []int{1, 15, 17, 32} {
		b := buildSnapRequests(4, 1, []requestEntry{{ID: "r", requestRecord: requestRecord{Index: 1, Digest: string(make([]byte, n))}}}, nil)
		f := New()
		if err := f.Restore(readCloser(b)); !errors.Is(err, ErrCorruptSnapshot) {
			t.Errorf("digest of %d bytes: Restore = %v, want ErrCorruptSnapshot", n, err)
		}
	}
	b := buildSnapRequests(4, 1, []requestEntry{{ID: "r", requestRecord: requestRecord{Index: 1}}}, nil)
	if err := New().Restore(readCloser(b)); err != nil {
		t.Errorf("empty digest: Restore = %v, want nil (a record from before version 4)", err)
	}
}

// TestRequestDigestDeterministic: replicas that apply the same log,
// retries and reused keys included, in different batches and with
// snapshots restored in between, write byte-identical snapshots.
func TestRequestDigestDeterministic(t *testing.T) {
	var logs []*raft.Log
	for i := uint64(1); i <= 600; i++ {
		id := fmt.Sprint("r", i%40)
		c := Command{Op: OpSet, Key: fmt.Sprint("k", i%13), Value: fmt.Sprint("v", i%3), RequestID: id}
		switch {
		case i%7 == 0:
			c = Command{Op: OpDelete, Key: c.Key, RequestID: id}
		case i%11 == 0:
			c.HasCAS, c.CAS = true, i-1
		case i%17 == 0:
			c.RequestID = ""
		}
		logs = append(logs, cmdLog(i, c))
	}
	run := func(batch, restoreAt int) ([]byte, []int) {
		f := New()
		var reused []int
		for i := 0; i < len(logs); i += batch {
			j := min(i+batch, len(logs))
			for k, r := range f.ApplyBatch(logs[i:j]) {
				if errors.Is(r.(*Result).Err, ErrIdempotencyKeyReused) {
					reused = append(reused, i+k)
				}
			}
			if restoreAt > 0 && i < restoreAt && restoreAt <= j {
				f = restoreNew(t, persist(t, f))
			}
		}
		return persist(t, f), reused
	}
	a, ra := run(1, 0)
	b, rb := run(64, 300)
	c, rc := run(7, 100)
	if len(ra) == 0 || len(ra) == len(logs) {
		t.Fatalf("%d of %d entries refused: the workload does not mix retries and reuses", len(ra), len(logs))
	}
	if !slices.Equal(ra, rb) || !slices.Equal(ra, rc) {
		t.Fatalf("refused entries differ: %v, %v, %v", ra, rb, rc)
	}
	if !bytes.Equal(a, b) || !bytes.Equal(a, c) {
		t.Fatalf("snapshots differ: %d, %d, %d bytes", len(a), len(b), len(c))
	}
}
