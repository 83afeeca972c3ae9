package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/raftkv/raftkv/internal/node"
)

type joinResponse struct {
	NodeID   string `json:"node_id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
	Change   string `json:"change"` // added, updated or unchanged
	Index    uint64 `json:"index,omitempty"`
	Voter    bool   `json:"voter"` // suffrage after the join
}

// handleJoin adds a voter: /join?nodeId=n2&raftPort=9001 as in the seed
// (the Raft host is the caller's IP), or raftAddr=host:port explicitly;
// voter=false adds a learner.
func (s *Service) handleJoin(w http.ResponseWriter, r *http.Request) {
	id, raftAddr, httpAddr, voter, err := s.joinParams(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// Resolve the caller-relative address here: once forwarded, the caller
	// would be this node.
	canonical := joinURI(id, raftAddr, httpAddr, voter)
	if s.forwardOrServe(w, r, canonical, nil) {
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	res, err := s.node.Join(ctx, id, raftAddr, httpAddr, voter)
	if errors.Is(err, node.ErrNotLeader) {
		s.reforward(w, r, canonical, nil, maxHops)
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, joinResponse{NodeID: id, RaftAddr: raftAddr, HTTPAddr: httpAddr, Change: res.Change, Index: res.Index, Voter: res.Voter})
}

func (s *Service) joinParams(w http.ResponseWriter, r *http.Request) (id, raftAddr, httpAddr string, voter bool, err error) {
	p, err := s.readParams(w, r)
	if err != nil {
		return "", "", "", false, err
	}
	if id, err = p.required("nodeId"); err != nil {
		return "", "", "", false, err
	}
	if err = node.ValidateNodeID(id); err != nil {
		return "", "", "", false, fmt.Errorf("%w: nodeId: %v", ErrBadRequest, err)
	}
	if voter, err = voterParam(p); err != nil {
		return "", "", "", false, err
	}
	if v, ok := p.get("raftAddr"); ok {
		raftAddr, err = hostPort("raftAddr", v)
	} else if v, ok := p.get("raftPort"); ok {
		var port string
		if port, err = portParam("raftPort", v); err == nil {
			raftAddr = net.JoinHostPort(callerHost(r), port)
		}
	} else {
		err = fmt.Errorf("%w: missing parameter \"raftPort\" (or \"raftAddr\")", ErrBadRequest)
	}
	if err != nil {
		return "", "", "", false, err
	}
	if v, ok := p.get("httpAddr"); ok {
		if httpAddr, err = hostPort("httpAddr", v); err != nil {
			return "", "", "", false, err
		}
	}
	return id, raftAddr, httpAddr, voter, nil
}

func joinURI(id, raftAddr, httpAddr string, voter bool) string {
	q := url.Values{"nodeId": {id}, "raftAddr": {raftAddr}}
	if httpAddr != "" {
		q.Set("httpAddr", httpAddr)
	}
	if !voter {
		q.Set("voter", "false")
	}
	return "/join?" + q.Encode()
}

type leaveResponse struct {
	NodeID string `json:"node_id"`
	Index  uint64 `json:"index"`
}

// handleLeave removes a member. Removing the leader transfers leadership
// first, then sends the request on to the new leader: that one extra hop is
// allowed because this node has just stopped leading.
func (s *Service) handleLeave(w http.ResponseWriter, r *http.Request) {
	id, p, err := s.nodeIDParam(w, r, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.onLeader(w, r, p.body, hopsOf(r)+1, func(ctx context.Context) (any, error) {
		index, err := s.node.Leave(ctx, id)
		return leaveResponse{NodeID: id, Index: index}, err
	})
}

func (s *Service) probe(ctx context.Context, httpAddr string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := s.peerRequest(ctx, http.MethodGet, s.nodeURL(httpAddr, "/health"), nil)
	if err != nil {
		return false
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (s *Service) handleStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	st, err := s.node.Status(ctx)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

type snapshotResponse struct {
	Index   uint64 `json:"index"`
	Created bool   `json:"created"`
}

// handleSnapshot snapshots this node (not the leader: each node compacts
// its own log).
func (s *Service) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	index, created, err := s.node.Snapshot(ctx)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, snapshotResponse{Index: index, Created: created})
}

func (s *Service) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "id": s.node.ID()})
}
