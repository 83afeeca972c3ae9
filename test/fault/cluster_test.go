package fault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
)

// Node settings for the suite: a short request timeout keeps no-quorum
// windows brief, and a low snapshot threshold makes snapshots and log
// compaction happen within a short run.
const (
	requestTimeout    = 2 * time.Second
	snapshotThreshold = 64
)

var builder proc.Builder

// cluster is three raftkv processes on a topology.
type cluster struct {
	t     *testing.T
	topo  topology
	bin   string
	dir   string
	nodes []*knode
	admin *http.Client // status, checks; short timeouts
}

// knode is one member; its process may be restarted on the same volume.
type knode struct {
	idx      int
	id       string
	httpAddr string // host:port clients use
	raftAddr string
	volume   string
	logPath  string
	argv     []string
	env      []string

	mu   sync.Mutex
	proc *proc.Process
}

func (n *knode) process() *proc.Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

func (n *knode) url(pathAndQuery string) string { return "http://" + n.httpAddr + pathAndQuery }

// startCluster builds the binary (once), starts n1 as the bootstrapping
// node and n2, n3 with RAFT_JOIN, and waits until all three are voters with
// a leader that serves linearizable reads through every node.
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
	c := &cluster{t: t, topo: topo, bin: bin, dir: t.TempDir(), admin: &http.Client{
		Timeout:   3 * time.Second,
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4},
	}}
	for i := range 3 {
		ip, hp, rp := topo.addr(i)
		n := &knode{
			idx:      i,
			id:       fmt.Sprintf("n%d", i+1),
			httpAddr: net.JoinHostPort(ip, strconv.Itoa(hp)),
			raftAddr: net.JoinHostPort(ip, strconv.Itoa(rp)),
		}
		n.volume = filepath.Join(c.dir, n.id)
		n.logPath = filepath.Join(c.dir, n.id+".log")
		n.argv = append(slices.Clone(topo.wrap(i)), bin)
		vars := map[string]string{
			"RAFT_NODE_ID":            n.id,
			"HTTP_SERVER_PORT":        strconv.Itoa(hp),
			"RAFT_SERVER_PORT":        strconv.Itoa(rp),
			"BIND_ADDR":               ip,
			"ADVERTISE_ADDR":          ip,
			"RAFT_VOLUME_DIR":         n.volume,
			"RAFT_SNAPSHOT_THRESHOLD": strconv.Itoa(snapshotThreshold),
			"RAFT_SNAPSHOT_INTERVAL":  "1s",
			"REQUEST_TIMEOUT":         requestTimeout.String(),
			"LOG_LEVEL":               "info",
			// Auth is off here: admin endpoints would refuse the harness
			// (on the bridge) and n2, n3 auto-joining from hosts that are
			// not members yet. The suite's network is private.
			"ALLOW_REMOTE_ADMIN": "true",
		}
		if store := os.Getenv("FAULT_LOG_STORE"); store != "" {
			vars["RAFT_LOG_STORE"] = store
		}
		if i == 0 {
			vars["RAFT_BOOTSTRAP"] = "true"
		} else {
			vars["RAFT_JOIN"] = c.nodes[0].httpAddr
		}
		n.env = proc.BaseEnv()
		for k, v := range vars {
			n.env = append(n.env, k+"="+v)
		}
		c.nodes = append(c.nodes, n)
	}
	t.Cleanup(c.stopAll)
	for i := range c.nodes {
		c.start(i)
	}
	c.waitReady(30 * time.Second)
	return c
}

// start runs node i's process (again) on its volume.
func (c *cluster) start(i int) {
	c.t.Helper()
	n := c.nodes[i]
	p, err := proc.Start(proc.Spec{Argv: n.argv, Env: n.env, Dir: c.dir, LogPath: n.logPath})
	if err != nil {
		c.t.Fatalf("start %s: %v", n.id, err)
	}
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()
}

// kill SIGKILLs node i and waits for it to be gone.
func (c *cluster) kill(i int) {
	c.t.Helper()
	if err := c.nodes[i].process().Kill(10 * time.Second); err != nil {
		c.t.Fatalf("kill %s: %v", c.nodes[i].id, err)
	}
}

// killAll SIGKILLs every node at (nearly) the same instant, then reaps them.
func (c *cluster) killAll() {
	c.t.Helper()
	for _, n := range c.nodes {
		if err := n.process().Signal(syscall.SIGKILL); err != nil {
			c.t.Fatalf("kill %s: %v", n.id, err)
		}
	}
	for i := range c.nodes {
		c.kill(i)
	}
}

// terminate sends SIGTERM and waits for a clean exit.
func (c *cluster) terminate(i int) {
	c.t.Helper()
	p := c.nodes[i].process()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		c.t.Fatalf("SIGTERM %s: %v", c.nodes[i].id, err)
	}
	exitErr, ok := p.Wait(15 * time.Second)
	if !ok {
		c.t.Fatalf("%s did not exit within 15s of SIGTERM", c.nodes[i].id)
	}
	if exitErr != nil {
		c.t.Errorf("%s exited uncleanly after SIGTERM: %v", c.nodes[i].id, exitErr)
	}
}

