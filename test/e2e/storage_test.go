package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
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
			// Having emptied its log, it withheld its vote until the leader had
			// caught it up, then voted again: one line each, in that order.
			held, released := strings.Index(logText, "vote withheld:"), strings.Index(logText, "vote hold released")
			if held < 0 || released < held || strings.Count(logText, "vote withheld:") != 1 || strings.Count(logText, "vote hold released") != 1 {
				t.Errorf("%s's log does not show one vote hold (at %d) and then its release (at %d):\n%s", f.Name, held, released, f.Tail(40))
			} else {
				t.Logf("%s", strings.TrimSpace(logText[released:released+strings.IndexByte(logText[released:]+"\n", '\n')]))
			}
			if st, err := f.Status(); err != nil || st.VoteWithheld {
				t.Errorf("%s's /status after catching up: vote_withheld %v, %v; want false", f.Name, st.VoteWithheld, err)
			}
			for _, n := range c.Nodes {
				if n != f && strings.Contains(n.Log(), "vote withheld") {
					t.Errorf("%s withheld its vote without any repair", n.Name)
				}
			}
			// raft-wal drops compacted entries a whole 64 MiB segment at a
			// time, so on wal the leader still has them and sends the log.
			if store == "boltdb" && !strings.Contains(logText, "Installed remote snapshot") {
				t.Errorf("%s caught up without installing the leader's snapshot:\n%s", f.Name, f.Tail(40))
			}
		})
	}
}

// exitsCleanly1 waits for n's run to end by itself and checks that it
// stopped the way a supervisor restarts: exit status 1 (a Go panic's is 2,
// which the shipped systemd unit does not restart), one error line naming
// the cause, no panic.
func exitsCleanly1(t *testing.T, n *proc.Node, want string) {
	t.Helper()
	err := n.Wait(30 * time.Second)
	var exit interface{ ExitCode() int }
	if err == nil || !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("%s exited with %v, want status 1:\n%s", n.Name, err, n.Tail(30))
	}
	logText := n.Log()
	if strings.Contains(logText, "panic:") || strings.Contains(logText, "goroutine ") {
		t.Errorf("%s panicked:\n%s", n.Name, n.Tail(40))
	}
	if !strings.Contains(logText, want) {
		t.Errorf("%s's log does not say %q:\n%s", n.Name, want, n.Tail(20))
	}
	t.Logf("%s stopped with:\n%s", n.Name, n.Tail(2))
}

// TestCorruptVolumeStops: a node whose volume cannot be used and that no
// other member could repair stops with one line and exit status 1, never a
// panic: its only intact snapshot is followed by a gap in the log, its bbolt
// file (log and stable store) does not open, its raft-wal meta database
// (the stable store) does not open.
func TestCorruptVolumeStops(t *testing.T) {
	bin := raftkvBinary(t)
	overwrite := func(t *testing.T, path string, at, n int) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(bytes.Repeat([]byte{0xAB}, n), int64(at)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name, store string
		damage      func(t *testing.T, volume string)
		want        string
	}{
		{"snapshot gap, only voter", "boltdb", func(t *testing.T, volume string) {
			state := filepath.Join(volume, "snapshots", newestSnapshot(t, volume), "state.bin")
			overwrite(t, state, 20, 1)
		}, "restore this node from a backup"},
		{"bolt file", "boltdb", func(t *testing.T, volume string) {
			overwrite(t, filepath.Join(volume, "raft.db"), 0, 16<<10) // both meta pages
		}, "open raft log"},
		{"bolt page", "boltdb", func(t *testing.T, volume string) {
			// bbolt's own open panics on a goroutine of its own here (exit 2).
			// A compacted log is small enough for bbolt to keep inline.
			damageBoltPage(t, filepath.Join(volume, "raft.db"), "")
		}, "raft.db is damaged"},
		{"wal meta database", "wal", func(t *testing.T, volume string) {
			overwrite(t, filepath.Join(volume, "wal", "wal-meta.db"), 0, 16<<10)
		}, "open raft log"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := proc.StartCluster(t, proc.ClusterConfig{Size: 1, Bin: bin, Dir: t.TempDir(), Formation: proc.JoinFirst,
				Env: map[string]string{"RAFT_LOG_STORE": tt.store, "RAFT_SNAPSHOT_THRESHOLD": "8", "RAFT_SNAPSHOT_INTERVAL": "1h"}})
			n := c.WaitLeader(20 * time.Second)
			for round := range 2 {
				for i := range 30 {
					key := fmt.Sprintf("k%d-%02d", round, i)
					if err := set(n, key, key); err != nil {
						t.Fatal(err)
					}
				}
				snapshotOn(t, n)
			}
			if err := n.Stop(20 * time.Second); err != nil {
				t.Fatalf("stop: %v", err)
			}
			tt.damage(t, n.Volume)
			n.Restart()
			exitsCleanly1(t, n, tt.want)
		})
	}
}

