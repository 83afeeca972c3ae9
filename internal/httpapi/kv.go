package httpapi

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/node"
)

// writeResponse answers /set, PUT /kv/{key}, /remove and DELETE /kv/{key}.
// A set echoes its value (see jsonValue); a delete has none.
type writeResponse struct {
	Key string `json:"key"`
	jsonValue
	Index uint64 `json:"index"`
}

// readResponse answers /get. Index is the key's modification index.
type readResponse struct {
	Key string `json:"key"`
	jsonValue
	Index       uint64 `json:"index"`
	CreateIndex uint64 `json:"create_index"`
	ModIndex    uint64 `json:"mod_index"`
	// TTL is the key's time left in milliseconds and Lease its lease, for
	// a key with a ttl or on a lease; absent otherwise.
	TTL   int64  `json:"ttl,omitempty"`
	Lease uint64 `json:"lease,omitempty"`
}

// jsonValue is a value in a JSON answer, never altered: as "value" when it
// is valid UTF-8 (JSON strings cannot carry other bytes; encoding/json
// would replace them with U+FFFD), else as "value_base64", standard
// base64 of the bytes. Exactly one of the two is set.
type jsonValue struct {
	Value       *string `json:"value,omitempty"`
	ValueBase64 *string `json:"value_base64,omitempty"`
}

func valueOf(v string) jsonValue {
	if utf8.ValidString(v) {
		return jsonValue{Value: &v}
	}
	b := base64.StdEncoding.EncodeToString([]byte(v))
	return jsonValue{ValueBase64: &b}
}

func (s *Service) handleSet(w http.ResponseWriter, r *http.Request, p params) error {
	return s.write(w, r, p, fsm.OpSet)
}

func (s *Service) handleRemove(w http.ResponseWriter, r *http.Request, p params) error {
	return s.write(w, r, p, fsm.OpDelete)
}

// handleKVWrite serves PUT and DELETE /kv/{key}, and
// DELETE /kv/{prefix}?recurse (deletePrefix); a PUT may give the key a
// ttl or put it on a lease.
func (s *Service) handleKVWrite(w http.ResponseWriter, r *http.Request, p params) error {
	_, ttl := p.get("ttl")
	_, lease := p.get("lease")
	if (ttl || lease) && r.Method != http.MethodPut {
		return fmt.Errorf("%w: ttl and lease are for PUT /kv/{key}, not %s", ErrBadRequest, r.Method)
	}
	recurse, err := p.flag("recurse", false)
	switch {
	case err != nil:
		return err
	case recurse && r.Method == http.MethodDelete:
		return s.deletePrefix(w, r, p)
	case recurse:
		return fmt.Errorf("%w: recurse is for GET and DELETE, not %s", ErrBadRequest, r.Method)
	}
	if r.Method == http.MethodDelete {
		return s.write(w, r, p, fsm.OpDelete)
	}
	return s.write(w, r, p, fsm.OpSet)
}

// write parses, applies and answers a key write.
func (s *Service) write(w http.ResponseWriter, r *http.Request, p params, op fsm.Op) error {
	cmd, err := s.parseWrite(w, r, p, op)
	if err != nil {
		return err
	}
	if op == fsm.OpSet && r.Method == http.MethodPut {
		if err := keyLeaseParams(p, cmd); err != nil {
			return err
		}
	}
	res, err := s.apply(w, r, cmd)
	if err != nil {
		return err
	}
	resp := writeResponse{Key: cmd.Key, Index: res.Index}
	if op == fsm.OpSet {
		resp.jsonValue = valueOf(cmd.Value)
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// apply runs a validated write on the leader and sets the headers every
// write shares; the command's own failure (not found, CAS, a reused
// idempotency key) is its error.
func (s *Service) apply(w http.ResponseWriter, r *http.Request, cmd *fsm.Command) (*fsm.Result, error) {
	res, servedBy, err := s.cluster.Propose(r.Context(), cmd)
	if servedBy != "" {
		w.Header().Set(HeaderServedBy, servedBy)
		noteForward(w, servedBy)
	}
	if err != nil {
		return nil, err
	}
	if res.Replayed {
		w.Header().Set(HeaderReplayed, "true")
	}
	if err := resultError(res, cmd); err != nil {
		return nil, err
	}
	setIndexHeader(w, HeaderRaftIndex, res.Index)
	return res, nil
}

// resultError is the error a command's own failure answers with (nil
// when it applied): a failed compare, a reused idempotency key, a refused
// quota, or the key's absence.
func resultError(res *fsm.Result, cmd *fsm.Command) error {
	switch {
	case res.Err == nil:
		return nil
	case errors.Is(res.Err, fsm.ErrCASFailed):
		return casConflict{current: res.Current}
	case errors.Is(res.Err, fsm.ErrIdempotencyKeyReused):
		return fmt.Errorf("%w: %q was first used with another operation, key, value or cas; nothing was applied (use a fresh key for a new write)", res.Err, cmd.RequestID)
	case errors.Is(res.Err, fsm.ErrQuotaExceeded):
		return quotaError{quota: res.Quota, size: res.DataBytes}
	case cmd.Key == "" && cmd.Lease != 0:
		return fmt.Errorf("%w: %d", res.Err, cmd.Lease)
	case errors.Is(res.Err, fsm.ErrLeaseNotFound):
		return fmt.Errorf("%w: %d (set on %q); nothing was written", res.Err, cmd.Lease, cmd.Key)
	}
	return fmt.Errorf("%w: %q", res.Err, cmd.Key)
}

// quota is the MAX_DATA_BYTES this node stamps on the writes it proposes
// as leader (0: none).
func (s *Service) quota() uint64 {
	if s.opts.MaxDataBytes <= 0 {
		return 0
	}
	return uint64(s.opts.MaxDataBytes)
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request, p params) error {
	q, err := s.parseRead(r, p)
	if err != nil {
		return err
	}
	return s.read(w, r, q, func(e fsm.Entry) {
		setIndexHeader(w, HeaderRaftIndex, e.ModIndex)
		ttl, lease := s.keyTTL(w, e.Key)
		writeJSON(w, http.StatusOK, readResponse{
			Key: e.Key, jsonValue: valueOf(e.Value), Index: e.ModIndex, CreateIndex: e.CreateIndex, ModIndex: e.ModIndex,
			TTL: ttl, Lease: lease,
		})
	})
}

// handleKVGet answers GET /kv/{key} with the value's bytes; with
// ?index=N it is a blocking query (blocking.go) that answers once the key
// changed after N, or its wait passed.
func (s *Service) handleKVGet(w http.ResponseWriter, r *http.Request, p params) error {
	if recurse, err := p.flag("recurse", false); err != nil {
		return err
	} else if recurse {
		return s.handleRange(w, r, p)
	}
	q, err := s.parseRead(r, p)
	if err != nil {
		return err
	}
	b, err := parseBlocking(p)
	if err != nil {
		return err
	}
	if b.block && q.consistency == consistencyLeader {
		// The leader would wait again after this node's wait.
		return fmt.Errorf("%w: a blocking query (index) reads at linearizable or stale consistency, not leader", ErrBadRequest)
	}
	if err := s.block(w, r, b, fsm.Filter{Prefix: q.key, Exact: true}); err != nil {
		return err
	}
	return s.read(w, r, q, func(e fsm.Entry) {
		setIndexHeader(w, HeaderRaftIndex, e.ModIndex)
		setIndexHeader(w, HeaderCreateIndex, e.CreateIndex)
		s.keyTTL(w, e.Key)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(e.Value)))
		_, _ = w.Write([]byte(e.Value))
	})
}

