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
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const pumpCount = 300

func TestClusterEndToEnd(t *testing.T) {
	bin := raftkvBinary(t)
	root := repoRoot(t)
	tmp := t.TempDir()
	ports := freePorts(t, 6)

	var nodes []*node
	for i, name := range []string{"n1", "n2", "n3"} {
		nodes = append(nodes, startNode(t, bin, name, tmp, map[string]string{
			"RAFT_NODE_ID":            name,
			"HTTP_SERVER_PORT":        strconv.Itoa(ports[2*i]),
			"RAFT_SERVER_PORT":        strconv.Itoa(ports[2*i+1]),
			"RAFT_VOLUME_DIR":         filepath.Join(tmp, name),
			"RAFT_BOOTSTRAP":          strconv.FormatBool(i == 0),
			"RAFT_SNAPSHOT_THRESHOLD": "64",
			"RAFT_SNAPSHOT_INTERVAL":  "1s",
			"LOG_LEVEL":               "info",
		}))
	}
	n1 := nodes[0]

	// n1 bootstraps itself and becomes leader.
	waitFor(t, 20*time.Second, "n1 to become leader", func() error {
		if _, err := httpGetJSON(n1.url("/health"), nil); err != nil {
			return err
		}
		st, err := n1.status()
		if err == nil && (st.State != "Leader" || st.LeaderID != "n1") {
			err = fmt.Errorf("n1 is %s, leader %q", st.State, st.LeaderID)
		}
		return err
	})
	t.Logf("start to leader: %v", time.Since(n1.started()).Round(time.Millisecond))

	// The seed's joins: the raft host is the caller's IP.
	for _, n := range nodes[1:] {
		code, body, err := httpDo(http.MethodGet, n1.url(fmt.Sprintf("/join?nodeId=%s&raftPort=%d", n.name, n.raftPort)))
		if err != nil || code != http.StatusOK {
			t.Fatalf("join %s: %d %s %v", n.name, code, body, err)
		}
	}
	waitVoters(t, nodes, nodes, 20*time.Second)

	// The seed's pump script against n1.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	pump := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "pump.sh"), strconv.Itoa(pumpCount), n1.url(""))
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
	leaderSt, err := n1.status()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		checkKeys(t, n, 1, pumpCount, "")
		waitFor(t, 10*time.Second, n.name+" to apply the leader's commit index", func() error {
			st, err := n.status()
			if err == nil && st.AppliedIndex < leaderSt.CommitIndex {
				err = fmt.Errorf("%s applied %d < %d", n.name, st.AppliedIndex, leaderSt.CommitIndex)
			}
			return err
		})
		checkKeys(t, n, 1, pumpCount, "stale")
	}

	// Kill the leader; time until a survivor accepts a write.
	leader, _ := agreedLeader(t, nodes)
	var survivors []*node
	for _, n := range nodes {
		if n != leader {
			survivors = append(survivors, n)
		}
	}
	killed := time.Now()
	if err := leader.signal(syscall.SIGKILL, 10*time.Second); err == nil {
		t.Fatalf("%s exited cleanly after SIGKILL", leader.name)
	}
	waitFor(t, 15*time.Second, "a write through a survivor after the leader was killed", func() error {
		return survivors[0].set("failover", "1")
	})
	t.Logf("failover: %s killed; first write through %s succeeded after %v",
		leader.name, survivors[0].name, time.Since(killed).Round(time.Millisecond))

	newLeader, _ := agreedLeader(t, survivors)
	follower := survivors[0]
	if follower == newLeader {
		follower = survivors[1]
	}
	const last = pumpCount + 50
	for i := pumpCount + 1; i <= last; i++ {
		if err := follower.set(strconv.Itoa(i), strconv.Itoa(i)); err != nil {
			t.Fatalf("write through follower: %v", err)
		}
	}
	checkKeys(t, newLeader, pumpCount+1, last, "")

	// Restart the killed node on its old volume: it catches up on its own.
	leader.start()
	waitFor(t, 30*time.Second, leader.name+" to catch up after restart", func() error {
		if v, err := leader.get(strconv.Itoa(last), "stale"); err != nil || v != strconv.Itoa(last) {
			return fmt.Errorf("stale read of %d on %s: %q %v", last, leader.name, v, err)
		}
		st, err := leader.status()
		if err == nil && (st.State != "Follower" || st.LeaderID != newLeader.name) {
			err = fmt.Errorf("%s is %s with leader %q, want Follower of %s", leader.name, st.State, st.LeaderID, newLeader.name)
		}
		return err
	})
	if l, _ := agreedLeader(t, nodes); l != newLeader {
		t.Fatalf("leader changed to %s after the restart", l.name)
	}

	// Snapshots were taken on every node (threshold 64, interval 1s).
	waitFor(t, 20*time.Second, "a snapshot on every node", func() error {
		for _, n := range nodes {
			if len(n.snapshotDirs()) == 0 {
				return fmt.Errorf("no snapshot under %s", filepath.Join(n.volume, "snapshots"))
			}
		}
		for _, n := range survivors {
			st, err := n.status()
			if err == nil && st.LastSnapshotIndex == 0 {
				err = fmt.Errorf("%s: last_snapshot_index is 0", n.name)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	for _, n := range nodes {
		code, body, err := httpDo(http.MethodPost, n.url("/snapshot"))
		var snap struct {
			Index   uint64 `json:"index"`
			Created bool   `json:"created"`
		}
		if err == nil && code == http.StatusOK {
			err = json.Unmarshal(body, &snap)
		}
		if err != nil || code != http.StatusOK || snap.Index == 0 {
			t.Fatalf("POST /snapshot on %s: %d %s %v", n.name, code, bytes.TrimSpace(body), err)
		}
		t.Logf("%s: snapshots %v; POST /snapshot: %s", n.name, n.snapshotDirs(), bytes.TrimSpace(body))
	}
}

// checkKeys reads keys from..to on n and asserts value == key.
func checkKeys(t *testing.T, n *node, from, to int, consistency string) {
	t.Helper()
	for i := from; i <= to; i++ {
		key := strconv.Itoa(i)
		if v, err := n.get(key, consistency); err != nil || v != key {
			t.Fatalf("get %s from %s (consistency %q): %q, %v", key, n.name, consistency, v, err)
		}
	}
}

// agreedLeader waits until every node reports the same leader, which itself
// reports state Leader, and returns it.
func agreedLeader(t *testing.T, nodes []*node) (*node, status) {
	t.Helper()
	var leader *node
	var leaderSt status
	waitFor(t, 15*time.Second, "the nodes to agree on a leader", func() error {
		leader = nil
		var id string
		for _, n := range nodes {
			st, err := n.status()
			switch {
			case err != nil:
				return err
			case st.LeaderID == "" || id != "" && st.LeaderID != id:
				return fmt.Errorf("%s reports leader %q, others %q", n.name, st.LeaderID, id)
			}
			id = st.LeaderID
			if st.State == "Leader" {
				leader, leaderSt = n, st
			}
		}
		if leader == nil || leader.name != id {
			return fmt.Errorf("leader %q is not among %d nodes or not in state Leader", id, len(nodes))
		}
		return nil
	})
	return leader, leaderSt
}

func TestSingleNodeDefaults(t *testing.T) {
	bin := raftkvBinary(t)
	tmp := t.TempDir()
	ports := freePorts(t, 2)
	n := startNode(t, bin, "single", tmp, map[string]string{
		"RAFT_VOLUME_DIR":  filepath.Join(tmp, "volume"),
		"HTTP_SERVER_PORT": strconv.Itoa(ports[0]),
		"RAFT_SERVER_PORT": strconv.Itoa(ports[1]),
	})
	took := waitFor(t, 20*time.Second, "a write on the zero-config node", func() error {
		return n.set("hello", "world")
	})
	t.Logf("first write succeeded %v after start", took.Round(time.Millisecond))
	if v, err := n.get("hello", ""); err != nil || v != "world" {
		t.Fatalf("get hello: %q, %v", v, err)
	}
	if err := n.signal(syscall.SIGTERM, 10*time.Second); err != nil {
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
	cmd.Env = append(baseEnv(), "HTTP_SERVER_PORT=abc", "RAFT_SERVER_PORT="+strconv.Itoa(freePorts(t, 1)[0]), "RAFT_VOLUME_DIR="+volume)
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
