package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/internal/node"
)

// maxHops is how often a request may be forwarded. One hop reaches the
// leader; a non-leader that receives a forwarded request answers 503 rather
// than passing it on, so requests cannot circle while leadership moves.
const maxHops = 1

// forwardSlack lets the leader's own deadline expire first, so a slow
// write comes back as the leader's 504 rather than a local guess.
const forwardSlack = time.Second

// forwardOrServe forwards the request unless this node leads. It reports
// whether a response has been written; if not, the caller serves locally.
func (s *Service) forwardOrServe(w http.ResponseWriter, r *http.Request, uri string, body []byte) bool {
	return !s.node.IsLeader() && s.forward(w, r, uri, body, maxHops)
}

// reforward handles node.ErrNotLeader from a local attempt, which proposed
// nothing: the request goes to the leader, or fails as 503 if leadership
// keeps coming back here.
func (s *Service) reforward(w http.ResponseWriter, r *http.Request, uri string, body []byte, limit int) {
	if !s.forward(w, r, uri, body, limit) {
		s.writeError(w, r, node.ErrNotLeader)
	}
}

// forwardedHeaders are copied from the leader's answer.
var forwardedHeaders = []string{
	"Content-Type", "Retry-After", "Allow", HeaderRaftIndex, HeaderAppliedIndex, HeaderServedBy, "X-Raft-Create-Index",
	HeaderLastContact, HeaderReplayed,
}

// sendToLeader sends req and classes a failure by whether the request was
// written: before, nothing reached the leader (503); after, a write's
// outcome is unknown (504) and a read's answer is merely lost (502).
func (s *Service) sendToLeader(req *http.Request, write bool) (*http.Response, error) {
	var sent atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { sent.Store(true) },
	}))
	resp, err := s.client.Do(req)
	switch {
	case err == nil:
		return resp, nil
	case !sent.Load():
		return nil, errors.Join(ErrLeaderUnreachable, err)
	case errors.Is(err, context.DeadlineExceeded):
		return nil, errors.Join(ErrForwardTimeout, err)
	case write:
		return nil, errors.Join(ErrForwardUnknown, err)
	}
	return nil, errors.Join(ErrForwardFailed, err)
}

// lostAnswer is the error class of a forward that broke after sending.
func lostAnswer(write bool) error {
	if write {
		return ErrForwardUnknown
	}
	return ErrForwardFailed
}

// isWrite tells the requests that may change state from reads, for the
// error class of a broken forward.
func isWrite(r *http.Request) bool {
	switch r.URL.Path {
	case "/get", "/nodes", "/status", "/health":
		return false
	}
	return r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/kv/")
}

func hopsOf(r *http.Request) int {
	n, _ := strconv.Atoi(r.Header.Get(HeaderForwarded))
	return n
}

// forward sends the request (uri, with body) to the leader and copies its
// answer back; it reports false, having written nothing, when the leader
// turns out to be this node (elected while waiting), so the caller serves
// the request itself. Whether the request was written decides the error
// class: a failure before sending means nothing was proposed (503); after
// sending, a write's outcome is unknown (502/504).
func (s *Service) forward(w http.ResponseWriter, r *http.Request, uri string, body []byte, limit int) bool {
	hops := hopsOf(r)
	leader, err := s.leaderElsewhere(r, limit)
	if errors.Is(err, errSelfLeader) {
		return false
	}
	if err != nil {
		s.writeError(w, r, err)
		return true
	}

	ctx, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout+forwardSlack)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, s.nodeURL(leader.HTTPAddr, uri), bytes.NewReader(body))
	if err != nil {
		s.writeError(w, r, err)
		return true
	}
	// The client's Authorization goes along unchanged: the leader checks it
	// again, so a forward never grants more than the client's own token.
	for _, h := range []string{"Content-Type", HeaderIdempotencyKey, "Authorization"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(HeaderForwarded, strconv.Itoa(hops+1))
	req.Header.Set(HeaderRequestID, requestIDOf(w, r)) // one id in both nodes' logs
	noteForward(w, leader.ID+"@"+leader.HTTPAddr)

	start := time.Now()
	resp, err := s.sendToLeader(req, isWrite(r))
	s.recordForward(forwardProxy, start, err)
	if err != nil {
		s.writeError(w, r, err)
		return true
	}
	defer resp.Body.Close()
	for _, h := range forwardedHeaders {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	if resp.ContentLength >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		s.log.WithError(err).Debug("copy forwarded response")
	}
	return true
}

// onLeader serves a leader-only admin request (leave, promote, transfer):
// a follower forwards it; on the leader op runs under the request's
// deadline and its result is the 200 answer. If leadership moved while op
// ran, the request is sent on to the new leader, with at most hopLimit hops.
func (s *Service) onLeader(w http.ResponseWriter, r *http.Request, body []byte, hopLimit int, op func(context.Context) (any, error)) {
	if s.forwardOrServe(w, r, r.URL.RequestURI(), body) {
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	res, err := op(ctx)
	if errors.Is(err, node.ErrNotLeader) {
		s.reforward(w, r, r.URL.RequestURI(), body, hopLimit)
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// errSelfLeader: leaderElsewhere found this node leading, so the caller
// serves the request itself.
var errSelfLeader = errors.New("this node is the leader")

// leaderElsewhere waits (within the request timeout) for a leader to send r
// to, refusing a request that has already made limit hops; errSelfLeader
// when the leader is this node.
func (s *Service) leaderElsewhere(r *http.Request, limit int) (node.Leader, error) {
	if hopsOf(r) >= limit {
		return node.Leader{}, ErrHopLimit
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	leader, err := s.node.WaitLeader(ctx)
	if err != nil {
		return node.Leader{}, err
	}
	if leader.ID == s.node.ID() {
		return node.Leader{}, errSelfLeader
	}
	return leader, nil
}