// tmpfsVolume mounts a tmpfs of size at dir/name (the volume of that node
// of a cluster in dir) until the test ends; it skips the test when not root.
func tmpfsVolume(t *testing.T, dir, name, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small tmpfs as the node's volume to fill it")
	}
	volume := filepath.Join(dir, name)
	if err := os.MkdirAll(volume, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", volume).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", volume).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", volume, err, out)
		}
	})
	return volume
}

// putValue writes a value of size bytes to key with PUT /kv.
func putValue(n *proc.Node, key string, size int) (int, []byte, error) {
	return n.Do(http.MethodPut, "/kv/"+key, bytes.Repeat([]byte("v"), size))
}

// checkValues reads every key in keys through n and checks its size.
func checkValues(t *testing.T, n *proc.Node, keys []string, size int) {
	t.Helper()
	for _, key := range keys {
		code, body, err := n.Do(http.MethodGet, "/kv/"+key, nil)
		if err != nil || code != http.StatusOK || len(body) != size {
			t.Errorf("get %s: %d, %d bytes, %v", key, code, len(body), err)
		}
	}
}

// TestFullVolume: a node whose bbolt volume (a small tmpfs) fills up
// answers a write it cannot store with 503 storage_unavailable, never 500;
// once space is freed, writes succeed without a restart and every
// acknowledged write is there. Needs root to mount the tmpfs.
func TestFullVolume(t *testing.T) {
	dir := t.TempDir()
	volume := tmpfsVolume(t, dir, "n1", "8m")
	bin := raftkvBinary(t)
	c := proc.StartCluster(t, proc.ClusterConfig{Size: 1, Bin: bin, Dir: dir, Formation: proc.JoinFirst,
		Env: map[string]string{"RAFT_LOG_STORE": "boltdb", "RAFT_SNAPSHOT_INTERVAL": "1h"}})
	n := c.WaitLeader(20 * time.Second)
	const size = 256 << 10
	var acked []string
	for i := range 4 {
		key := fmt.Sprintf("before-%d", i)
		if code, body, err := putValue(n, key, size); err != nil || code != http.StatusOK {
			t.Fatalf("put %s: %d %s %v", key, code, bytes.TrimSpace(body), err)
		}
		acked = append(acked, key)
	}
	filler := filepath.Join(volume, "filler")
	fill(t, filler)

	var refused bool
	for i := range 40 {
		key := fmt.Sprintf("full-%d", i)
		code, body, err := putValue(n, key, size)
		if err != nil {
			t.Fatalf("put %s on a full volume: %v\n%s", key, err, n.Tail(20))
		}
		if code == http.StatusOK {
			acked = append(acked, key) // bbolt reused free pages
			continue
		}
		if code != http.StatusServiceUnavailable || errorCode(body) != "storage_unavailable" {
			t.Fatalf("put %s on a full volume: %d %s, want 503 storage_unavailable", key, code, bytes.TrimSpace(body))
		}
		refused = true
		break
	}
	if !refused {
		t.Fatal("40 writes of 256 KiB succeeded on a full 8 MiB volume")
	}
	if !strings.Contains(n.Log(), "storage failure") {
		t.Errorf("no 'storage failure' line in the log:\n%s", n.Tail(20))
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 20*time.Second, "a write after space was freed", func() error {
		code, body, err := putValue(n, "after", size)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %s", code, bytes.TrimSpace(body))
		}
		return err
	})
	acked = append(acked, "after")
	if !n.Running() {
		t.Fatalf("the node stopped:\n%s", n.Tail(20))
	}
	checkValues(t, n, acked, size)
	if strings.Contains(n.Log(), "panic:") {
		t.Errorf("the node panicked:\n%s", n.Tail(40))
	}
}

