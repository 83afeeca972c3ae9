package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/node"
)

// writeResponse answers /set, PUT /kv/{key}, /remove and DELETE /kv/{key}.
type writeResponse struct {
	Key   string  `json:"key"`
	Value *string `json:"value,omitempty"`
	Index uint64  `json:"index"`
}

// readResponse answers /get. Index is the key's modification index.
type readResponse struct {
	Key         string `json:"key"`
	Value       string `json:"value"`
	Index       uint64 `json:"index"`
	CreateIndex uint64 `json:"create_index"`
	ModIndex    uint64 `json:"mod_index"`
}

func (s *Service) handleSet(w http.ResponseWriter, r *http.Request) {
	var (
		key, value string
		opts       writeOptions
	)
	p, err := s.readParams(w, r)
	if err == nil {
		key, err = s.keyParam(p)
	}
	if err == nil {
		value, err = s.valueParam(p)
	}
	if err == nil {
		opts, err = writeOptionsOf(r, p)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.set(w, r, key, value, opts)
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	var (
		key  string
		opts readOptions
	)
	p, err := s.readParams(w, r)
	if err == nil {
		key, err = s.keyParam(p)
	}
	if err == nil {
		opts, err = readOptionsOf(p)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	e, ok := s.read(w, r, key, opts, p.body)
	if !ok {
		return
	}
	setIndexHeader(w, HeaderRaftIndex, e.ModIndex)
	writeJSON(w, http.StatusOK, readResponse{
		Key: e.Key, Value: e.Value, Index: e.ModIndex, CreateIndex: e.CreateIndex, ModIndex: e.ModIndex,
	})
}

func (s *Service) handleRemove(w http.ResponseWriter, r *http.Request) {
	var (
		key  string
		opts writeOptions
	)
	p, err := s.readParams(w, r)
	if err == nil {
		key, err = s.keyParam(p)
	}
	if err == nil {
		opts, err = writeOptionsOf(r, p)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.remove(w, r, key, opts)
}

// handleKV serves the REST form. The key is the rest of the path after
// /kv/, unescaped, so it may contain '/' (and "%2F" for a literal one).
// Options (cas, consistency, …) come from the query string.
func (s *Service) handleKV(w http.ResponseWriter, r *http.Request) {
	key, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/kv/"))
	if err != nil {
		err = fmt.Errorf("%w: key in path: %v", ErrBadRequest, err)
	} else {
		err = s.checkKey(key)
	}
	var p params
	if err == nil {
		p, err = s.readParams(w, r)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if r.Method == http.MethodGet {
		s.getRaw(w, r, key, p)
		return
	}
	opts, err := writeOptionsOf(r, p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if r.Method == http.MethodDelete {
		s.remove(w, r, key, opts)
		return
	}
	body, err := readBody(w, r, int64(s.opts.MaxValueBytes))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.set(w, r, key, string(body), opts)
}

// getRaw answers GET /kv/{key} with the value's bytes.
func (s *Service) getRaw(w http.ResponseWriter, r *http.Request, key string, p params) {
	opts, err := readOptionsOf(p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	e, ok := s.read(w, r, key, opts, nil)
	if !ok {
		return
	}
	setIndexHeader(w, HeaderRaftIndex, e.ModIndex)
	setIndexHeader(w, "X-Raft-Create-Index", e.CreateIndex)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(e.Value)))
	_, _ = w.Write([]byte(e.Value))
}

func (s *Service) set(w http.ResponseWriter, r *http.Request, key, value string, o writeOptions) {
	cmd := &fsm.Command{Op: fsm.OpSet, Key: key, Value: value, HasCAS: o.hasCAS, CAS: o.cas, RequestID: o.requestID}
	res, ok := s.apply(w, r, cmd)
	if !ok {
		return
	}
	resp := writeResponse{Key: key, Index: res.Index}
	if utf8.ValidString(value) {
		resp.Value = &value
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Service) remove(w http.ResponseWriter, r *http.Request, key string, o writeOptions) {
	cmd := &fsm.Command{Op: fsm.OpDelete, Key: key, HasCAS: o.hasCAS, CAS: o.cas, RequestID: o.requestID}
	res, ok := s.apply(w, r, cmd)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, writeResponse{Key: key, Index: res.Index})
}

// apply runs a validated write on the leader (through the peer protocol
// when this node is a follower) and handles the outcomes every write
// shares. ok is false once a response has been written.
func (s *Service) apply(w http.ResponseWriter, r *http.Request, cmd *fsm.Command) (*fsm.Result, bool) {
	res, servedBy, err := s.propose(r, cmd)
	if servedBy != "" {
		w.Header().Set(HeaderServedBy, servedBy)
		noteForward(w, servedBy)
	}
	if err != nil {
		s.writeError(w, r, err)
		return nil, false
	}
	if res.Replayed {
		w.Header().Set(HeaderReplayed, "true")
	}
	switch {
	case errors.Is(res.Err, fsm.ErrCASFailed):
		s.writeError(w, r, casConflict{current: res.Current})
		return nil, false
	case res.Err != nil:
		s.writeError(w, r, fmt.Errorf("%w: %q", res.Err, cmd.Key))
		return nil, false
	}
	setIndexHeader(w, HeaderRaftIndex, res.Index)
	return res, true
}

// propose applies cmd here if this node leads, else hands it to the
// leader; servedBy names the leader that applied it. Leadership can move
// while a request waits, so it tries twice; ErrNotLeader is only ever met
// before anything was proposed.
func (s *Service) propose(r *http.Request, cmd *fsm.Command) (*fsm.Result, string, error) {
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout+forwardSlack)
	defer cancel()
	for range 2 {
		if s.node.IsLeader() {
			res, err := s.node.Apply(ctx, cmd)
			if !errors.Is(err, node.ErrNotLeader) {
				return res, "", err
			}
		}
		res, leaderID, local, err := s.proposeViaLeader(ctx, cmd)
		if !local {
			return res, leaderID, err
		}
	}
	return nil, "", node.ErrNotLeader
}

// linearizable returns once this node's replica may serve a linearizable
// read: it has applied a read index the leader confirmed after the read
// began (the leader's own, when this node leads).
func (s *Service) linearizable(r *http.Request) error {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	for range 2 {
		var index uint64
		var err error
		if s.node.IsLeader() {
			index, err = s.node.ReadIndex(ctx)
		} else {
			index, err = s.readIndexViaLeader(ctx)
		}
		if errors.Is(err, node.ErrNotLeader) {
			continue // leadership moved before confirming; ask again
		}
		if err != nil {
			return err
		}
		if err := s.node.FSM().WaitApplied(ctx, index); err != nil {
			return fmt.Errorf("%w: %v", node.ErrReadUnconfirmed, err)
		}
		return nil
	}
	return node.ErrNotLeader
}

// read returns key's entry at the requested consistency, forwarding to the
// leader when this node cannot serve it. ok is false once a response has
// been written (an error, or the leader's forwarded answer).
func (s *Service) read(w http.ResponseWriter, r *http.Request, key string, o readOptions, body []byte) (fsm.Entry, bool) {
	switch o.consistency {
	case consistencyStale:
	case consistencyLeader:
		if s.forwardOrServe(w, r, r.URL.RequestURI(), body) {
			return fsm.Entry{}, false
		}
	default:
		if err := s.linearizable(r); err != nil {
			s.writeError(w, r, err)
			return fsm.Entry{}, false
		}
	}
	if o.minIndex > 0 {
		ctx, cancel := s.requestContext(r)
		err := s.node.FSM().WaitApplied(ctx, o.minIndex)
		cancel()
		if err != nil {
			s.writeError(w, r, fmt.Errorf("%w: %v", ErrIndexNotReached, err))
			return fsm.Entry{}, false
		}
	}
	if o.consistency == consistencyStale {
		setIndexHeader(w, HeaderAppliedIndex, s.node.FSM().AppliedIndex())
		if since, ok := s.node.SinceLeaderContact(); ok {
			setIndexHeader(w, HeaderLastContact, uint64(since.Milliseconds()))
		}
	}
	e, ok := s.node.FSM().Get(key)
	if !ok {
		s.writeError(w, r, fmt.Errorf("%w: %q", fsm.ErrKeyNotFound, key))
		return fsm.Entry{}, false
	}
	return e, true
}
