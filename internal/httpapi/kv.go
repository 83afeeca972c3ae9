package httpapi

import (
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
	p, err := s.readParams(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	key, err := p.required("key")
	if err == nil {
		err = s.checkKey(key)
	}
	value, ok := p.get("value")
	if err == nil && !ok {
		err = fmt.Errorf("%w: missing parameter \"value\"", ErrBadRequest)
	}
	if err == nil {
		err = s.checkValue(len(value))
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.set(w, r, key, value, p.body)
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	p, err := s.readParams(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	key, err := p.required("key")
	if err == nil {
		err = s.checkKey(key)
	}
	consistency, cerr := consistencyOf(p)
	if err == nil {
		err = cerr
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	e, ok := s.read(w, r, key, consistency, p.body)
	if !ok {
		return
	}
	setIndexHeader(w, HeaderRaftIndex, e.ModIndex)
	writeJSON(w, http.StatusOK, readResponse{
		Key: e.Key, Value: e.Value, Index: e.ModIndex, CreateIndex: e.CreateIndex, ModIndex: e.ModIndex,
	})
}

func (s *Service) handleRemove(w http.ResponseWriter, r *http.Request) {
	p, err := s.readParams(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	key, err := p.required("key")
	if err == nil {
		err = s.checkKey(key)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.remove(w, r, key, p.body)
}

// handleKV serves the REST form. The key is the rest of the path after
// /kv/, unescaped, so it may contain '/' (and "%2F" for a literal one).
func (s *Service) handleKV(w http.ResponseWriter, r *http.Request) {
	key, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/kv/"))
	if err != nil {
		err = fmt.Errorf("%w: key in path: %v", ErrBadRequest, err)
	} else {
		err = s.checkKey(key)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	switch r.Method {
	case http.MethodPut:
		body, err := readBody(w, r, int64(s.opts.MaxValueBytes))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.set(w, r, key, string(body), body)
	case http.MethodDelete:
		s.remove(w, r, key, nil)
	default:
		p, err := s.readParams(w, r)
		var consistency string
		if err == nil {
			consistency, err = consistencyOf(p)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		e, ok := s.read(w, r, key, consistency, nil)
		if !ok {
			return
		}
		setIndexHeader(w, HeaderRaftIndex, e.ModIndex)
		w.Header().Set("X-Raft-Create-Index", strconv.FormatUint(e.CreateIndex, 10))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(e.Value)))
		_, _ = w.Write([]byte(e.Value))
	}
}

func (s *Service) set(w http.ResponseWriter, r *http.Request, key, value string, body []byte) {
	res, ok := s.apply(w, r, &fsm.Command{Op: fsm.OpSet, Key: key, Value: value}, body)
	if !ok {
		return
	}
	setIndexHeader(w, HeaderRaftIndex, res.Index)
	resp := writeResponse{Key: key, Index: res.Index}
	if utf8.ValidString(value) {
		resp.Value = &value
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Service) remove(w http.ResponseWriter, r *http.Request, key string, body []byte) {
	res, ok := s.apply(w, r, &fsm.Command{Op: fsm.OpDelete, Key: key}, body)
	if !ok {
		return
	}
	setIndexHeader(w, HeaderRaftIndex, res.Index)
	writeJSON(w, http.StatusOK, writeResponse{Key: key, Index: res.Index})
}

// apply runs a validated write on the leader, forwarding it there if this
// node is not the leader. ok is false once a response has been written.
func (s *Service) apply(w http.ResponseWriter, r *http.Request, cmd *fsm.Command, body []byte) (*fsm.Result, bool) {
	if s.forwardOrServe(w, r, r.URL.RequestURI(), body) {
		return nil, false
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	res, err := s.node.Apply(ctx, cmd)
	if errors.Is(err, node.ErrNotLeader) {
		// Leadership moved before anything was proposed: forwarding is safe.
		s.reforward(w, r, r.URL.RequestURI(), body, maxHops)
		return nil, false
	}
	if err == nil {
		err = res.Err
	}
	if err != nil {
		s.writeError(w, r, err)
		return nil, false
	}
	return res, true
}

// read returns key's entry at the requested consistency, forwarding to the
// leader when this node cannot serve it. ok is false once a response has
// been written (an error, or the leader's forwarded answer).
func (s *Service) read(w http.ResponseWriter, r *http.Request, key, consistency string, body []byte) (fsm.Entry, bool) {
	switch consistency {
	case consistencyStale:
		setIndexHeader(w, HeaderAppliedIndex, s.node.FSM().AppliedIndex())
	case consistencyLeader:
		if s.forwardOrServe(w, r, r.URL.RequestURI(), body) {
			return fsm.Entry{}, false
		}
	default:
		if s.forwardOrServe(w, r, r.URL.RequestURI(), body) {
			return fsm.Entry{}, false
		}
		ctx, cancel := s.requestContext(r)
		err := s.node.ConsistentRead(ctx)
		cancel()
		if errors.Is(err, node.ErrNotLeader) {
			s.reforward(w, r, r.URL.RequestURI(), body, maxHops)
			return fsm.Entry{}, false
		}
		if err != nil {
			s.writeError(w, r, err)
			return fsm.Entry{}, false
		}
	}
	e, ok := s.node.FSM().Get(key)
	if !ok {
		s.writeError(w, r, fmt.Errorf("%w: %q", fsm.ErrKeyNotFound, key))
		return fsm.Entry{}, false
	}
	return e, true
}
