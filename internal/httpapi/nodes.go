package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/node"
)

// probeTimeout bounds each member probe of /nodes.
const probeTimeout = time.Second

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
}

// handleNodes lists the members with their replication progress, from the
// leader's view: a follower forwards the request unless ?stale is given,
// in which case it answers from its own configuration and log. The serving
// node probes each member's /status in parallel (one second each).
func (s *Service) handleNodes(w http.ResponseWriter, r *http.Request) {
	p, err := s.readParams(w, r)
	stale := false
	if err == nil {
		if v, ok := p.get("stale"); ok {
			if stale, err = parseFlag(v); err != nil {
				err = fmt.Errorf("%w: stale: %v", ErrBadRequest, err)
			}
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !stale && s.forwardOrServe(w, r, r.URL.RequestURI(), nil) {
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	st, err := s.node.Status(ctx)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]nodeView, len(st.Configuration))
	var wg sync.WaitGroup
	for i, m := range st.Configuration {
		out[i].Member = m
		if m.ID == s.node.ID() {
			out[i].Reachable = true
			out[i].fill(st, st.LastLogIndex)
			if since, ok := s.node.SinceLeaderContact(); ok {
				ms := float64(since.Microseconds()) / 1000
				out[i].LastContactMs = &ms
			}
			continue
		}
		if m.HTTPAddr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms, ok := s.probeStatus(ctx, m.HTTPAddr)
			if !ok {
				// /status may be slow while raft is busy; /health still
				// tells whether the process answers.
				out[i].Reachable = s.probe(ctx, m.HTTPAddr)
				return
			}
			out[i].Reachable = true
			out[i].fill(ms, st.LastLogIndex)
			if d, ok := parseLastContact(ms.LastContact); ok {
				v := float64(d.Microseconds()) / 1000
				out[i].LastContactMs = &v
			}
		}()
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, out)
}

// fill copies a member's reported progress; ref is the serving node's last
// log index, which the lag is measured against.
func (v *nodeView) fill(st node.Status, ref uint64) {
	match, applied := st.LastLogIndex, st.AppliedIndex
	lag := uint64(0)
	if ref > match {
		lag = ref - match
	}
	v.State, v.MatchIndex, v.AppliedIndex, v.Lag = st.State, &match, &applied, &lag
}

// probeStatus fetches a member's GET /status.
func (s *Service) probeStatus(ctx context.Context, httpAddr string) (node.Status, bool) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := s.peerRequest(ctx, http.MethodGet, s.nodeURL(httpAddr, "/status"), nil)
	if err != nil {
		return node.Status{}, false
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return node.Status{}, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return node.Status{}, false
	}
	var st node.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return node.Status{}, false
	}
	return st, true
}

// parseLastContact reads /status's last_contact, which is raft's: "0" on
// the leader, "never", or a Go duration.
func parseLastContact(v string) (time.Duration, bool) {
	if v == "" || v == "never" {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, false
	}
	return d, true
}

// parseFlag reads a boolean query flag; a bare "?stale" means true.
func parseFlag(v string) (bool, error) {
	if v == "" {
		return true, nil
	}
	return strconv.ParseBool(v)
}
