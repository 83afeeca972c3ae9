package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
	"github.com/raftkv/raftkv/internal/testwait"
)

// snapshotOn asks n for a snapshot now (POST /snapshot).
func snapshotOn(t *testing.T, n *proc.Node) {
	t.Helper()
	code, body, err := n.Do(http.MethodPost, "/snapshot", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("snapshot on %s: %d %s %v", n.Name, code, bytes.TrimSpace(body), err)
	}
}

// newestSnapshot is the newest snapshot directory under a volume (raft
// names them term-index-millis, so the index decides).
func newestSnapshot(t *testing.T, volume string) string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(volume, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") {
			names = append(names, e.Name())
		}
	}
	if len(names) < 2 {
		t.Fatalf("%s holds %d snapshots, want at least 2: %v", volume, len(names), names)
	}
	index := func(name string) int {
		var term, idx, ms int
		_, _ = fmt.Sscanf(strings.ReplaceAll(name, "-", " "), "%d %d %d", &term, &idx, &ms)
		return idx
	}
	sort.Slice(names, func(i, j int) bool { return index(names[i]) > index(names[j]) })
	return names[0]
}

// TestCorruptFollowerSnapshot: one byte flipped in a stopped follower's
// newest snapshot, whose log no longer reaches back to its older one. On
// restart the follower sets the snapshot aside with one line, starts with an
// empty log, gets a fresh copy from the leader and serves every acknowledged
// key; it never panics (raft alone panics with "log not found" on every
// start).
func TestCorruptFollowerSnapshot(t *testing.T) {
	bin := raftkvBinary(t)
	for _, store := range []string{"boltdb", "wal"} {
		t.Run(store, func(t *testing.T) {
			c := proc.StartCluster(t, proc.ClusterConfig{Size: 3, Bin: bin, Dir: t.TempDir(), Formation: proc.JoinFirst,
				Env: map[string]string{
					"RAFT_LOG_STORE": store,
					// TrailingLogs follows the threshold: each compaction keeps 8
					// entries, so two snapshots 30 entries apart leave a gap.
					"RAFT_SNAPSHOT_THRESHOLD": "8", "RAFT_SNAPSHOT_INTERVAL": "1h", "LOG_LEVEL": "info",
				}})
			c.WaitVoters(30*time.Second, c.Nodes...)
			leader := c.WaitLeader(20 * time.Second)
			var f *proc.Node
			for _, n := range c.Nodes {
				if n != leader {
					f = n
					break
				}
			}
			var acked []string
			write := func(prefix string, count int) {
				for i := range count {
					key := fmt.Sprintf("%s-%02d", prefix, i)
					if err := set(leader, key, key); err != nil {
						t.Fatal(err)
					}
					acked = append(acked, key)
				}
			}
			caughtUp := func(n *proc.Node) {
				last := acked[len(acked)-1]
				testwait.For(t, 20*time.Second, n.Name+" to hold "+last, func() error {
					v, err := get(n, last, "stale")
					if err == nil && v != last {
						err = fmt.Errorf("%s = %q", last, v)
					}
					return err
				})
			}
			write("a", 30)
			caughtUp(f)
			snapshotOn(t, f)
			write("b", 30)
			caughtUp(f)
			snapshotOn(t, f)
			snapshotOn(t, leader) // the leader's log no longer starts at 1: a copy means InstallSnapshot
			write("c", 5)
			caughtUp(f)
			if err := f.Stop(20 * time.Second); err != nil {
				t.Fatalf("stop %s: %v", f.Name, err)
			}

			bad := newestSnapshot(t, f.Volume)
			state := filepath.Join(f.Volume, "snapshots", bad, "state.bin")
			b, err := os.ReadFile(state)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x01
			if err := os.WriteFile(state, b, 0o600); err != nil {
				t.Fatal(err)
			}
			write("d", 10) // while it is down

			f.Restart()
			caughtUp(f)
			for _, key := range acked {
				if v, err := get(f, key, "stale"); err != nil || v != key {
					t.Errorf("%s on %s after the restart: %q, %v", key, f.Name, v, err)
				}
			}
			testwait.For(t, 10*time.Second, f.Name+" to be ready", func() error {
				code, body, err := f.Do(http.MethodGet, "/ready", nil)
				if err == nil && code != http.StatusOK {
					err = fmt.Errorf("%d %s", code, bytes.TrimSpace(body))
				}
				return err
			})
			if _, err := os.Stat(filepath.Join(f.Volume, "snapshots-corrupt", bad, "state.bin")); err != nil {
				t.Errorf("the corrupt snapshot was not set aside: %v", err)
			}
			logText := f.Log()
			if strings.Contains(logText, "panic:") {
				t.Errorf("%s panicked:\n%s", f.Name, f.Tail(40))
			}
			if n := strings.Count(logText, "snapshot is corrupt"); n != 1 {
				t.Errorf("%d 'snapshot is corrupt' lines in %s's log, want 1", n, f.Name)
			}
			if !strings.Contains(logText, "starting with an empty log") {
				t.Errorf("%s's log does not say it started with an empty log:\n%s", f.Name, f.Tail(40))
			}
		})
	}
}