func (c *cluster) signal(i int, sig syscall.Signal) {
	c.t.Helper()
	if err := c.nodes[i].process().Signal(sig); err != nil {
		c.t.Fatalf("%v %s: %v", sig, c.nodes[i].id, err)
	}
}

func (c *cluster) stopAll() {
	if c.t.Failed() {
		for _, n := range c.nodes {
			c.t.Logf("--- last lines of %s's log ---\n%s", n.id, proc.Tail(n.logPath, 15))
		}
	}
	for _, n := range c.nodes {
		if p := n.process(); p != nil {
			if err := p.Kill(10 * time.Second); err != nil {
				c.t.Errorf("%s: %v", n.id, err)
			}
		}
	}
}

// status mirrors the fields of GET /status the suite uses.
type status struct {
	ID                string   `json:"id"`
	State             string   `json:"state"`
	Term              uint64   `json:"term"`
	LeaderID          string   `json:"leader_id"`
	LeaderHTTPAddr    string   `json:"leader_http_addr"`
	CommitIndex       uint64   `json:"commit_index"`
	AppliedIndex      uint64   `json:"applied_index"`
	LastSnapshotIndex uint64   `json:"last_snapshot_index"`
	Keys              int      `json:"keys"`
	Configuration     []member `json:"configuration"`
}

type member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Voter    bool   `json:"voter"`
}

func (c *cluster) status(i int) (status, error) {
	var st status
	code, body, err := c.get(c.nodes[i].url("/status"))
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("status %d: %s", code, bytes.TrimSpace(body))
	}
	if err == nil {
		err = json.Unmarshal(body, &st)
	}
	if err != nil {
		return st, fmt.Errorf("%s /status: %w", c.nodes[i].id, err)
	}
	return st, nil
}

func (c *cluster) get(u string) (int, []byte, error) {
	return c.do(http.MethodGet, u, nil)
}

func (c *cluster) do(method, u string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.admin.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// leader returns the index of the node that reports itself leader and
// that every other reachable node follows.
func (c *cluster) leader() (int, error) {
	lead, ids := -1, map[string]bool{}
	for i := range c.nodes {
		st, err := c.status(i)
		if err != nil {
			continue
		}
		ids[st.LeaderID] = true
		if st.State == "Leader" {
			lead = i
		}
	}
	if lead < 0 || len(ids) != 1 {
		return -1, fmt.Errorf("no agreed leader (leaders seen: %v)", keysOf(ids))
	}
	return lead, nil
}

func (c *cluster) waitLeader(timeout time.Duration) int {
	c.t.Helper()
	var lead int
	waitFor(c.t, timeout, "an agreed leader", func() (err error) {
		lead, err = c.leader()
		return err
	})
	return lead
}

// waitReady waits until every node lists three voters with HTTP addresses,
// a leader is agreed, and a linearizable read through each node succeeds.
func (c *cluster) waitReady(timeout time.Duration) {
	c.t.Helper()
	waitFor(c.t, timeout, "a ready three-node cluster", func() error {
		for i, n := range c.nodes {
			st, err := c.status(i)
			if err != nil {
				return err
			}
			if len(st.Configuration) != len(c.nodes) {
				return fmt.Errorf("%s lists %d members", n.id, len(st.Configuration))
			}
			for _, m := range st.Configuration {
				if !m.Voter || m.HTTPAddr == "" {
					return fmt.Errorf("%s lists %+v", n.id, m)
				}
			}
		}
		if _, err := c.leader(); err != nil {
			return err
		}
		for _, n := range c.nodes {
			code, body, err := c.get(n.url("/kv/ready-probe"))
			if err != nil {
				return err
			}
			if code != http.StatusOK && code != http.StatusNotFound {
				return fmt.Errorf("read via %s: %d %s", n.id, code, bytes.TrimSpace(body))
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
	return waitFor(c.t, timeout, "replicas to converge (C3)", func() error {
		var applied []uint64
		for i := range c.nodes {
			st, err := c.status(i)
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
			for i, n := range c.nodes {
				code, body, err := c.get(n.url("/kv/" + k + "?consistency=stale"))
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
					return fmt.Errorf("key %s: %s has %s, %s has %s", k, c.nodes[0].id, first, n.id, got)
				}
			}
		}
		return nil
	})
}

// logProblems (check C6) lists lines of node logs that show a crash.
func (c *cluster) logProblems() []string {
	var out []string
	for _, n := range c.nodes {
		b, err := os.ReadFile(n.logPath)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", n.id, err))
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "panic:") || strings.Contains(line, "fatal error:") || strings.Contains(line, "DATA RACE") {
				out = append(out, n.id+": "+line)
			}
		}
	}
	return out
}

// waitFor polls cond until it returns nil and returns how long that took;
// after timeout it fails the test with cond's last error.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	err := errors.New("never checked")
	for time.Since(start) < timeout {
		if err = cond(); err == nil {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
	return 0
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
