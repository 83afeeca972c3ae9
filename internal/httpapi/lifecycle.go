package httpapi

// Membership and lifecycle endpoints beyond join/leave: promoting a
// learner, moving leadership, and what a node does on its way out.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/internal/node"
)

// voterParam reads /join's optional voter=true|false (default true).
func voterParam(p params) (bool, error) {
	v, ok := p.get("voter")
	if !ok {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: voter: %q is not true or false", ErrBadRequest, v)
	}
	return b, nil
}

// nodeIDParam reads nodeId: required, or optional with required false
// ("" when absent).
func (s *Service) nodeIDParam(w http.ResponseWriter, r *http.Request, required bool) (string, params, error) {
	p, err := s.readParams(w, r)
	if err != nil {
		return "", p, err
	}
	id, ok := p.get("nodeId")
	if !ok && !required {
		return "", p, nil
	}
	if !ok || id == "" {
		return "", p, fmt.Errorf("%w: missing parameter \"nodeId\"", ErrBadRequest)
	}
	if err := node.ValidateNodeID(id); err != nil {
		return "", p, fmt.Errorf("%w: nodeId: %v", ErrBadRequest, err)
	}
	return id, p, nil
}

type promoteResponse struct {
	NodeID string `json:"node_id"`
	Change string `json:"change"` // promoted or unchanged
	Index  uint64 `json:"index,omitempty"`
	Voter  bool   `json:"voter"`
}

// handlePromote makes a learner a voter (POST /promote?nodeId=), on the
// leader: a follower forwards it.
func (s *Service) handlePromote(w http.ResponseWriter, r *http.Request) {
	id, p, err := s.nodeIDParam(w, r, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.onLeader(w, r, p.body, maxHops, func(ctx context.Context) (any, error) {
		res, err := s.node.Promote(ctx, id)
		return promoteResponse{NodeID: id, Change: res.Change, Index: res.Index, Voter: res.Voter}, err
	})
}

type transferResponse struct {
	PreviousLeader string `json:"previous_leader"`
	// Leader is the new leader's id, or "" if it was not known yet when
	// the request's deadline came (the transfer itself has happened).
	Leader string `json:"leader"`
	Change string `json:"change"` // transferred or unchanged
}

// handleTransferLeadership moves leadership (POST
// /transfer-leadership[?nodeId=]) to the named voter, or to the most
// up-to-date one. A follower forwards it to the leader.
func (s *Service) handleTransferLeadership(w http.ResponseWriter, r *http.Request) {
	id, p, err := s.nodeIDParam(w, r, false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.onLeader(w, r, p.body, maxHops, func(ctx context.Context) (any, error) {
		leader, err := s.node.TransferLeadership(ctx, id)
		res := transferResponse{PreviousLeader: s.node.ID(), Leader: leader, Change: "transferred"}
		if leader == s.node.ID() {
			res.Change = "unchanged"
		}
		return res, err
	})
}

// PrepareStop is the first step of a graceful stop, before the HTTP server
// drains: with leave (LEAVE_ON_TERMINATE) the node removes itself from the
// configuration; otherwise a leader hands leadership to an up-to-date
// voter, so the cluster need not wait an election timeout. Failures are
// logged, never fatal, and ctx bounds everything.
func (s *Service) PrepareStop(ctx context.Context, leave bool) {
	start := time.Now()
	if leave {
		if err := s.leaveCluster(ctx); err != nil {
			s.log.WithError(err).WithField("took", time.Since(start)).Warn("could not leave the cluster before stopping")
		}
		return
	}
	wasLeader := s.node.IsLeader()
	leader, err := s.node.HandOff(ctx)
	switch {
	case err != nil:
		s.log.WithError(err).WithField("took", time.Since(start)).Warn("could not hand off leadership before stopping; the others will elect a leader")
	case wasLeader && leader != "":
		s.log.WithFields(map[string]any{"to": leader, "took": time.Since(start)}).Info("handed off leadership before stopping")
	case wasLeader:
		s.log.Info("no other voter to hand leadership to")
	}
}

// leaveCluster removes this node from the configuration. A leader first
// transfers leadership (node.Leave does that and answers ErrNotLeader);
// then, as for a follower, the leader is asked over HTTP to remove it.
func (s *Service) leaveCluster(ctx context.Context) error {
	self := s.node.ID()
	if !s.isMember(ctx) {
		s.log.Info("not a member of a cluster; nothing to leave")
		return nil
	}
	var last error
	for attempt := 0; attempt < 10 && ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(backoffLeave(attempt)):
			}
		}
		if !s.isMember(ctx) {
			s.log.Info("left the cluster")
			return nil
		}
		if s.node.IsLeader() {
			_, err := s.node.Leave(ctx, self)
			switch {
			case errors.Is(err, node.ErrLastVoter):
				return fmt.Errorf("not leaving: %w", err)
			case err != nil && !errors.Is(err, node.ErrNotLeader):
				last = err
				continue
			}
			// Leadership moved: ask the new leader below.
		}
		l, err := s.node.WaitLeader(ctx)
		if err != nil {
			last = err
			continue
		}
		if l.ID == self {
			continue
		}
		status, err := s.peerCall(ctx, http.MethodPost, s.nodeURL(l.HTTPAddr, "/leave?"+url.Values{"nodeId": {self}}.Encode()), nil)
		switch {
		case err == nil, status == http.StatusNotFound: // removed, now or before
			s.log.WithField("via", l.ID).Info("left the cluster")
			return nil
		}
		last = err
	}
	if last == nil {
		last = ctx.Err()
	}
	return last
}

func backoffLeave(attempt int) time.Duration {
	return min(50*time.Millisecond<<min(attempt, 4), 500*time.Millisecond)
}

// isMember reports whether this node is in its latest known configuration
// (assumed true when that cannot be read).
func (s *Service) isMember(ctx context.Context) bool {
	members, err := s.node.Members(ctx)
	if err != nil {
		return true
	}
	for _, m := range members {
		if m.ID == s.node.ID() {
			return true
		}
	}
	return false
}

// peerCall sends a node-originated request to another node and, on a 200,
// decodes the JSON answer into out (if not nil). Any other status is an
// error quoting the answer; status is 0 when no answer came.
func (s *Service) peerCall(ctx context.Context, method, url string, out any) (status int, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout+forwardSlack)
	defer cancel()
	req, err := s.peerRequest(ctx, method, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, req.URL.Host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: read answer: %w", method, req.URL.Host, err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("%s %s%s: %s: %.512s", method, req.URL.Host, req.URL.Path, resp.Status, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s%s: decode answer: %w", method, req.URL.Host, req.URL.Path, err)
		}
	}
	return resp.StatusCode, nil
}
