package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
)

func markLog(index uint64, id string) *raft.Log {
	return cmdLog(index, Command{Op: OpMarkPromotion, NodeID: id})
}

func dropLog(index uint64, id string) *raft.Log {
	return cmdLog(index, Command{Op: OpDropPromotion, NodeID: id})
}

// buildSnapMarks is buildSnap for version 3 or later (no requests) with
// promotion marks, written from the documented layout.
func buildSnapMarks(version byte, applied uint64, nodes [][2]string, promote []string, entries []Entry, hist ...snapHist) []byte {
	b := append([]byte("RAFTKVSN"), version)
	b = binary.AppendUvarint(b, applied)
	b = binary.AppendUvarint(b, uint64(len(nodes)))
	b = binary.AppendUvarint(b, uint64(len(entries)))
	b = binary.AppendUvarint(b, 0) // no remembered requests
	b = binary.AppendUvarint(b, uint64(len(promote)))
	b = appendHistHeader(b, version, hist)
	for _, n := range nodes {
		b = str(append(b, 'N'), n[0])
		b = str(b, n[1])
	}
	for _, id := range promote {
		b = str(append(b, 'P'), id)
	}
	b = appendHistEvents(b, hist)
	return appendSnapTail(b, version, entries)
}

func TestPromotionMarksApply(t *testing.T) {
	f := New()
	steps := []struct {
		log  *raft.Log
		want []string
	}{
		{markLog(1, "n3"), []string{"n3"}},
		{markLog(2, "n1"), []string{"n1", "n3"}},
		{markLog(3, "n3"), []string{"n1", "n3"}}, // marking twice keeps one mark
		{markLog(4, "n2"), []string{"n1", "n2", "n3"}},
		{dropLog(5, "n9"), []string{"n1", "n2", "n3"}}, // dropping an absent mark changes nothing
		{dropLog(6, "n2"), []string{"n1", "n3"}},
		{forgetLog(7, "n1"), []string{"n1", "n3"}}, // forgetting the address is not dropping the mark
		{dropLog(8, "n1"), []string{"n3"}},
		{dropLog(9, "n3"), []string{}},
	}
	for _, st := range steps {
		res := applyAll(t, f, st.log)[0].(*Result)
		if res.Err != nil {
			t.Fatalf("entry %d: %v", st.log.Index, res.Err)
		}
		if got := f.PendingPromotions(); !slices.Equal(got, st.want) {
			t.Fatalf("after entry %d: marks %q, want %q", st.log.Index, got, st.want)
		}
		for _, id := range []string{"n1", "n2", "n3"} {
			if got, want := f.PromotionPending(id), slices.Contains(st.want, id); got != want {
				t.Fatalf("after entry %d: PromotionPending(%s) = %v, want %v", st.log.Index, id, got, want)
			}
		}
	}
	// The returned list is a copy.
	applyAll(t, f, markLog(10, "a"))
	got := f.PendingPromotions()
	got[0] = "changed"
	if f.PendingPromotions()[0] != "a" {
		t.Fatal("PendingPromotions shares its slice with the FSM")
	}
}

func TestPromotionMarksSnapshot(t *testing.T) {
	f := New()
	applyAll(t, f, regLog(1, "n1", "h1:1"), markLog(2, "n4"), markLog(3, "n2"), setLog(4, "k", "v"))

	snap := persist(t, f)
	want := buildSnapMarks(snapshotVersion, 4, [][2]string{{"n1", "h1:1"}}, []string{"n2", "n4"},
		[]Entry{{Key: "k", Value: "v", CreateIndex: 4, ModIndex: 4}},
		snapHist{events: []Event{{Pos: Pos{4, 0}, Type: EventPut, Key: "k", Value: "v", CreateIndex: 4, ModIndex: 4}}})
	if !bytes.Equal(snap, want) {
		t.Fatalf("snapshot =\n  %q\nwant\n  %q", snap, want)
	}
	dst := restoreNew(t, snap)
	requireState(t, stateOf(dst), stateOf(f))
	if got := persist(t, dst); !bytes.Equal(got, snap) {
		t.Fatal("restored state snapshots to different bytes")
	}

	// A snapshot taken before a mark is dropped keeps it (the snapshot is
	// frozen), and restoring it brings the mark back.
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	applyAll(t, f, dropLog(5, "n2"))
	if got := restoreNew(t, persistSnap(t, s)).PendingPromotions(); !slices.Equal(got, []string{"n2", "n4"}) {
		t.Fatalf("frozen snapshot restores marks %q, want [n2 n4]", got)
	}

	info, err := VerifyBackup(bytes.NewReader(snap))
	if err != nil || info.Version != snapshotVersion || info.Promotions != 2 {
		t.Fatalf("VerifyBackup = %+v, %v; want version %d with 2 promotions", info, err, snapshotVersion)
	}
}

