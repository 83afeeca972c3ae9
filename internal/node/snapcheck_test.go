package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
)

// flipNewestSnapshot flips one byte in the middle of the newest snapshot's
// state.bin under dir and returns that snapshot's id.
func flipNewestSnapshot(t *testing.T, dir string) string {
	t.Helper()
	snaps, err := raft.NewFileSnapshotStore(dir, 5, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	metas, err := snaps.List()
	if err != nil || len(metas) == 0 {
		t.Fatalf("list snapshots: %d, %v", len(metas), err)
	}
	path := filepath.Join(dir, snapshotsDir, metas[0].ID, "state.bin")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return metas[0].ID
}

func snapshotNow(t *testing.T, n *Node) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	index, _, err := n.Snapshot(ctx)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return index
}

func setN(prefix string, count int) []*fsm.Command {
	var cmds []*fsm.Command
	for i := range count {
		cmds = append(cmds, &fsm.Command{Op: fsm.OpSet, Key: fmt.Sprintf("%s%d", prefix, i), Value: "v"})
	}
	return cmds
}

// TestCorruptSnapshotFallsBack: with the log still reaching back to the
// older snapshot, a corrupt newest snapshot is set aside (not deleted, out
// of raft's directory) and the node starts from the older one plus the log,
// with every key.
func TestCorruptSnapshotFallsBack(t *testing.T) {
	for _, store := range []string{LogStoreBolt, LogStoreWAL} {
		t.Run(store, func(t *testing.T) {
			cfg := testConfig(t.TempDir(), store)
			n := openLeader(t, cfg)
			apply(t, n, setN("a", 5)...)
			snapshotNow(t, n)
			apply(t, n, setN("b", 5)...)
			snapshotNow(t, n)
			apply(t, n, setN("c", 5)...)
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			bad := flipNewestSnapshot(t, cfg.Dir)

			n = openLeader(t, cfg)
			for _, k := range []string{"a4", "b4", "c4"} {
				if _, ok := linearizableGet(t, n, k); !ok {
					t.Errorf("%s missing after falling back", k)
				}
			}
			if _, err := os.Stat(filepath.Join(cfg.Dir, corruptDir, bad, "state.bin")); err != nil {
				t.Errorf("corrupt snapshot not set aside: %v", err)
			}
			if _, err := os.Stat(filepath.Join(cfg.Dir, snapshotsDir, bad)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("corrupt snapshot still in %s: %v", snapshotsDir, err)
			}
		})
	}
}

// TestCorruptSnapshotGapAlone: when the log no longer reaches back to the
// older snapshot and no other member could send a copy, Open refuses with
// ErrCorruptState instead of raft panicking ("log not found") in the
// background on every start.
func TestCorruptSnapshotGapAlone(t *testing.T) {
	for _, store := range []string{LogStoreBolt, LogStoreWAL} {
		t.Run(store, func(t *testing.T) {
			cfg := testConfig(t.TempDir(), store)
			cfg.SnapshotThreshold = 4 // and TrailingLogs 4: compactions leave a gap
			cfg.SnapshotInterval = time.Hour
			n := openLeader(t, cfg)
			apply(t, n, setN("a", 10)...)
			snapshotNow(t, n)
			apply(t, n, setN("b", 10)...)
			snapshotNow(t, n)
			apply(t, n, setN("c", 3)...)
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			flipNewestSnapshot(t, cfg.Dir)

			n, err := Open(cfg)
			if err == nil {
				_ = n.Close()
				t.Fatal("Open started a node whose log has a gap after its only intact snapshot")
			}
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("Open: %v, want ErrCorruptState", err)
			}
		})
	}
}

// panickyStore panics where raft reads the volume at start.
type panickyStore struct{ logStore }

func (panickyStore) GetUint64([]byte) (uint64, error) { panic("unreadable page") }

// TestOpenRecoversRaftPanic: a panic while raft reads the volume at start
// becomes ErrCorruptState (exit 1 in the binary), not a crash (exit 2).
func TestOpenRecoversRaftPanic(t *testing.T) {
	cfg := testConfig(t.TempDir(), LogStoreBolt)
	cfg.wrapStore = func(s logStore) logStore { return panickyStore{s} }
	n, err := Open(cfg)
	if err == nil {
		_ = n.Close()
		t.Fatal("Open succeeded on a store that panics")
	}
	if !errors.Is(err, ErrCorruptState) {
		t.Fatalf("Open: %v, want ErrCorruptState", err)
	}
}

// TestVerifySnapshot: an intact snapshot passes; a flipped byte fails
// raft's CRC-64; the same flip with meta.json's CRC-64 rewritten to match
// (a snapshot written wrong, not damaged later) still fails the FSM's own
// checks.
func TestVerifySnapshot(t *testing.T) {
	cfg := testConfig(t.TempDir(), LogStoreBolt)
	n := openLeader(t, cfg)
	apply(t, n, setN("a", 20)...)
	snapshotNow(t, n)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	names, err := os.ReadDir(filepath.Join(cfg.Dir, snapshotsDir))
	if err != nil || len(names) != 1 {
		t.Fatalf("snapshots: %v %v", names, err)
	}
	id := names[0].Name()
	if err := verifySnapshot(cfg.Dir, id); err != nil {
		t.Fatalf("intact snapshot: %v", err)
	}
	flipNewestSnapshot(t, cfg.Dir)
	if err := verifySnapshot(cfg.Dir, id); err == nil || !strings.Contains(err.Error(), "CRC-64") {
		t.Fatalf("flipped byte: %v, want a CRC-64 mismatch", err)
	}
	state, err := os.ReadFile(filepath.Join(cfg.Dir, snapshotsDir, id, "state.bin"))
	if err != nil {
		t.Fatal(err)
	}
	metaPath := filepath.Join(cfg.Dir, snapshotsDir, id, "meta.json")
	b, err := os.ReadFile(metaPath)
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	sum := crc64.New(crc64.MakeTable(crc64.ECMA))
	sum.Write(state)
	meta["CRC"] = sum.Sum(nil)
	if b, err = json.Marshal(meta); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(metaPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := verifySnapshot(cfg.Dir, id); !errors.Is(err, fsm.ErrCorruptSnapshot) {
		t.Fatalf("flipped byte under a matching CRC-64: %v, want fsm.ErrCorruptSnapshot", err)
	}
}

// TestCorruptRestoredVolume: a volume the offline restore wrote holds one
// snapshot and no log. With that snapshot corrupt nothing is left, and raft
// alone would bootstrap a new, empty cluster on it: Open refuses instead.
func TestCorruptRestoredVolume(t *testing.T) {
	src := openLeader(t, testConfig(t.TempDir(), LogStoreBolt))
	apply(t, src, setN("a", 5)...)
	var backup bytes.Buffer
	if _, err := src.FSM().Capture().Write(&backup); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t.TempDir(), LogStoreBolt)
	cfg.RaftAdvertise = "127.0.0.1:1"
	if _, err := RestoreVolume(cfg, bytes.NewReader(backup.Bytes()), false); err != nil {
		t.Fatal(err)
	}
	cfg.RaftAdvertise = ""
	flipNewestSnapshot(t, cfg.Dir)
	n, err := Open(cfg)
	if err == nil {
		_ = n.Close()
		t.Fatal("Open started on a restored volume whose only snapshot is corrupt")
	}
	if !errors.Is(err, ErrCorruptState) {
		t.Fatalf("Open: %v, want ErrCorruptState", err)
	}
}