// TestFullVolumeWAL: raft-wal preallocates its 64 MiB segments, so a full
// volume shows when the next segment cannot be created; raft-wal then
// refuses every append until reopened. The write is refused (503, or the
// connection closes as the node stops), the node exits 1 for its supervisor,
// and once space is freed it starts again with every acknowledged write.
func TestFullVolumeWAL(t *testing.T) {
	dir := t.TempDir()
	volume := tmpfsVolume(t, dir, "n1", "72m")
	bin := raftkvBinary(t)
	c := proc.StartCluster(t, proc.ClusterConfig{Size: 1, Bin: bin, Dir: dir, Formation: proc.JoinFirst,
		Env: map[string]string{"RAFT_LOG_STORE": "wal", "RAFT_SNAPSHOT_INTERVAL": "1h"}})
	n := c.WaitLeader(20 * time.Second)
	filler := filepath.Join(volume, "filler")
	fill(t, filler)

	const size = 512 << 10
	var acked []string
	refused := false
	for i := range 200 { // 64 MiB of segment holds fewer than 130
		key := fmt.Sprintf("k-%03d", i)
		code, body, err := putValue(n, key, size)
		if err == nil && code == http.StatusOK {
			acked = append(acked, key)
			continue
		}
		if err == nil {
			if code != http.StatusServiceUnavailable || errorCode(body) != "storage_unavailable" {
				t.Fatalf("put %s on a full volume: %d %s, want 503 storage_unavailable", key, code, bytes.TrimSpace(body))
			}
		}
		refused = true
		break
	}
	if !refused {
		t.Fatal("200 writes of 512 KiB succeeded on a 72 MiB volume")
	}
	exitsCleanly1(t, n, "could not start a new segment")

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	n.Restart()
	c.WaitLeader(20 * time.Second)
	testwait.For(t, 20*time.Second, "a write after the restart", func() error {
		code, body, err := putValue(n, "after", size)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %s", code, bytes.TrimSpace(body))
		}
		return err
	})
	checkValues(t, n, append(acked, "after"), size)
}

// fill writes path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for range 1 << 14 { // bounded: 1 GiB, far above the tmpfs
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
	t.Fatal("the volume never filled")
}

// readyCode is n's /ready answer: its status and code.
func readyCode(n *proc.Node) (int, string, error) {
	code, body, err := n.Do(http.MethodGet, "/ready", nil)
	if err != nil {
		return 0, "", err
	}
	var r struct{ Code string }
	if err := json.Unmarshal(body, &r); err != nil {
		return code, "", fmt.Errorf("/ready body %q: %v", body, err)
	}
	return code, r.Code, nil
}

