// Package e2e runs the real raftkv binary: a three-node cluster formed with
// the seed's requests, the seed's pump script, a leader crash and restart,
// and snapshots; plus the zero-config single node and a bad configuration.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
	"github.com/raftkv/raftkv/internal/testwait"
)

const pumpCount = 300

func TestClusterEndToEnd(t *testing.T) {
	bin := raftkvBinary(t)
	root := repoRoot(t)
	c := proc.StartCluster(t, proc.ClusterConfig{Size: 3, Bin: bin, Dir: t.TempDir(), Formation: proc.Manual,
		Env: map[string]string{"RAFT_SNAPSHOT_THRESHOLD": "64", "RAFT_SNAPSHOT_INTERVAL": "1s", "LOG_LEVEL": "info"}})
	nodes := c.Nodes
	n1 := nodes[0]

	// n1 bootstraps itself and becomes leader.
	testwait.For(t, 20*time.Second, "n1 to become leader", func() error {
		if err := n1.GetJSON("/health", nil); err != nil {
			return err
		}
		st, err := n1.Status()
		if err == nil && (st.State != "Leader" || st.LeaderID != "n1") {
			err = fmt.Errorf("n1 is %s, leader %q", st.State, st.LeaderID)
		}
		return err
	})
	t.Logf("start to leader: %v", time.Since(n1.Started()).Round(time.Millisecond))

	// The seed's joins: the raft host is the caller's IP.
	for _, n := range nodes[1:] {
		_, raftPort, _ := net.SplitHostPort(n.RaftAddr)
		code, body, err := n1.Do(http.MethodGet, fmt.Sprintf("/join?nodeId=%s&raftPort=%s", n.Name, raftPort), nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("join %s: %d %s %v", n.Name, code, body, err)
		}
	}
	c.WaitVoters(20*time.Second, nodes...)

	// The seed's pump script against n1.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	pump := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "pump.sh"), strconv.Itoa(pumpCount), n1.URL(""))
	pump.Env = append(os.Environ(), "NO_PROXY=127.0.0.1", "no_proxy=127.0.0.1")
	start := time.Now()
	out, err := pump.CombinedOutput()
	elapsed := time.Since(start)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if want := fmt.Sprintf("%d ok, 0 failed", pumpCount); err != nil || lines[len(lines)-1] != want {
		t.Fatalf("pump.sh: %v; want last line %q, got:\n%s", err, want, out)
	}
	t.Logf("pump: %d writes in %v = %.0f req/s", pumpCount, elapsed.Round(time.Millisecond), pumpCount/elapsed.Seconds())

	// Every key from every node: linearizable, then stale once caught up.
	leaderSt, err := n1.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		checkKeys(t, n, 1, pumpCount, "")
		testwait.For(t, 10*time.Second, n.Name+" to apply the leader's commit index", func() error {
			st, err := n.Status()
			if err == nil && st.AppliedIndex < leaderSt.CommitIndex {
				err = fmt.Errorf("%s applied %d < %d", n.Name, st.AppliedIndex, leaderSt.CommitIndex)
			}
			return err
		})
		checkKeys(t, n, 1, pumpCount, "stale")
	}

	// Kill the leader; time until a survivor accepts a write.
	leader := c.WaitLeader(15 * time.Second)
	var survivors []*proc.Node
	for _, n := range nodes {
		if n != leader {
			survivors = append(survivors, n)
		}
	}
	killed := time.Now()
	if err := leader.Kill(); err == nil {
		t.Fatalf("%s exited cleanly after SIGKILL", leader.Name)
	}
	testwait.For(t, 15*time.Second, "a write through a survivor after the leader was killed", func() error {
		return set(survivors[0], "failover", "1")
	})
	t.Logf("failover: %s killed; first write through %s succeeded after %v",
		leader.Name, survivors[0].Name, time.Since(killed).Round(time.Millisecond))

	newLeader := c.WaitLeader(15 * time.Second) // the survivors are the nodes that are up
	follower := survivors[0]
	if follower == newLeader {
		follower = survivors[1]
	}
	const last = pumpCount + 50
	for i := pumpCount + 1; i <= last; i++ {
		if err := set(follower, strconv.Itoa(i), strconv.Itoa(i)); err != nil {
			t.Fatalf("write through follower: %v", err)
		}
	}
	checkKeys(t, newLeader, pumpCount+1, last, "")

	// Restart the killed node on its old volume: it catches up on its own.
	leader.Restart()
	testwait.For(t, 30*time.Second, leader.Name+" to catch up after restart", func() error {
		if v, err := get(leader, strconv.Itoa(last), "stale"); err != nil || v != strconv.Itoa(last) {
			return fmt.Errorf("stale read of %d on %s: %q %v", last, leader.Name, v, err)
		}
		st, err := leader.Status()
		if err == nil && (st.State != "Follower" || st.LeaderID != newLeader.Name) {
			err = fmt.Errorf("%s is %s with leader %q, want Follower of %s", leader.Name, st.State, st.LeaderID, newLeader.Name)
		}
		return err
	})
	if l := c.WaitLeader(15 * time.Second); l != newLeader {
		t.Fatalf("leader changed to %s after the restart", l.Name)
	}

	// Snapshots were taken on every node (threshold 64, interval 1s).
	testwait.For(t, 20*time.Second, "a snapshot on every node", func() error {
		for _, n := range nodes {
			if len(snapshotDirs(n)) == 0 {
				return fmt.Errorf("no snapshot under %s", filepath.Join(n.Volume, "snapshots"))
			}
		}
		for _, n := range survivors {
			st, err := n.Status()
			if err == nil && st.LastSnapshotIndex == 0 {
				err = fmt.Errorf("%s: last_snapshot_index is 0", n.Name)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	for _, n := range nodes {
		code, body, err := n.Do(http.MethodPost, "/snapshot", nil)
		var snap struct {
			Index   uint64 `json:"index"`
			Created bool   `json:"created"`
		}
		if err == nil && code == http.StatusOK {
			err = json.Unmarshal(body, &snap)
		}
		if err != nil || code != http.StatusOK || snap.Index == 0 {
			t.Fatalf("POST /snapshot on %s: %d %s %v", n.Name, code, bytes.TrimSpace(body), err)
		}
		t.Logf("%s: snapshots %v; POST /snapshot: %s", n.Name, snapshotDirs(n), bytes.TrimSpace(body))
	}
}

// checkKeys reads keys from..to on n and asserts value == key.
func checkKeys(t *testing.T, n *proc.Node, from, to int, consistency string) {
	t.Helper()
	for i := from; i <= to; i++ {
		key := strconv.Itoa(i)
		if v, err := get(n, key, consistency); err != nil || v != key {
			t.Fatalf("get %s from %s (consistency %q): %q, %v", key, n.Name, consistency, v, err)
		}
	}
}

func TestSingleNodeDefaults(t *testing.T) {
	bin := raftkvBinary(t)
	tmp := t.TempDir()
	ports := freePorts(t, 2)
	n := proc.StartNode(t, proc.Config{Name: "single", Bin: bin, Dir: tmp, Env: map[string]string{
		"RAFT_VOLUME_DIR":  filepath.Join(tmp, "volume"),
		"HTTP_SERVER_PORT": strconv.Itoa(ports[0]),
		"RAFT_SERVER_PORT": strconv.Itoa(ports[1]),
	}})
	took := testwait.For(t, 20*time.Second, "a write on the zero-config node", func() error {
		return set(n, "hello", "world")
	})
	t.Logf("first write succeeded %v after start", took.Round(time.Millisecond))
	if v, err := get(n, "hello", ""); err != nil || v != "world" {
		t.Fatalf("get hello: %q, %v", v, err)
	}
	if err := n.Stop(10 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

func TestBadConfigFailsFast(t *testing.T) {
	bin := raftkvBinary(t)
	tmp := t.TempDir()
	volume := filepath.Join(tmp, "volume")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = tmp
	cmd.Env = append(proc.BaseEnv(), "HTTP_SERVER_PORT=abc", "RAFT_SERVER_PORT="+strconv.Itoa(freePorts(t, 1)[0]), "RAFT_VOLUME_DIR="+volume)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if ctx.Err() != nil || !errors.As(err, &exit) || exit.ExitCode() <= 0 {
		t.Fatalf("want a quick non-zero exit, got %v (ctx %v)\nstderr: %s", err, ctx.Err(), stderr.String())
	}
	lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "HTTP_SERVER_PORT") {
		t.Fatalf("want one stderr line naming HTTP_SERVER_PORT, got %q", stderr.String())
	}
	if _, err := os.Stat(volume); !os.IsNotExist(err) {
		t.Errorf("a bad configuration created the volume %s (%v)", volume, err)
	}
	t.Logf("exit code %d; stderr: %s", exit.ExitCode(), lines[0])
}
