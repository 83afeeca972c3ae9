package httpapi

import (
	"net/http"
	"sync"

	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/node"
)

// nodeView is one row of GET /nodes: the member as the configuration
// lists it, plus what the serving node (the leader, unless ?stale) learned
// by probing it. Pointer fields are null when the member did not answer.
type nodeView struct {
	node.Member      // id, addresses, voter, suffrage, leader
	Reachable   bool `json:"reachable"`
	// State is the member's own Raft state (Leader, Follower, Candidate).
	State string `json:"state,omitempty"`
	// LastContactMs is how long ago the member last heard from the leader,
	// as it reports it (0 for the leader itself).
	LastContactMs *float64 `json:"last_contact_ms"`
	// MatchIndex is the last log index the member holds; AppliedIndex the
	// last it applied.
	MatchIndex   *uint64 `json:"match_index"`
	AppliedIndex *uint64 `json:"applied_index"`
	// Lag is the serving node's last log index minus MatchIndex: entries
	// the member still has to receive (0 for the serving node itself).
	Lag *uint64 `json:"lag"`
	// Term and CommitIndex are the member's own Raft term and commit
	// index, as it reports them.
	Term        *uint64 `json:"term"`
	CommitIndex *uint64 `json:"commit_index"`
}

// handleNodes lists the members with their replication progress, from the
// leader's view: a follower forwards the request unless ?stale is given,
// in which case it answers from its own configuration and log. The serving
// node probes each member in parallel (one second each).
func (s *Service) handleNodes(w http.ResponseWriter, r *http.Request, p params) error {
	stale, err := p.flag("stale", false)
	if err != nil {
		return err
	}
	if stale {
		return s.listNodes(w, r)
	}
	return s.onLeader(w, r, cluster.Forward{}, func() error { return s.listNodes(w, r) })
}

func (s *Service) listNodes(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	st, err := s.store.Status(ctx)
	if err != nil {
		return err
	}
	out := make([]nodeView, len(st.Configuration))
	var wg sync.WaitGroup
	for i, m := range st.Configuration {
		out[i].Member = m
		if m.ID == s.store.ID() {
			out[i].Reachable = true
			out[i].fill(st, st.LastLogIndex)
			continue
		}
		if m.HTTPAddr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := s.cluster.Probe(ctx, m.HTTPAddr)
			out[i].Reachable = p.Reachable
			if p.Status == nil {
				return
			}
			out[i].fill(*p.Status, st.LastLogIndex)
		}()
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, out)
	return nil
}

// fill copies a member's reported progress; ref is the serving node's last
// log index, which the lag is measured against.
func (v *nodeView) fill(st node.Status, ref uint64) {
	match, applied, term, commit := st.LastLogIndex, st.AppliedIndex, st.Term, st.CommitIndex
	lag := uint64(0)
	if ref > match {
		lag = ref - match
	}
	v.State, v.MatchIndex, v.AppliedIndex, v.Lag = st.State, &match, &applied, &lag
	v.Term, v.CommitIndex = &term, &commit
	v.LastContactMs = st.LastContactMs
}

func (s *Service) handleStatus(w http.ResponseWriter, r *http.Request, _ params) error {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	st, err := s.store.Status(ctx)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, statusResponse{Status: st, DataBytes: s.store.FSM().Stats().Bytes, MaxDataBytes: s.quota()})
	return nil
}

// statusResponse is node.Status with the data size and the quota.
type statusResponse struct {
	node.Status
	DataBytes    int64  `json:"data_bytes"`     // key and value bytes in this replica
	MaxDataBytes uint64 `json:"max_data_bytes"` // MAX_DATA_BYTES (0: no quota)
}
