package httpapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Announce keeps this node known to its cluster until ctx ends. Whenever
// the node is missing from the configuration, or the cluster does not have
// its current HTTP address, it asks the leader (or, before it knows one, the
// seed addresses from RAFT_JOIN) to /join it. A node that was a member and
// was then removed is not re-added: removal is an operator's decision.
func (s *Service) Announce(ctx context.Context, seeds []string) {
	const steady, maxBackoff = time.Second, 10 * time.Second
	wait, failures, wasMember, said := time.Duration(0), 0, false, ""
	discover := s.expectBootstrap(seeds)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = steady
		member, registered := s.membership(ctx)
		wasMember = wasMember || member
		if member && registered || s.node.IsLeader() {
			continue
		}
		if !member && wasMember {
			if said != "removed" {
				s.log.Info("this node was removed from the cluster; not rejoining (use /join to add it back)")
				said = "removed"
			}
			continue
		}
		targets := seeds
		if s.opts.BootstrapExpect > 0 && !member && !wasMember && !s.node.HasState() {
			if targets = discover(ctx); len(targets) == 0 {
				wait = expectPoll // waiting for peers, or just bootstrapped
				continue
			}
		}
		if l, ok := s.node.Leader(); ok && l.HTTPAddr != "" {
			targets = []string{l.HTTPAddr}
		} else if member {
			continue // registered once a leader is known
		}
		if len(targets) == 0 {
			if said != "waiting" {
				s.log.Info("waiting to be joined to a cluster (see /join)")
				said = "waiting"
			}
			continue
		}
		if err := s.announceTo(ctx, targets); err != nil {
			failures++
			wait = min(steady<<min(failures, 4), maxBackoff)
			s.log.WithError(err).WithField("retry_in", wait).Warn("could not join the cluster yet")
			continue
		}
		failures, said = 0, ""
	}
}

// membership reports whether this node is a member at its own Raft address,
// and whether the cluster has its current HTTP address.
func (s *Service) membership(ctx context.Context) (member, registered bool) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	members, err := s.node.Members(ctx)
	if err != nil {
		return false, false
	}
	for _, m := range members {
		if m.ID == s.node.ID() {
			member = m.RaftAddr == s.node.RaftAddr() // a voter or a learner
			registered = m.HTTPAddr == s.node.HTTPAdvertise()
		}
	}
	return member, registered
}

// announceTo asks each target in turn to join this node; the first that
// answers 200 wins. A follower target forwards the request to its leader.
func (s *Service) announceTo(ctx context.Context, targets []string) error {
	// No voter=false: a join never changes an existing member's suffrage,
	// so a learner re-announcing itself stays a learner.
	uri := joinURI(s.node.ID(), s.node.RaftAddr(), s.node.HTTPAdvertise(), true)
	var last error
	for _, t := range targets {
		if t == s.node.HTTPAdvertise() {
			continue
		}
		last = s.askJoin(ctx, s.nodeURL(t, uri))
		if last == nil {
			s.log.WithField("via", t).Info("joined the cluster")
			return nil
		}
	}
	if last == nil {
		last = fmt.Errorf("no target other than this node")
	}
	return last
}

func (s *Service) askJoin(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout+forwardSlack)
	defer cancel()
	req, err := s.peerRequest(ctx, http.MethodPost, url, nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("join via %s: %w", req.URL.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("join via %s: %s: %s", req.URL.Host, resp.Status, msg)
	}
	return nil
}
