package httpapi

// RAFT_BOOTSTRAP_EXPECT: nodes started together, each listing the others
// in RAFT_JOIN, form one cluster without an operator. A node with an empty
// volume asks every seed who it is (GET /internal/info). As soon as it sees
// N nodes (itself included) that are in no cluster and expect the same N,
// it bootstraps with all of them as voters; each of them does the same with
// the same list, and hashicorp/raft accepts an identical bootstrap
// configuration on every member (as Consul's bootstrap_expect does). If any
// seed is already in a cluster, the node joins that cluster instead.

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
	pathPeerInfo = "/internal/info"
	// expectPoll is how often a node waiting for RAFT_BOOTSTRAP_EXPECT
	// peers asks the seeds again.
	expectPoll = 500 * time.Millisecond
	// peerInfoTimeout bounds one seed's answer: a seed that is not up yet
	// must not hold back the others.
	peerInfoTimeout = 2 * time.Second
)

// peerInfo is a node's answer on GET /internal/info.
type peerInfo struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	// InCluster: the node's configuration lists at least one server (it
	// bootstrapped, was joined, or restarted from a volume with state).
	InCluster bool `json:"in_cluster"`
	// BootstrapExpect is its RAFT_BOOTSTRAP_EXPECT (0: not set).
	BootstrapExpect int `json:"bootstrap_expect"`
}

func (s *Service) info(ctx context.Context) (peerInfo, error) {
	members, err := s.node.Members(ctx)
	if err != nil {
		return peerInfo{}, err
	}
	return peerInfo{
		ID:              s.node.ID(),
		RaftAddr:        s.node.RaftAddr(),
		HTTPAddr:        s.node.HTTPAdvertise(),
		InCluster:       len(members) > 0,
		BootstrapExpect: s.opts.BootstrapExpect,
	}, nil
}

func (s *Service) handlePeerInfo(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	in, err := s.info(ctx)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

// expectDecision is what a node waiting for RAFT_BOOTSTRAP_EXPECT does next:
// bootstrap with servers, join through joinVia, or wait (why says for what).
type expectDecision struct {
	servers []node.Server
	joinVia []string
	why     string
}

// decideBootstrap applies the RAFT_BOOTSTRAP_EXPECT rules to what the
// seeds answered (peers, in seed order; unreachable seeds are absent).
func decideBootstrap(self peerInfo, peers []peerInfo, expect int) expectDecision {
	var d expectDecision
	for _, p := range peers {
		if p.InCluster && p.ID != self.ID {
			d.joinVia = append(d.joinVia, p.HTTPAddr)
		}
	}
	if len(d.joinVia) > 0 {
		return d
	}
	byID := map[string]peerInfo{self.ID: self}
	byRaft := map[string]string{self.RaftAddr: self.ID}
	for _, p := range peers {
		if p.ID == self.ID && p.RaftAddr == self.RaftAddr {
			continue // this node, listed among the seeds
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
		d.why = fmt.Sprintf("waiting for %d nodes to bootstrap with; seen %d: %s", expect, len(byID), strings.Join(ids, ", "))
		return d
	}
	for _, p := range byID {
		d.servers = append(d.servers, node.Server{ID: p.ID, RaftAddr: p.RaftAddr})
	}
	slices.SortFunc(d.servers, func(a, b node.Server) int { return cmp.Compare(a.ID, b.ID) })
	return d
}

// expectBootstrap returns the discovery step of Announce for a node with
// an empty volume and RAFT_BOOTSTRAP_EXPECT set. Each call asks the seeds
// once; it returns the addresses to join through when a seed is already in
// a cluster, and nil while waiting or once it has bootstrapped.
func (s *Service) expectBootstrap(seeds []string) func(ctx context.Context) []string {
	said := ""
	say := func(msg string, warn bool) {
		if msg == said {
			return
		}
		said = msg
		if warn {
			s.log.Warn(msg)
		} else {
			s.log.Info(msg)
		}
	}
	return func(ctx context.Context) []string {
		self, err := s.info(ctx)
		if err != nil {
			return nil
		}
		d := decideBootstrap(self, s.askSeeds(ctx, seeds), s.opts.BootstrapExpect)
		switch {
		case len(d.joinVia) > 0:
			say("a seed is already in a cluster; joining it instead of bootstrapping", false)
			return d.joinVia
		case d.servers == nil:
			say(d.why, strings.Contains(d.why, "not bootstrapping"))
			return nil
		}
		bctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		defer cancel()
		err = s.node.Bootstrap(bctx, d.servers)
		switch {
		case errors.Is(err, node.ErrAlreadyBootstrapped):
		case err != nil:
			say(fmt.Sprintf("RAFT_BOOTSTRAP_EXPECT: bootstrap failed: %v", err), true)
		default:
			say(fmt.Sprintf("RAFT_BOOTSTRAP_EXPECT=%d reached: bootstrapped with %d voters", s.opts.BootstrapExpect, len(d.servers)), false)
		}
		return nil
	}
}

// askSeeds asks every seed other than this node's own address for its
// /internal/info, in parallel; unreachable seeds are left out.
func (s *Service) askSeeds(ctx context.Context, seeds []string) []peerInfo {
	answers := make([]*peerInfo, len(seeds))
	var wg sync.WaitGroup
	for i, addr := range seeds {
		if addr == s.node.HTTPAdvertise() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, peerInfoTimeout)
			defer cancel()
			var in peerInfo
			if _, err := s.peerCall(ctx, http.MethodGet, s.nodeURL(addr, pathPeerInfo), &in); err != nil {
				s.log.WithError(err).Debug("seed did not answer")
				return
			}
			answers[i] = &in
		}()
	}
	wg.Wait()
	var out []peerInfo
	for _, a := range answers {
		if a != nil {
			out = append(out, *a)
		}
	}
	return out
}
