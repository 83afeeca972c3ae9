package proc

import (
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testwait"
)

// Formation is how the nodes of a new cluster find each other.
type Formation int

const (
	// JoinFirst: n1 bootstraps; the others join it by themselves
	// (RAFT_JOIN, retry-join).
	JoinFirst Formation = iota
	// Expect: every node gets every HTTP address in RAFT_JOIN and
	// RAFT_BOOTSTRAP_EXPECT=Size; they form the cluster among themselves.
	Expect
	// Manual: n1 bootstraps; the others start empty and wait for the test
	// to add them (GET /join).
	Manual
)

// ClusterConfig describes a cluster of Size nodes named n1..nN, each with
// its volume at <Dir>/<name> and its log at <Dir>/<name>.log.
type ClusterConfig struct {
	Size      int
	Bin, Dir  string
	Formation Formation
	Env       map[string]string // for every node, over the harness's own
	// NodeEnv adds variables for node i (certificates, say); may be nil.
	NodeEnv func(i int, name string) map[string]string
	// Place says where node i binds and is reached and what command prefix
	// runs it there (see Config.Wrap); nil means loopback on free ports.
	Place  func(i int) (ip string, httpPort, raftPort int, wrap []string)
	Client *http.Client // see Config.Client
}

// Cluster is the nodes of one Raft cluster a test started.
type Cluster struct {
	Nodes []*Node
	t     testing.TB
}

// StartCluster starts every node of cc and returns without waiting for
// them: see WaitVoters and WaitLeader.
func StartCluster(t testing.TB, cc ClusterConfig) *Cluster {
	t.Helper()
	place := cc.Place
	if place == nil {
		ports, err := FreePorts(2 * cc.Size)
		if err != nil {
			t.Fatal(err)
		}
		place = func(i int) (string, int, int, []string) { return "127.0.0.1", ports[2*i], ports[2*i+1], nil }
	}
	var cfgs []Config
	var httpAddrs []string
	for i := range cc.Size {
		name := fmt.Sprintf("n%d", i+1)
		ip, hp, rp, wrap := place(i)
		env := map[string]string{
			"RAFT_NODE_ID":     name,
			"HTTP_SERVER_PORT": strconv.Itoa(hp),
			"RAFT_SERVER_PORT": strconv.Itoa(rp),
			"BIND_ADDR":        ip,
			"ADVERTISE_ADDR":   ip,
			"RAFT_VOLUME_DIR":  filepath.Join(cc.Dir, name),
		}
		maps.Copy(env, cc.Env)
		if cc.NodeEnv != nil {
			maps.Copy(env, cc.NodeEnv(i, name))
		}
		cfgs = append(cfgs, Config{Name: name, Bin: cc.Bin, Wrap: wrap, Dir: cc.Dir, Env: env, Client: cc.Client})
		httpAddrs = append(httpAddrs, fmt.Sprintf("%s:%d", ip, hp))
	}
	for i, cfg := range cfgs {
		switch cc.Formation {
		case JoinFirst:
			if i == 0 {
				cfg.Env["RAFT_BOOTSTRAP"] = "true"
			} else {
				cfg.Env["RAFT_JOIN"] = httpAddrs[0]
			}
		case Expect:
			cfg.Env["RAFT_JOIN"] = strings.Join(httpAddrs, ",")
			cfg.Env["RAFT_BOOTSTRAP_EXPECT"] = strconv.Itoa(cc.Size)
		case Manual:
			cfg.Env["RAFT_BOOTSTRAP"] = strconv.FormatBool(i == 0)
		}
	}
	c := &Cluster{t: t}
	for _, cfg := range cfgs {
		c.Nodes = append(c.Nodes, StartNode(t, cfg))
	}
	return c
}

// Up lists the nodes that run and are not paused: those expected to answer.
func (c *Cluster) Up() []*Node {
	var up []*Node
	for _, n := range c.Nodes {
		if n.Up() {
			up = append(up, n)
		}
	}
	return up
}

// Leader returns the node every node that is up reports as leader, which
// is itself up and in state Leader; an error says why there is none.
func (c *Cluster) Leader() (*Node, error) {
	var leader *Node
	id := ""
	for _, n := range c.Up() {
		st, err := n.Status()
		switch {
		case err != nil:
			return nil, err
		case st.LeaderID == "" || id != "" && st.LeaderID != id:
			return nil, fmt.Errorf("%s reports leader %q, others %q", n.Name, st.LeaderID, id)
		}
		id = st.LeaderID
		if st.State == "Leader" && st.ID == id {
			leader = n
		}
	}
	if leader == nil {
		return nil, fmt.Errorf("leader %q is not a node that is up in state Leader", id)
	}
	return leader, nil
}

// WaitLeader waits until the nodes that are up agree on a leader (see
// Leader) and returns it.
func (c *Cluster) WaitLeader(timeout time.Duration) *Node {
	c.t.Helper()
	var leader *Node
	testwait.For(c.t, timeout, "the nodes that are up to agree on a leader", func() (err error) {
		leader, err = c.Leader()
		return err
	})
	return leader
}

// Voters checks that each node in want lists, in its own view of the
// configuration (GET /nodes?stale), exactly want as voters, in name order,
// with their Raft and HTTP addresses.
func (c *Cluster) Voters(want ...*Node) error {
	for _, n := range want {
		members, err := n.Members()
		if err != nil {
			return err
		}
		if len(members) != len(want) {
			return fmt.Errorf("%s lists %d members: %+v", n.Name, len(members), members)
		}
		for i, m := range members {
			w := want[i]
			if m.ID != w.Name || !m.Voter || m.RaftAddr != w.RaftAddr || m.HTTPAddr != w.HTTPAddr {
				return fmt.Errorf("%s lists %+v, want voter %s at raft %s, http %s", n.Name, m, w.Name, w.RaftAddr, w.HTTPAddr)
			}
		}
	}
	return nil
}

// WaitVoters waits until Voters holds and returns how long that took.
func (c *Cluster) WaitVoters(timeout time.Duration, want ...*Node) time.Duration {
	c.t.Helper()
	return testwait.For(c.t, timeout, fmt.Sprintf("%d nodes to list %d voters", len(want), len(want)), func() error {
		return c.Voters(want...)
	})
}
