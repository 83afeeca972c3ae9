package cluster

// RAFT_BOOTSTRAP_EXPECT: nodes started together, each listing the others
// in RAFT_JOIN, form one cluster without an operator. A node with an empty
// volume asks every join address who is there (GET /internal/info). As soon
// as it sees N nodes (itself included) that are in no cluster and expect the
// same N, it bootstraps with all of them as voters; each of them does the
// same with the same list, and hashicorp/raft accepts an identical
// bootstrap configuration on every member (as Consul's bootstrap_expect
// does). If any of them is already in a cluster, the node joins that
// cluster instead.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/node"
)

const (
	// expectPoll is how often a node waiting for RAFT_BOOTSTRAP_EXPECT
	// peers asks the join addresses again.
	expectPoll = 500 * time.Millisecond
	// PeerInfoTimeout bounds one node's answer: a node that is not up yet
	// must not hold back the others.
	PeerInfoTimeout = 2 * time.Second
)

// PeerInfo is a node's answer on GET /internal/info.
type PeerInfo struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	// InCluster: the node's configuration lists at least one server (it
	// bootstrapped, was joined, or restarted from a volume with state).
	InCluster bool `json:"in_cluster"`
	// BootstrapExpect is its RAFT_BOOTSTRAP_EXPECT (0: not set).
	BootstrapExpect int `json:"bootstrap_expect"`
	// ClusterID is the id of its cluster ("" while it has none).
	ClusterID string `json:"cluster_id"`
	// AppliedIndex is the last log index its replica has applied.
	AppliedIndex uint64 `json:"applied_index"`
}

// Info is this node's answer on GET /internal/info.
func (c *Cluster) Info(ctx context.Context) (PeerInfo, error) {
	members, err := c.node.Members(ctx)
	if err != nil {
		return PeerInfo{}, err
	}
	return PeerInfo{
		ID:              c.node.ID(),
		RaftAddr:        c.node.RaftAddr(),
		HTTPAddr:        c.node.HTTPAdvertise(),
		InCluster:       len(members) > 0,
		BootstrapExpect: c.opts.BootstrapExpect,
		ClusterID:       c.node.ClusterID(),
		AppliedIndex:    c.node.FSM().AppliedIndex(),
	}, nil
}

// expectDecision is what a node waiting for RAFT_BOOTSTRAP_EXPECT does next:
// bootstrap with servers, join through joinVia, or wait (why says for what).
type expectDecision struct {
	servers []node.Server
	joinVia []string
	why     string
}

