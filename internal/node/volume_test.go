package node

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/fsm"
)

func quietLogger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// testConfig is a one-node cluster on dir with the given log store and
// short timings.
func testConfig(dir, store string) Config {
	return Config{
		ID: "n1", Dir: dir, LogStore: store, WALSegmentSize: 64 << 10,
		RaftBind: "127.0.0.1:0", HTTPAdvertise: "127.0.0.1:1", Bootstrap: true, SnapshotRetain: 2,
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond,
		Logger:             quietLogger(),
	}
}

// openLeader opens a node on cfg and waits until it leads and serves
// linearizable reads.
func openLeader(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := n.WaitLeader(ctx); err != nil {
		t.Fatalf("no leader: %v", err)
	}
	if err := n.waitReady(ctx); err != nil {
		t.Fatalf("leader not ready: %v", err)
	}
	return n
}

func apply(t *testing.T, n *Node, cmds ...*fsm.Command) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for _, c := range cmds {
		if _, err := n.Apply(ctx, c); err != nil {
			t.Fatalf("apply %s %s: %v", c.Op, c.Key, err)
		}
	}
}

// linearizableGet reads key after a read index, as the API's default read does.
func linearizableGet(t *testing.T, n *Node, key string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	index, err := n.ReadIndex(ctx)
	if err != nil {
		t.Fatalf("read index: %v", err)
	}
	if err := n.fsm.WaitApplied(ctx, index); err != nil {
		t.Fatalf("wait applied %d: %v", index, err)
	}
	e, ok := n.fsm.Get(key)
	return e.Value, ok
}

// TestRestoreVolumeForce is the offline restore over a used volume on both
// log stores: after a backup, one key is deleted and another written; the
// node restored with force must hold exactly the backup. A log left behind
// (wal/ once was) would replay the later writes on top of the backup.
func TestRestoreVolumeForce(t *testing.T) {
	for _, store := range []string{LogStoreBolt, LogStoreWAL} {
		t.Run(store, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig(dir, store)
			n := openLeader(t, cfg)
			apply(t, n,
				&fsm.Command{Op: fsm.OpSet, Key: "kept", Value: "1"},
				&fsm.Command{Op: fsm.OpSet, Key: "deleted-later", Value: "2"})
			var backup bytes.Buffer
			if _, err := n.FSM().Capture().Write(&backup); err != nil {
				t.Fatal(err)
			}
			apply(t, n,
				&fsm.Command{Op: fsm.OpDelete, Key: "deleted-later"},
				&fsm.Command{Op: fsm.OpSet, Key: "written-later", Value: "3"},
				&fsm.Command{Op: fsm.OpSet, Key: "kept", Value: "changed"})
			raftAddr := n.RaftAddr()
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}

			rcfg := cfg
			rcfg.RaftAdvertise = raftAddr
			if _, err := RestoreVolume(rcfg, bytes.NewReader(backup.Bytes()), false); !errors.Is(err, ErrVolumeNotEmpty) {
				t.Fatalf("restore into a used volume without force: %v, want ErrVolumeNotEmpty", err)
			}
			res, err := RestoreVolume(rcfg, bytes.NewReader(backup.Bytes()), true)
			if err != nil {
				t.Fatalf("restore with force: %v", err)
			}
			if res.Backup.Keys != 2 || res.Index != res.Backup.Applied+1 {
				t.Fatalf("restore result %+v", res)
			}
			want := []string{filepath.Join(dir, snapshotsDir)}
			if store == LogStoreWAL {
				want = append(want, filepath.Join(dir, walDir))
			} else {
				want = append(want, filepath.Join(dir, boltFile))
			}
			for _, p := range want {
				if !slices.Contains(res.Removed, p) {
					t.Errorf("removed %v, want %s among them", res.Removed, p)
				}
			}

			n = openLeader(t, rcfg)
			for key, want := range map[string]string{"kept": "1", "deleted-later": "2"} {
				if v, ok := linearizableGet(t, n, key); !ok || v != want {
					t.Errorf("%s after the restore: %q (present %v), want %q as in the backup", key, v, ok, want)
				}
			}
			if v, ok := linearizableGet(t, n, "written-later"); ok {
				t.Errorf("written-later after the restore: %q, want absent (written after the backup)", v)
			}
			apply(t, n, &fsm.Command{Op: fsm.OpSet, Key: "after", Value: "restore"})
			if v, _ := linearizableGet(t, n, "after"); v != "restore" {
				t.Errorf("write after the restore read back as %q", v)
			}
		})
	}
}

// TestRestoreVolumeRefuses: an invalid backup writes nothing (not even the
// volume directory), and a volume a running node holds is not cleared.
func TestRestoreVolumeRefuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	cfg := testConfig(dir, LogStoreBolt)
	cfg.RaftAdvertise = "127.0.0.1:7000"
	if _, err := RestoreVolume(cfg, bytes.NewReader([]byte("not a backup")), true); err == nil {
		t.Fatal("a garbage backup was restored")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused restore touched the volume: %v", err)
	}

	for _, store := range []string{LogStoreBolt, LogStoreWAL} {
		t.Run("held "+store, func(t *testing.T) {
			cfg := testConfig(t.TempDir(), store)
			n := openLeader(t, cfg)
			var backup bytes.Buffer
			if _, err := n.FSM().Capture().Write(&backup); err != nil {
				t.Fatal(err)
			}
			cfg.RaftAdvertise = n.RaftAddr()
			res, err := RestoreVolume(cfg, bytes.NewReader(backup.Bytes()), true)
			if err == nil || len(res.Removed) != 0 {
				t.Fatalf("restore into a running node's volume: removed %v, err %v", res.Removed, err)
			}
		})
	}
}

// TestVolumeEntries: everything a node writes in its volume is in
// volumeEntries, on both log stores, so RestoreVolume's force clears it all.
func TestVolumeEntries(t *testing.T) {
	for _, store := range []string{LogStoreBolt, LogStoreWAL} {
		t.Run(store, func(t *testing.T) {
			dir := t.TempDir()
			n := openLeader(t, testConfig(dir, store))
			apply(t, n, &fsm.Command{Op: fsm.OpSet, Key: "k", Value: "v"})
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if _, _, err := n.Snapshot(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := n.UploadDir(); err != nil {
				t.Fatal(err)
			}
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if !slices.Contains(volumeEntries, e.Name()) {
					t.Errorf("the node wrote %s, which volumeEntries does not list", e.Name())
				}
			}
			if len(entries) != 3 {
				t.Errorf("volume holds %d entries, want 3 (log, snapshots, uploads)", len(entries))
			}
		})
	}
}