// TestFullFollowerVolume: a follower whose volume is full does not hold up
// the cluster: writes through the leader go on with the other follower,
// the full one's /ready says storage_unavailable, and once space is freed
// it catches up by itself (no restart) with every acknowledged write.
func TestFullFollowerVolume(t *testing.T) {
	dir := t.TempDir()
	volume := tmpfsVolume(t, dir, "n3", "8m")
	bin := raftkvBinary(t)
	c := proc.StartCluster(t, proc.ClusterConfig{Size: 3, Bin: bin, Dir: dir, Formation: proc.JoinFirst,
		Env: map[string]string{"RAFT_SNAPSHOT_INTERVAL": "1h"}})
	c.WaitVoters(30*time.Second, c.Nodes...)
	leader, f := c.WaitLeader(20*time.Second), c.Nodes[2]
	if leader == f {
		t.Fatalf("%s leads; the test needs it as a follower", f.Name)
	}
	const size = 256 << 10
	var acked []string
	put := func(key string) {
		t.Helper()
		if code, body, err := putValue(leader, key, size); err != nil || code != http.StatusOK {
			t.Fatalf("put %s through the leader: %d %s %v", key, code, bytes.TrimSpace(body), err)
		}
		acked = append(acked, key)
	}
	put("before")
	filler := filepath.Join(volume, "filler")
	fill(t, filler)
	for i := range 12 { // 3 MiB: more than the full volume has room for
		put(fmt.Sprintf("while-full-%02d", i))
	}
	testwait.For(t, 10*time.Second, f.Name+"'s /ready to say storage_unavailable", func() error {
		code, reason, err := readyCode(f)
		if err == nil && (code != http.StatusServiceUnavailable || reason != "storage_unavailable") {
			err = fmt.Errorf("/ready %d %q", code, reason)
		}
		return err
	})

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 20*time.Second, f.Name+" to be ready again", func() error {
		code, reason, err := readyCode(f)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/ready %d %q", code, reason)
		}
		return err
	})
	for _, key := range acked {
		code, body, err := f.Do(http.MethodGet, "/kv/"+key+"?consistency=stale", nil)
		if err != nil || code != http.StatusOK || len(body) != size {
			t.Errorf("stale get %s on %s: %d, %d bytes, %v", key, f.Name, code, len(body), err)
		}
	}
	if !f.Running() || strings.Contains(f.Log(), "panic:") {
		t.Errorf("%s stopped or panicked:\n%s", f.Name, f.Tail(30))
	}
}

