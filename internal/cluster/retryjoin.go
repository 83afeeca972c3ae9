package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// RetryJoin keeps this node known to its cluster until ctx ends (Consul's
// retry-join). Whenever the node is missing from the configuration, or the
// cluster does not have its current HTTP address, it asks the leader (or,
// before it knows one, the join addresses from RAFT_JOIN) to /join it. A
// node that was a member and was then removed is not re-added: removal is
// an operator's decision. With RAFT_BOOTSTRAP_EXPECT and an empty volume it
// first tries to bootstrap with its peers (bootstrap.go).
func (c *Cluster) RetryJoin(ctx context.Context, joinAddrs []string) {
	const steady, maxBackoff = time.Second, 10 * time.Second
	wait, failures, wasMember, said := time.Duration(0), 0, false, ""
	late := false // joins through bootstrap-expect discovery, after the cluster formed
	discover := c.expectBootstrap(joinAddrs)
	// The leader's promotion loop lives as long as this one (promote.go).
	promoting := make(chan struct{})
	defer func() { <-promoting }()
	go func() {
		defer close(promoting)
		c.promoteLoop(ctx)
	}()
	if c.opts.BootstrapExpect > 0 && !c.node.HasState() {
		c.setPending(fmt.Sprintf("waiting for RAFT_BOOTSTRAP_EXPECT=%d nodes to bootstrap with; asking %s", c.opts.BootstrapExpect, strings.Join(joinAddrs, ", ")))
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = steady
		member, registered := c.membership(ctx)
		wasMember = wasMember || member
		if member {
			c.learnClusterID(ctx)
		}
		if member && registered || c.node.IsLeader() {
			continue
		}
		if !member && wasMember {
			if said != "removed" {
				c.log.Info("this node was removed from the cluster; not rejoining (use /join to add it back)")
				said = "removed"
			}
			continue
		}
		targets := joinAddrs
		if c.opts.BootstrapExpect > 0 && !member && !wasMember && !c.node.HasState() {
			if targets = discover(ctx); len(targets) == 0 {
				wait = expectPoll // waiting for peers, or just bootstrapped
				continue
			}
			// The cluster was formed without this node: it joins as a
			// learner rather than making the voter count
			// RAFT_BOOTSTRAP_EXPECT+1 (an even count) on its own.
			late = true
		}
		if l, ok := c.node.Leader(); ok && l.HTTPAddr != "" {
			targets = []string{l.HTTPAddr}
		} else if member {
			continue // registered once a leader is known
		}
		if len(targets) == 0 {
			if said != "waiting" {
				c.log.Info("waiting to be joined to a cluster (see /join)")
				said = "waiting"
			}
			continue
		}
		if err := c.joinVia(ctx, targets, !late); err != nil {
			failures++
			wait = min(steady<<min(failures, 4), maxBackoff)
			c.log.WithError(err).WithField("retry_in", wait).Warn("could not join the cluster yet")
			continue
		}
		failures, said = 0, ""
	}
}

// membership reports whether this node is a member at its own Raft address,
// and whether the cluster has its current HTTP address.
func (c *Cluster) membership(ctx context.Context) (member, registered bool) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	members, err := c.node.Members(ctx)
	if err != nil {
		return false, false
	}
	for _, m := range members {
		if m.ID == c.node.ID() {
			member = m.RaftAddr == c.node.RaftAddr() // a voter or a learner
			registered = m.HTTPAddr == c.node.HTTPAdvertise()
		}
	}
	return member, registered
}

// joinVia asks each target in turn to join this node; the first that
// answers 200 wins. A follower target forwards the request to its leader.
// voter false asks to stay a learner (a late RAFT_BOOTSTRAP_EXPECT node);
// if the cluster already has this id as a voter (a replaced member), the
// join is asked again as a voter, which changes no suffrage.
func (c *Cluster) joinVia(ctx context.Context, targets []string, voter bool) error {
	// Otherwise no voter=false: a join never changes an existing member's
	// suffrage, so a learner re-joining stays a learner.
	uri := JoinURI(c.node.ID(), c.node.RaftAddr(), c.node.HTTPAdvertise(), voter)
	var last error
	for _, t := range targets {
		if t == c.node.HTTPAdvertise() {
			continue
		}
		asLearner := !voter
		status, err := c.client.Call(ctx, http.MethodPost, t, uri, nil)
		if status == http.StatusConflict && !voter && strings.Contains(err.Error(), `"suffrage_conflict"`) {
			// Already a voter (in the bootstrap configuration, or a
			// replaced member): it stays one.
			asLearner = false
			status, err = c.client.Call(ctx, http.MethodPost, t, JoinURI(c.node.ID(), c.node.RaftAddr(), c.node.HTTPAdvertise(), true), nil)
		}
		if last = err; err == nil && status == http.StatusOK {
			msg := "joined the cluster"
			if asLearner {
				msg = fmt.Sprintf("joined the cluster, formed without this node, as a learner (RAFT_BOOTSTRAP_EXPECT=%d: "+
					"the cluster has its voters); POST /promote?nodeId=%s on any member makes it a voter", c.opts.BootstrapExpect, c.node.ID())
			}
			c.log.WithField("via", t).Info(msg)
			return nil
		}
	}
	if last == nil {
		last = fmt.Errorf("no target other than this node")
	}
	return last
}

// JoinURI is the /join request that adds node id at raftAddr (and httpAddr,
// when set) as a voter or a learner, with every address explicit.
func JoinURI(id, raftAddr, httpAddr string, voter bool) string {
	q := url.Values{"nodeId": {id}, "raftAddr": {raftAddr}}
	if httpAddr != "" {
		q.Set("httpAddr", httpAddr)
	}
	if !voter {
		q.Set("voter", "false")
	}
	return "/join?" + q.Encode()
}
