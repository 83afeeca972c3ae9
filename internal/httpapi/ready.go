package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/raftkv/raftkv/internal/node"
)

// readyTimeout bounds a readiness check: load balancers and Docker probe
// often, with short timeouts of their own, and a node that cannot answer
// within this is not ready anyway.
const readyTimeout = 2 * time.Second

// readyApplyWait is how long a check waits for this node to apply up to
// the leader's read index before calling it "catching_up": long enough to
// absorb replication of the last few writes, short enough that a node far
// behind is reported promptly.
const readyApplyWait = 500 * time.Millisecond

// readyResponse is the body of /ready, both ways.
type readyResponse struct {
	ID     string `json:"id"`
	Ready  bool   `json:"ready"`
	Status string `json:"status"`          // "ready" or "not_ready"
	Code   string `json:"code,omitempty"`  // why not ready: no_leader, not_member, catching_up, …
	Error  string `json:"error,omitempty"` // the same, in words
	// LeaderID is the leader this node follows, when known.
	LeaderID string `json:"leader_id,omitempty"`
	// AppliedIndex is this node's applied index at the end of the check;
	// LeaderCommitIndex is the read index the leader confirmed for it (0
	// when the leader was not reached).
	AppliedIndex      uint64 `json:"applied_index"`
	LeaderCommitIndex uint64 `json:"leader_commit_index,omitempty"`
}

// handleReady answers 200 only when this node knows a leader, is a member
// (voter or not) of its latest configuration, and has applied everything
// the leader had committed when the check began; otherwise 503 with the
// reason. It costs one read-index round trip to the leader, shared with
// concurrent linearizable reads.
func (s *Service) handleReady(w http.ResponseWriter, r *http.Request, _ params) error {
	ctx, cancel := context.WithTimeout(r.Context(), min(readyTimeout, s.opts.RequestTimeout))
	defer cancel()
	resp, err := s.checkReady(ctx)
	resp.ID = s.store.ID()
	resp.AppliedIndex = s.store.FSM().AppliedIndex()
	if err != nil {
		status, code := statusOf(err)
		msg, withheld := publicMessage(err, status)
		if withheld {
			s.log.WithError(err).WithField("code", code).Debug("not ready")
		}
		resp.Status, resp.Code, resp.Error = "not_ready", code, msg
		// Whatever the error's usual status (a lost forward is a 502
		// elsewhere), readiness has two answers.
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, resp)
		return nil
	}
	resp.Ready, resp.Status = true, "ready"
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// checkReady runs the checks in order; the first that fails is the reason.
func (s *Service) checkReady(ctx context.Context) (readyResponse, error) {
	var resp readyResponse
	if s.store.Removed() {
		return resp, node.ErrRemoved
	}
	// A node whose volume refuses writes cannot take its share of any
	// write, whoever leads.
	if err := s.store.StorageFault(); err != nil {
		return resp, err
	}
	leader, ok := s.store.Leader()
	if !ok {
		if err := s.cluster.BootstrapPending(); err != nil {
			return resp, err
		}
		return resp, userErrorf(node.ErrNoLeader, "this node knows no leader")
	}
	resp.LeaderID = leader.ID
	members, err := s.store.Members(ctx)
	if err != nil {
		return resp, err
	}
	if len(members) == 0 {
		// Knowing a leader but no configuration at all: a joiner that has
		// not yet received the leader's log or snapshot.
		return resp, userErrorf(ErrCatchingUp, "the cluster configuration has not reached this node yet")
	}
	if !hasMember(members, s.store.ID()) {
		return resp, userErrorf(ErrNotMember, "%s is not in the cluster configuration", s.store.ID())
	}
	if leader.HTTPAddr == "" {
		// The leader's address is replicated state: not knowing it means
		// this node has not applied the leader's registration yet.
		return resp, userErrorf(ErrCatchingUp, "the leader's address (%s) is not replicated here yet", leader.ID)
	}
	// A node that repaired its volume at start may lack entries it had
	// acknowledged; it does not vote, nor count as ready, until the leader
	// has given them back.
	if err := s.store.VoteHeld(); err != nil {
		return resp, err
	}
	index, err := s.cluster.ReadIndex(ctx)
	if errors.Is(err, node.ErrNotLeader) {
		// This node led when the check began and no longer does.
		return resp, userErrorf(node.ErrNoLeader, "leadership moved during the check")
	}
	if err != nil {
		return resp, err
	}
	resp.LeaderCommitIndex = index
	wctx, cancel := context.WithTimeout(ctx, readyApplyWait)
	defer cancel()
	if err := s.store.FSM().WaitApplied(wctx, index); err != nil {
		return resp, userErrorf(ErrCatchingUp, "applied index %d is behind the leader's commit index %d", s.store.FSM().AppliedIndex(), index)
	}
	return resp, nil
}

func hasMember(members []node.Member, id string) bool {
	for _, m := range members {
		if m.ID == id {
			return true
		}
	}
	return false
}

func (s *Service) handleHealth(w http.ResponseWriter, _ *http.Request, _ params) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "id": s.store.ID()})
	return nil
}