// flipInValues changes one byte in every run of 1000 'x's (a stored
// value) in the file at path. bbolt keeps stale copies of pages it
// rewrote, so flipping only the first copy might miss the live one.
func flipInValues(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	run := bytes.Repeat([]byte("x"), 1000)
	flipped := 0
	for from := 0; ; {
		i := bytes.Index(b[from:], run)
		if i < 0 {
			break
		}
		b[from+i+100] = 'y'
		from += i + len(run)
		flipped++
	}
	if flipped == 0 {
		t.Fatalf("no value bytes in %s", path)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// logFile is the file a node's log store keeps its entries in.
func logFile(t *testing.T, volume, store string) string {
	t.Helper()
	if store == "boltdb" {
		return filepath.Join(volume, "raft.db")
	}
	segs, err := filepath.Glob(filepath.Join(volume, "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no wal segment in %s: %v", volume, err)
	}
	return segs[0]
}

// TestCorruptLogEntry: one byte of a stored value flipped in the log file.
// Neither store notices (bbolt has no page checksums, raft-wal checks only
// the tail it recovers), so without entry checksums the node applied the
// changed value. The only voter now stops with one line and exit 1; a
// follower drops the entry and those after it and gets them from the
// leader again, serving every value unchanged.
func TestCorruptLogEntry(t *testing.T) {
	bin := raftkvBinary(t)
	value := strings.Repeat("x", 1000)
	for _, store := range []string{"boltdb", "wal"} {
		t.Run(store+"/only voter", func(t *testing.T) {
			c := proc.StartCluster(t, proc.ClusterConfig{Size: 1, Bin: bin, Dir: t.TempDir(), Formation: proc.JoinFirst,
				Env: map[string]string{"RAFT_LOG_STORE": store}})
			n := c.WaitLeader(20 * time.Second)
			for i := range 30 {
				if err := set(n, fmt.Sprintf("k%02d", i), value); err != nil {
					t.Fatal(err)
				}
			}
			if err := n.Stop(20 * time.Second); err != nil {
				t.Fatal(err)
			}
			flipInValues(t, logFile(t, n.Volume, store))
			n.Restart()
			exitsCleanly1(t, n, "does not match its checksum")
		})
		t.Run(store+"/follower", func(t *testing.T) {
			c := proc.StartCluster(t, proc.ClusterConfig{Size: 3, Bin: bin, Dir: t.TempDir(), Formation: proc.JoinFirst,
				Env: map[string]string{"RAFT_LOG_STORE": store}})
			c.WaitVoters(30*time.Second, c.Nodes...)
			leader := c.WaitLeader(20 * time.Second)
			f := c.Nodes[2]
			if f == leader {
				f = c.Nodes[1]
			}
			var keys []string
			for i := range 30 {
				key := fmt.Sprintf("k%02d", i)
				if err := set(leader, key, value); err != nil {
					t.Fatal(err)
				}
				keys = append(keys, key)
			}
			testwait.For(t, 20*time.Second, f.Name+" to hold k29", func() error {
				_, err := get(f, "k29", "stale")
				return err
			})
			if err := f.Stop(20 * time.Second); err != nil {
				t.Fatal(err)
			}
			flipInValues(t, logFile(t, f.Volume, store))
			f.Restart()
			testwait.For(t, 20*time.Second, f.Name+" to be ready", func() error {
				code, reason, err := readyCode(f)
				if err == nil && code != http.StatusOK {
					err = fmt.Errorf("/ready %d %q", code, reason)
				}
				return err
			})
			for _, key := range keys {
				if v, err := get(f, key, "stale"); err != nil || v != value {
					t.Errorf("%s on %s: %v, changed %v", key, f.Name, err, v != value)
				}
			}
			if !strings.Contains(f.Log(), "log entry is corrupt") || strings.Contains(f.Log(), "panic:") {
				t.Errorf("%s's log:\n%s", f.Name, f.Tail(30))
			}
			// Having dropped entries, it withheld its vote until caught up.
			logText := f.Log()
			held, released := strings.Index(logText, "vote withheld:"), strings.Index(logText, "vote hold released")
			if held < 0 || released < held || !strings.Contains(logText[held:], "dropped log entries") {
				t.Errorf("%s's log does not show a vote hold for the dropped entries and then its release:\n%s", f.Name, f.Tail(30))
			}
		})
	}
}

// damageBoltPage clears the type flags in the header of the root page of
// bucket in the bbolt file at path ("": of the file's root bucket, which
// lists the others), as a damaged disk block might: bbolt
// panics on the next read of that page. It parses the file itself (the
// format is bbolt's, stable since boltdb), because a running node holds
// bbolt's lock on it. Call it only while the file's owner writes nothing.
func damageBoltPage(t *testing.T, path, bucket string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	// A page header: id u64, flags u16, count u16, overflow u32. A meta
	// page follows it with magic u32, version u32, page size u32, flags
	// u32, the root bucket (root pgid u64, sequence u64), freelist u64,
	// pgid u64, txid u64.
	const hdr = 16
	pageSize := int(le.Uint32(b[hdr+8:]))
	if pageSize < 512 || 2*pageSize > len(b) {
		t.Fatalf("%s: page size %d in a file of %d bytes", path, pageSize, len(b))
	}
	meta := 0 // the meta page with the higher txid is the current one
	if le.Uint64(b[pageSize+hdr+48:]) > le.Uint64(b[hdr+48:]) {
		meta = pageSize
	}
	root := int(le.Uint64(b[meta+hdr+16:]))
	p := root * pageSize
	if p+pageSize > len(b) || le.Uint16(b[p+8:]) != 0x02 {
		t.Fatalf("%s: the root bucket page %d is not a leaf page", path, root)
	}
	// Leaf elements: flags u32, pos u32 (from the element), ksize u32,
	// vsize u32; a bucket's value starts with its root pgid.
	found := 0
	if bucket == "" {
		found = root
	}
	for i := range int(le.Uint16(b[p+10:])) {
		e := p + hdr + 16*i
		k := e + int(le.Uint32(b[e+4:]))
		ksize, vsize := int(le.Uint32(b[e+8:])), int(le.Uint32(b[e+12:]))
		if le.Uint32(b[e:])&0x01 == 0 || string(b[k:k+ksize]) != bucket || vsize < 16 {
			continue
		}
		found = int(le.Uint64(b[k+ksize:]))
	}
	if found == 0 || found*pageSize+pageSize > len(b) {
		t.Fatalf("%s: no bucket %q with a page of its own (root %d)", path, bucket, found)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0, 0}, int64(found*pageSize+8)); err != nil {
		t.Fatal(err)
	}
	t.Logf("cleared the type of page %d (the root of bucket %q) in %s", found, bucket, path)
}

// TestDamagedLogPageStops: a page of a running follower's raft.db is
// damaged (its type cleared). bbolt panics on it at the follower's next
// append, inside a raft goroutine; the node stops with one line and exit
// status 1 (a panic's 2 is what the shipped systemd unit does not
// restart), never a goroutine dump. Restarted, it refuses the volume the
// same way, and the other two go on with every acknowledged write.
func TestDamagedLogPageStops(t *testing.T) {
	bin := raftkvBinary(t)
	c := proc.StartCluster(t, proc.ClusterConfig{Size: 3, Bin: bin, Dir: t.TempDir(), Formation: proc.JoinFirst,
		Env: map[string]string{"RAFT_LOG_STORE": "boltdb"}})
	c.WaitVoters(30*time.Second, c.Nodes...)
	leader := c.WaitLeader(20 * time.Second)
	f := c.Nodes[2]
	if f == leader {
		f = c.Nodes[1]
	}
	var acked []string
	for i := range 40 {
		key := fmt.Sprintf("k%02d", i)
		if err := set(leader, key, key); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, key)
	}
	testwait.For(t, 20*time.Second, f.Name+" to hold k39", func() error {
		_, err := get(f, "k39", "stale")
		return err
	})
	// Damage the page, then write: the follower's append reads it. Again
	// if the follower wrote meanwhile and moved the bucket's root.
	round := 0
	testwait.For(t, 30*time.Second, f.Name+" to stop on the damaged page", func() error {
		if !f.Running() {
			return nil
		}
		damageBoltPage(t, filepath.Join(f.Volume, "raft.db"), "logs")
		key := fmt.Sprintf("after-%d", round)
		round++
		if err := set(leader, key, key); err != nil {
			return err
		}
		acked = append(acked, key)
		return fmt.Errorf("%s still runs after the write of %s", f.Name, key)
	})
	exitsCleanly1(t, f, "the volume is damaged")
	if !strings.Contains(f.Log(), "raft.db is damaged") {
		t.Errorf("%s's log does not name the file:\n%s", f.Name, f.Tail(5))
	}

	f.Restart()
	exitsCleanly1(t, f, "raft.db is damaged")
	for _, key := range acked {
		if v, err := get(leader, key, ""); err != nil || v != key {
			t.Errorf("%s on %s: %q, %v", key, leader.Name, v, err)
		}
	}
}