// Versions 1 and 2 have no promotion marks: they load as none, replacing
// the marks a restored FSM had.
func TestPromotionMarksOldSnapshotVersions(t *testing.T) {
	entries := []Entry{{Key: "a", Value: "1", CreateIndex: 1, ModIndex: 1}}
	for _, version := range []byte{1, 2} {
		f := New()
		applyAll(t, f, markLog(1, "stale"))
		if err := f.Restore(readCloser(buildSnap(version, 7, [][2]string{{"n1", "h:1"}}, entries))); err != nil {
			t.Fatalf("version %d: Restore: %v", version, err)
		}
		if got := f.PendingPromotions(); len(got) != 0 {
			t.Fatalf("version %d: marks %q after restore, want none", version, got)
		}
		if e, ok := f.Get("a"); !ok || e.Value != "1" || f.AppliedIndex() != 7 {
			t.Fatalf("version %d: Get(a) = %+v %v, applied %d", version, e, ok, f.AppliedIndex())
		}
		// It is written back as the current version.
		if got := persist(t, f); got[len("RAFTKVSN")] != snapshotVersion {
			t.Fatalf("version %d: rewritten as version %d, want %d", version, got[len("RAFTKVSN")], snapshotVersion)
		}
	}
}

func TestPromotionMarksCorruptSnapshot(t *testing.T) {
	for name, promote := range map[string][]string{
		"out of order": {"n2", "n1"},
		"duplicate":    {"n1", "n1"},
		"empty id":     {""},
	} {
		t.Run(name, func(t *testing.T) {
			f := New()
			applyAll(t, f, markLog(1, "keep"))
			err := f.Restore(readCloser(buildSnapMarks(snapshotVersion, 2, nil, promote, nil)))
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore = %v, want ErrCorruptSnapshot", err)
			}
			if got := f.PendingPromotions(); !slices.Equal(got, []string{"keep"}) {
				t.Fatalf("marks %q after a refused restore, want [keep]", got)
			}
		})
	}
	// A count that disagrees with the records.
	good := buildSnapMarks(snapshotVersion, 2, nil, []string{"n1"}, nil)
	countAt := len("RAFTKVSN") + 1 + 4 // magic, version, applied, nodes, keys, requests
	for _, n := range []byte{0, 2} {
		bad := bytes.Clone(good)
		bad[countAt] = n
		if err := New().Restore(readCloser(bad)); !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("promotion count %d for one record: Restore = %v, want ErrCorruptSnapshot", n, err)
		}
	}
	restoreNew(t, good)
}

// Replicas that apply the same entries hold the same marks and write the
// same snapshot bytes, whatever order the marks were added in.
func TestPromotionMarksDeterministic(t *testing.T) {
	ids := []string{"n5", "n1", "n9", "n3", "n7", "n2"}
	var first []byte
	for round := range 4 {
		order := slices.Clone(ids)
		// A different, fixed permutation each round.
		for i := range order {
			j := (i*(round+3) + round) % len(order)
			order[i], order[j] = order[j], order[i]
		}
		f := New()
		for i, id := range order {
			applyAll(t, f, markLog(uint64(i+1), id))
		}
		applyAll(t, f, dropLog(uint64(len(order)+1), "n9"))
		if got, want := f.PendingPromotions(), []string{"n1", "n2", "n3", "n5", "n7"}; !slices.Equal(got, want) {
			t.Fatalf("round %d (order %q): marks %q, want %q", round, order, got, want)
		}
		snap := persist(t, f)
		if first == nil {
			first = snap
		} else if !bytes.Equal(snap, first) {
			t.Fatalf("round %d (order %q): snapshot bytes differ", round, order)
		}
	}
}