// decideBootstrap applies the RAFT_BOOTSTRAP_EXPECT rules to what the
// join addresses answered (peers, in order; the unreachable are absent).
func decideBootstrap(self PeerInfo, peers []PeerInfo, expect int) expectDecision {
	var d expectDecision
	for _, p := range peers {
		if p.InCluster && p.ID != self.ID {
			d.joinVia = append(d.joinVia, p.HTTPAddr)
		}
	}
	if len(d.joinVia) > 0 {
		return d
	}
	byID := map[string]PeerInfo{self.ID: self}
	byRaft := map[string]string{self.RaftAddr: self.ID}
	for _, p := range peers {
		if p.ID == self.ID && p.RaftAddr == self.RaftAddr {
			continue // this node, listed among the join addresses
		}
		if p.BootstrapExpect != expect {
			if p.BootstrapExpect != 0 {
				d.why = fmt.Sprintf("%s at %s has RAFT_BOOTSTRAP_EXPECT=%d, this node %d: not bootstrapping until they agree",
					p.ID, p.HTTPAddr, p.BootstrapExpect, expect)
				return d
			}
			continue // waits to be joined; not one of the N
		}
		if q, ok := byID[p.ID]; ok && q.RaftAddr != p.RaftAddr {
			d.why = fmt.Sprintf("node id %s is used at both %s and %s: not bootstrapping", p.ID, q.RaftAddr, p.RaftAddr)
			return d
		}
		if id, ok := byRaft[p.RaftAddr]; ok && id != p.ID {
			d.why = fmt.Sprintf("raft address %s is claimed by both %s and %s: not bootstrapping", p.RaftAddr, id, p.ID)
			return d
		}
		byID[p.ID], byRaft[p.RaftAddr] = p, p.ID
	}
	if len(byID) < expect {
		ids := make([]string, 0, len(byID))
		for id := range byID {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		seen := make([]string, len(ids))
		for i, id := range ids {
			if id == self.ID {
				seen[i] = id + " (this node)"
			} else {
				seen[i] = id + " at " + byID[id].HTTPAddr
			}
		}
		d.why = fmt.Sprintf("waiting for RAFT_BOOTSTRAP_EXPECT=%d nodes to bootstrap with; seen %d of %d: %s",
			expect, len(byID), expect, strings.Join(seen, ", "))
		return d
	}
	for _, p := range byID {
		d.servers = append(d.servers, node.Server{ID: p.ID, RaftAddr: p.RaftAddr})
	}
	slices.SortFunc(d.servers, func(a, b node.Server) int { return cmp.Compare(a.ID, b.ID) })
	return d
}

// expectBootstrap returns the discovery step of RetryJoin for a node with
// an empty volume and RAFT_BOOTSTRAP_EXPECT set. Each call asks the join
// addresses once; it returns the addresses to join through when one of
// them is already in a cluster, and nil while waiting or once it has
// bootstrapped.
func (c *Cluster) expectBootstrap(joinAddrs []string) func(ctx context.Context) []string {
	said := ""
	say := func(msg string, warn bool) {
		if msg == said {
			return
		}
		said = msg
		if warn {
			c.log.Warn(msg)
		} else {
			c.log.Info(msg)
		}
	}
	return func(ctx context.Context) []string {
		self, err := c.Info(ctx)
		if err != nil {
			return nil
		}
		peers, silent := c.askJoinAddrs(ctx, joinAddrs)
		d := decideBootstrap(self, peers, c.opts.BootstrapExpect)
		switch {
		case len(d.joinVia) > 0:
			c.setPending("")
			say("a node at a join address is already in a cluster; joining it instead of bootstrapping", false)
			return d.joinVia
		case d.servers == nil:
			why := d.why
			if len(silent) > 0 {
				why += "; no answer from " + strings.Join(silent, ", ")
			}
			c.setPending(why)
			say(why, strings.Contains(why, "not bootstrapping"))
			return nil
		}
		c.setPending("")
		bctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
		defer cancel()
		err = c.node.Bootstrap(bctx, d.servers)
		switch {
		case errors.Is(err, node.ErrAlreadyBootstrapped):
		case err != nil:
			say(fmt.Sprintf("RAFT_BOOTSTRAP_EXPECT: bootstrap failed: %v", err), true)
		default:
			say(fmt.Sprintf("RAFT_BOOTSTRAP_EXPECT=%d reached: bootstrapped with %d voters", c.opts.BootstrapExpect, len(d.servers)), false)
		}
		return nil
	}
}

// askJoinAddrs asks every join address other than this node's own for its
// /internal/info, in parallel. The unreachable are left out of peers and
// listed in silent.
func (c *Cluster) askJoinAddrs(ctx context.Context, joinAddrs []string) (peers []PeerInfo, silent []string) {
	answers := make([]*PeerInfo, len(joinAddrs))
	var wg sync.WaitGroup
	for i, addr := range joinAddrs {
		if addr == c.node.HTTPAdvertise() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, PeerInfoTimeout)
			defer cancel()
			var in PeerInfo
			if _, err := c.client.Call(ctx, http.MethodGet, addr, PathInfo, &in); err != nil {
				c.log.WithError(err).Debug("join address did not answer")
				return
			}
			answers[i] = &in
		}()
	}
	wg.Wait()
	for i, a := range answers {
		switch {
		case a != nil:
			peers = append(peers, *a)
		case joinAddrs[i] != c.node.HTTPAdvertise():
			silent = append(silent, joinAddrs[i])
		}
	}
	return peers, silent
}

// ErrBootstrapPending: this node waits for RAFT_BOOTSTRAP_EXPECT peers, so
// there is no cluster yet and no leader to serve a request. Clients get it
// (503 bootstrap_pending) at once instead of no_leader after the request
// timeout; its message says what the node is waiting for.
var ErrBootstrapPending = errors.New("bootstrap pending")

// pendingError is ErrBootstrapPending with what the node waits for.
type pendingError struct{ why string }

func (e pendingError) Error() string { return "bootstrap pending: " + e.why }
func (e pendingError) Unwrap() error { return ErrBootstrapPending }

// UserMessage: the whole message is for users (what the node waits for),
// so the API shows it although the class is a 503.
func (e pendingError) UserMessage() string { return e.Error() }

// setPending records what the RAFT_BOOTSTRAP_EXPECT wait is waiting for
// ("" once it no longer waits).
func (c *Cluster) setPending(why string) { c.pending.Store(&why) }

// BootstrapPending returns an ErrBootstrapPending saying what this node
// waits for while it waits for RAFT_BOOTSTRAP_EXPECT peers with an empty
// volume and knows no leader; nil otherwise.
func (c *Cluster) BootstrapPending() error {
	why := c.pending.Load()
	if why == nil || *why == "" || c.node.HasState() {
		return nil
	}
	if _, ok := c.node.Leader(); ok {
		return nil
	}
	return pendingError{*why}
}

// waitLeader is node.WaitLeader, except that while the RAFT_BOOTSTRAP_EXPECT
// wait lasts it answers ErrBootstrapPending at once: no leader can appear
// before the bootstrap.
func (c *Cluster) waitLeader(ctx context.Context) (node.Leader, error) {
	if err := c.BootstrapPending(); err != nil {
		return node.Leader{}, err
	}
	l, err := c.node.WaitLeader(ctx)
	if errors.Is(err, node.ErrNoLeader) {
		if perr := c.BootstrapPending(); perr != nil {
			return node.Leader{}, perr
		}
	}
	return l, err
}