// TestRepairedFollowerWithholdsVote is the case the vote hold exists for.
// Three nodes A (leader), B, C. A write W is acknowledged by A and B while
// C is paused. B then restarts with a corrupt log: it drops the entries
// from the first corrupt one on, W among them. A is paused (as if lost)
// before it can send them again, and C resumes. C lacks W; without the
// hold B's truncated log would let it grant C its vote and C would lead
// without W, losing an acknowledged write. With the hold B refuses, so no
// leader is elected while A is away; once A is back, B catches up, is
// released, and every acknowledged write is there.
func TestRepairedFollowerWithholdsVote(t *testing.T) {
	bin := raftkvBinary(t)
	value := strings.Repeat("x", 1000)
	c := proc.StartCluster(t, proc.ClusterConfig{Size: 3, Bin: bin, Dir: t.TempDir(), Formation: proc.JoinFirst,
		Env: map[string]string{"RAFT_LOG_STORE": "boltdb", "LOG_LEVEL": "info"}})
	c.WaitVoters(30*time.Second, c.Nodes...)
	a := c.WaitLeader(20 * time.Second)
	var b, cc *proc.Node
	for _, n := range c.Nodes {
		switch {
		case n == a:
		case b == nil:
			b = n
		default:
			cc = n
		}
	}
	var keys []string
	for i := range 10 {
		key := fmt.Sprintf("k%02d", i)
		if err := set(a, key, value); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	holds := func(n *proc.Node, key string) {
		testwait.For(t, 20*time.Second, n.Name+" to hold "+key, func() error {
			_, err := get(n, key, "stale")
			return err
		})
	}
	holds(cc, "k09")

	cc.Pause()
	if err := set(a, "w", value); err != nil { // acknowledged by A and B
		t.Fatal(err)
	}
	keys = append(keys, "w")
	holds(b, "w")
	if err := b.Stop(20 * time.Second); err != nil {
		t.Fatalf("stop %s: %v", b.Name, err)
	}
	flipInValues(t, logFile(t, b.Volume, "boltdb")) // B drops k00 … w at start

	a.Pause()
	cc.Resume()
	b.Restart()
	testwait.For(t, 20*time.Second, b.Name+" to withhold its vote", func() error {
		st, err := b.Status()
		if err == nil && !st.VoteWithheld {
			err = fmt.Errorf("vote_withheld false")
		}
		return err
	})
	// C campaigns (pre-vote, then vote) and must not win: it needs B.
	testwait.For(t, 30*time.Second, cc.Name+" to campaign three times", func() error {
		if st, err := cc.Status(); err == nil && st.State == "Leader" {
			t.Fatalf("%s was elected while A was away, lacking the acknowledged write w", cc.Name)
		}
		if n := strings.Count(cc.Log(), "entering candidate state"); n < 3 {
			return fmt.Errorf("%d campaigns", n)
		}
		return nil
	})
	for _, n := range []*proc.Node{b, cc} {
		if st, err := n.Status(); err != nil || st.State == "Leader" {
			t.Fatalf("%s while A is away: state %q, %v; want no leader without A", n.Name, st.State, err)
		}
	}
	if !strings.Contains(b.Log(), "vote withheld:") || strings.Contains(b.Log(), "vote hold released") {
		t.Fatalf("%s's log does not show the hold still on:\n%s", b.Name, b.Tail(30))
	}

	a.Resume()
	testwait.For(t, 30*time.Second, b.Name+" to catch up and vote again", func() error {
		st, err := b.Status()
		if err == nil && st.VoteWithheld {
			err = fmt.Errorf("vote_withheld still true")
		}
		return err
	})
	for _, n := range c.Nodes {
		for _, key := range keys {
			if v, err := get(n, key, "stale"); err != nil || v != value {
				holds(n, key) // replication may trail the release by a round
			}
		}
	}
	for _, key := range keys {
		if v, err := get(cc, key, ""); err != nil || v != value {
			t.Errorf("acknowledged %s on %s: %v (changed %v)", key, cc.Name, err, v != value)
		}
	}
	if !strings.Contains(b.Log(), "vote hold released") {
		t.Errorf("%s's log does not show the release:\n%s", b.Name, b.Tail(30))
	}
}