// read serves q at its consistency level and answers the entry with
// answer. A leader read on a follower is answered by the leader.
func (s *Service) read(w http.ResponseWriter, r *http.Request, q readReq, answer func(fsm.Entry)) error {
	local := func() error {
		e, err := s.readLocal(w, r, q)
		if err != nil {
			return err
		}
		answer(e)
		return nil
	}
	switch q.consistency {
	case consistencyLeader:
		return s.onLeader(w, r, cluster.Forward{Body: bytes.NewReader(q.body), Size: int64(len(q.body))}, local)
	case consistencyLinearizable:
		if err := s.linearizable(r); err != nil {
			return err
		}
	}
	return local()
}

// readLocal reads q's key from this node's replica, once it has applied
// q.minIndex.
func (s *Service) readLocal(w http.ResponseWriter, r *http.Request, q readReq) (fsm.Entry, error) {
	if err := s.waitMinIndex(r, q); err != nil {
		return fsm.Entry{}, err
	}
	s.staleHeaders(w, q)
	f := s.store.FSM()
	// Read before the key, so a blocking query that passes it back
	// misses no creation after this read.
	applied := f.AppliedIndex()
	e, ok := f.Get(q.key)
	if !ok {
		// The index to pass back as ?index= to wait for the key.
		setIndexHeader(w, HeaderRaftIndex, applied)
		return fsm.Entry{}, fmt.Errorf("%w: %q", fsm.ErrKeyNotFound, q.key)
	}
	return e, nil
}

// waitMinIndex returns once this node's replica has applied q.minIndex.
func (s *Service) waitMinIndex(r *http.Request, q readReq) error {
	if q.minIndex == 0 {
		return nil
	}
	f := s.store.FSM()
	ctx, cancel := s.requestContext(r)
	defer cancel()
	if err := f.WaitApplied(ctx, q.minIndex); err != nil {
		return userErrorf(ErrIndexNotReached, "applied index %d < minIndex %d", f.AppliedIndex(), q.minIndex)
	}
	return nil
}

// staleHeaders tell a stale read how fresh this replica is.
func (s *Service) staleHeaders(w http.ResponseWriter, q readReq) {
	if q.consistency != consistencyStale {
		return
	}
	setIndexHeader(w, HeaderAppliedIndex, s.store.FSM().AppliedIndex())
	if since, ok := s.store.SinceLeaderContact(); ok {
		setIndexHeader(w, HeaderLastContact, uint64(since.Milliseconds()))
	}
}

// linearizable returns once this node's replica may serve a linearizable
// read: it has applied a read index the leader confirmed after the read
// began.
func (s *Service) linearizable(r *http.Request) error {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	index, err := s.cluster.ReadIndex(ctx)
	if err != nil {
		return err
	}
	if err := s.store.FSM().WaitApplied(ctx, index); err != nil {
		return fmt.Errorf("%w: %v", node.ErrReadUnconfirmed, err)
	}
	return nil
}
