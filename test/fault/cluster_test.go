package fault

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
	"github.com/raftkv/raftkv/internal/testwait"
)

// Node settings for the suite: a short request timeout keeps no-quorum
// windows brief, and a low snapshot threshold makes snapshots and log
// compaction happen within a short run.
const (
	requestTimeout    = 2 * time.Second
	snapshotThreshold = 64
)

var builder proc.Builder

// cluster is three raftkv processes on a topology, with the suite's checks.
type cluster struct {
	*proc.Cluster
	t     *testing.T
	topo  topology
	admin *http.Client // status, checks; short timeouts
}

// startCluster builds the binary (once), starts n1 as the bootstrapping
// node and n2, n3 with RAFT_JOIN, each in its place on the topology, and
// waits until all three are voters with a leader that serves linearizable
// reads through every node.
func startCluster(t *testing.T, topo topology) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("fault suite: runs a real cluster; skipped with -short")
	}
	root, err := proc.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := builder.Binary(root)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"RAFT_SNAPSHOT_THRESHOLD": fmt.Sprint(snapshotThreshold),
		"RAFT_SNAPSHOT_INTERVAL":  "1s",
		"REQUEST_TIMEOUT":         requestTimeout.String(),
		"LOG_LEVEL":               "info",
		// Auth is off here: admin endpoints would refuse the harness
		// (on the bridge) and n2, n3 auto-joining from hosts that are
		// not members yet. The suite's network is private.
		"ALLOW_REMOTE_ADMIN": "true",
	}
	if store := os.Getenv("FAULT_LOG_STORE"); store != "" {
		env["RAFT_LOG_STORE"] = store
	}
	c := &cluster{t: t, topo: topo, admin: &http.Client{
		Timeout:   3 * time.Second,
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4},
	}}
	c.Cluster = proc.StartCluster(t, proc.ClusterConfig{Size: 3, Bin: bin, Dir: t.TempDir(), Formation: proc.JoinFirst,
		Env: env, Client: c.admin, Place: func(i int) (string, int, int, []string) {
			ip, hp, rp := topo.addr(i)
			return ip, hp, rp, topo.wrap(i)
		}})
	c.waitReady(30 * time.Second)
	return c
}

// index is n's position in Nodes.
func (c *cluster) index(n *proc.Node) int { return slices.Index(c.Nodes, n) }

// killAll SIGKILLs every node at (nearly) the same instant, then reaps them.
func (c *cluster) killAll() {
	c.t.Helper()
	for _, n := range c.Nodes {
		n.Signal(syscall.SIGKILL)
	}
	for _, n := range c.Nodes {
		n.Kill()
	}
}

// waitReady waits until every node lists the three voters with their
// addresses, a leader is agreed, and a linearizable read through each node
// succeeds.
func (c *cluster) waitReady(timeout time.Duration) {
	c.t.Helper()
	testwait.For(c.t, timeout, "a ready three-node cluster", func() error {
		if err := c.Voters(c.Nodes...); err != nil {
			return err
		}
		if _, err := c.Leader(); err != nil {
			return err
		}
		for _, n := range c.Nodes {
			code, body, err := n.Do(http.MethodGet, "/kv/ready-probe", nil)
			if err != nil {
				return err
			}
			if code != http.StatusOK && code != http.StatusNotFound {
				return fmt.Errorf("read via %s: %d %s", n.Name, code, bytes.TrimSpace(body))
			}
		}
		return nil
	})
}

// waitConverged (check C3) waits until every node reports the same applied
// index and stale reads of keys agree on every node. It returns how long
// that took.
func (c *cluster) waitConverged(timeout time.Duration, keys []string) time.Duration {
	c.t.Helper()
	return testwait.For(c.t, timeout, "replicas to converge (C3)", func() error {
		var applied []uint64
		for _, n := range c.Nodes {
			st, err := n.Status()
			if err != nil {
				return err
			}
			applied = append(applied, st.AppliedIndex)
		}
		for _, a := range applied[1:] {
			if a != applied[0] {
				return fmt.Errorf("applied indexes differ: %v", applied)
			}
		}
		for _, k := range keys {
			var first string
			for i, n := range c.Nodes {
				code, body, err := n.Do(http.MethodGet, "/kv/"+k+"?consistency=stale", nil)
				if err != nil {
					return err
				}
				got := fmt.Sprintf("%d %q", code, body)
				if code == http.StatusNotFound {
					got = "absent"
				}
				if i == 0 {
					first = got
				} else if got != first {
					return fmt.Errorf("key %s: %s has %s, %s has %s", k, c.Nodes[0].Name, first, n.Name, got)
				}
			}
		}
		return nil
	})
}

// logProblems (check C6) lists lines of node logs that show a crash.
func (c *cluster) logProblems() []string {
	var out []string
	for _, n := range c.Nodes {
		b, err := os.ReadFile(n.LogPath)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", n.Name, err))
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "panic:") || strings.Contains(line, "fatal error:") || strings.Contains(line, "DATA RACE") {
				out = append(out, n.Name+": "+line)
			}
		}
	}
	return out
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
