package httpapi

// Membership and other admin endpoints. The leader-only ones (join,
// leave, promote, transfer) run through onLeader: on the leader they run
// here, on a follower the request goes to the leader.

import (
	"bytes"
	"context"
	"net/http"

	"github.com/raftkv/raftkv/internal/cluster"
)

// onLeader runs local when this node leads, else forwards the request to
// the leader (see cluster.OnLeader). The route decides whether a broken
// forward counts as a write; the request id and the leader go to the log.
func (s *Service) onLeader(w http.ResponseWriter, r *http.Request, f cluster.Forward, local func() error) error {
	o, _ := w.(*observedWriter)
	if o != nil && o.route != nil {
		f.Write = o.route.write
	}
	f.RequestID = requestIDOf(w, r)
	via, err := s.cluster.OnLeader(w, r, f, local)
	if via != "" {
		noteForward(w, via)
	}
	return err
}

// leaderOp answers a leader-only admin request with op's result.
func (s *Service) leaderOp(w http.ResponseWriter, r *http.Request, f cluster.Forward, op func(context.Context) (any, error)) error {
	return s.onLeader(w, r, f, func() error {
		ctx, cancel := s.requestContext(r)
		defer cancel()
		res, err := op(ctx)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, res)
		return nil
	})
}

// formBody is a parsed form body, to send again when forwarding.
func formBody(b []byte) cluster.Forward {
	return cluster.Forward{Body: bytes.NewReader(b), Size: int64(len(b))}
}

type joinResponse struct {
	NodeID   string `json:"node_id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
	Change   string `json:"change"` // added, updated or unchanged
	Index    uint64 `json:"index,omitempty"`
	Voter    bool   `json:"voter"` // suffrage after the join
	// AutoPromote: added as a learner, made a voter by the leader once
	// it has caught up.
	AutoPromote bool `json:"auto_promote,omitempty"`
}

// handleJoin adds a member: /join?nodeId=n2&raftPort=9001 (the Raft host
// is the caller's IP), or raftAddr=host:port explicitly. The leader first
// contacts the joiner (cluster.CheckJoiner) and refuses one that cannot
// serve; a new member is added as a learner and promoted once caught up,
// or stays a learner with voter=false.
func (s *Service) handleJoin(w http.ResponseWriter, r *http.Request, p params) error {
	q, err := s.parseJoin(r, p)
	if err != nil {
		return err
	}
	// Resolve the caller-relative address here: once forwarded, the caller
	// would be this node.
	f := cluster.Forward{URI: cluster.JoinURI(q.id, q.raftAddr, q.httpAddr, q.voter)}
	return s.leaderOp(w, r, f, func(ctx context.Context) (any, error) {
		admit := func(ctx context.Context) error { return s.cluster.CheckJoiner(ctx, q.id, q.raftAddr, q.httpAddr) }
		res, err := s.store.Join(ctx, q.id, q.raftAddr, q.httpAddr, q.voter, admit)
		return joinResponse{NodeID: q.id, RaftAddr: q.raftAddr, HTTPAddr: q.httpAddr, Change: res.Change, Index: res.Index, Voter: res.Voter, AutoPromote: res.AutoPromote}, err
	})
}

type leaveResponse struct {
	NodeID string `json:"node_id"`
	Index  uint64 `json:"index"`
}

// handleLeave removes a member. Removing the leader transfers leadership
// first, then sends the request on to the new leader: that one extra hop is
// allowed because this node has just stopped leading.
func (s *Service) handleLeave(w http.ResponseWriter, r *http.Request, p params) error {
	q, err := parseNodeID(p, true)
	if err != nil {
		return err
	}
	f := formBody(q.body)
	f.Reforward = true
	return s.leaderOp(w, r, f, func(ctx context.Context) (any, error) {
		index, err := s.store.Leave(ctx, q.id)
		return leaveResponse{NodeID: q.id, Index: index}, err
	})
}

type promoteResponse struct {
	NodeID string `json:"node_id"`
	Change string `json:"change"` // promoted or unchanged
	Index  uint64 `json:"index,omitempty"`
	Voter  bool   `json:"voter"`
}

// handlePromote makes a learner a voter (POST /promote?nodeId=).
func (s *Service) handlePromote(w http.ResponseWriter, r *http.Request, p params) error {
	q, err := parseNodeID(p, true)
	if err != nil {
		return err
	}
	return s.leaderOp(w, r, formBody(q.body), func(ctx context.Context) (any, error) {
		res, err := s.store.Promote(ctx, q.id)
		return promoteResponse{NodeID: q.id, Change: res.Change, Index: res.Index, Voter: res.Voter}, err
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
// up-to-date one.
func (s *Service) handleTransferLeadership(w http.ResponseWriter, r *http.Request, p params) error {
	q, err := parseNodeID(p, false)
	if err != nil {
		return err
	}
	return s.leaderOp(w, r, formBody(q.body), func(ctx context.Context) (any, error) {
		leader, err := s.store.TransferLeadership(ctx, q.id)
		res := transferResponse{PreviousLeader: s.store.ID(), Leader: leader, Change: "transferred"}
		if leader == s.store.ID() {
			res.Change = "unchanged"
		}
		return res, err
	})
}

type snapshotResponse struct {
	Index   uint64 `json:"index"`
	Created bool   `json:"created"`
}

// handleSnapshot snapshots this node (not the leader: each node compacts
// its own log).
// It takes no parameters, in a form body neither (route.form: the adapter
// reads and refuses them).
func (s *Service) handleSnapshot(w http.ResponseWriter, r *http.Request, _ params) error {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	index, created, err := s.store.Snapshot(ctx)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, snapshotResponse{Index: index, Created: created})
	return nil
}
