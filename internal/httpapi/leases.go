package httpapi

// TTL keys, leases and locks (docs/api.md, "TTLs, leases and locks";
// fsm/DESIGN.md, "TTLs and leases"). Every time in an answer is in
// milliseconds: the "ttl" fields and the X-Raft-TTL header.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
)

// Headers of a key read: the key's time left, in milliseconds, as the
// serving node counts it (never less than the truth), and its lease.
const (
	HeaderTTL   = "X-Raft-TTL"
	HeaderLease = "X-Raft-Lease"
)

// LockPrefix is where POST /locks/{name} keeps its keys: the lock "a" is
// the key "_locks/a", readable and comparable like any key.
const LockPrefix = "_locks/"

// maxLeaseKeysShown bounds the keys GET /leases/{id} lists (key_count
// says how many there are).
const maxLeaseKeysShown = 1000

// ErrLockHeld: POST /locks/{name} found the lock held (and did not wait,
// or waited in vain).
var ErrLockHeld = errors.New("lock held")

// lockHeld carries the holder's token into the 409 body's "index".
type lockHeld struct {
	name  string
	token uint64
}

func (e lockHeld) Error() string {
	return fmt.Sprintf("lock %q is held (token %d)", e.name, e.token)
}
func (e lockHeld) Unwrap() error { return ErrLockHeld }

// lockNotHeld is a release with a token that no longer holds the lock: the
// 409 cas_failed of the delete it is, worded in tokens rather than the
// lock key's mod_index (for a lock key they are the same number).
type lockNotHeld struct {
	name    string
	token   uint64
	current casConflict
}

func (e lockNotHeld) Error() string {
	if e.current.current == 0 {
		return fmt.Sprintf("compare failed: lock %q is not held (token %d no longer holds it); nothing released", e.name, e.token)
	}
	return fmt.Sprintf("compare failed: lock %q is held with token %d, not %d; nothing released", e.name, e.current.current, e.token)
}
func (e lockNotHeld) Unwrap() error { return e.current }

// ttlParam reads a TTL: a Go duration ("30s", "1m30s", "1500ms") or whole
// seconds ("30"), from fsm.MinTTL to fsm.MaxTTL in whole milliseconds.
func (p params) ttlParam(name string) (ms uint64, ok bool, err error) {
	v, ok := p.get(name)
	if !ok {
		return 0, false, nil
	}
	d, err := parseDuration(v)
	if err != nil || !fsm.ValidTTL(d) {
		return 0, true, fmt.Errorf("%w: %s=%q is not a duration from %v to %v in whole milliseconds (such as 30s)", ErrBadRequest, name, v, fsm.MinTTL, fsm.MaxTTL)
	}
	return uint64(d.Milliseconds()), true, nil
}

func parseDuration(v string) (time.Duration, error) {
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(v)
}

// leaseID reads a lease id parameter: a positive integer.
func (p params) leaseID(name string) (uint64, bool, error) {
	id, ok, err := p.uint(name)
	if err == nil && ok && id == 0 {
		err = fmt.Errorf("%w: %s=0 is not a lease id", ErrBadRequest, name)
	}
	return id, ok, err
}

// keyLeaseParams reads PUT /kv/{key}'s ttl or lease (not both).
func keyLeaseParams(p params, cmd *fsm.Command) error {
	ttl, hasTTL, err := p.ttlParam("ttl")
	if err != nil {
		return err
	}
	lease, hasLease, err := p.leaseID("lease")
	if err != nil {
		return err
	}
	if hasTTL && hasLease {
		return fmt.Errorf("%w: give ttl or lease, not both (a key on a lease lives as long as its lease)", ErrBadRequest)
	}
	cmd.TTLMillis, cmd.Lease = ttl, lease
	return nil
}

// keyTTL sets the TTL and lease headers of a key read and returns them
// (0, 0 for a key without either).
func (s *Service) keyTTL(w http.ResponseWriter, key string) (ttl int64, lease uint64) {
	id, ok := s.store.FSM().KeyLease(key)
	if !ok {
		return 0, 0
	}
	left := s.leaseRemaining(id)
	w.Header().Set(HeaderTTL, strconv.FormatInt(left.Milliseconds(), 10))
	setIndexHeader(w, HeaderLease, id)
	return left.Milliseconds(), id
}

// leaseRemaining is lease id's time left as this node counts it; before
// its tracker has seen the lease, what the log last recorded.
func (s *Service) leaseRemaining(id uint64) time.Duration {
	if left, ok := s.store.Leases().Remaining(id); ok {
		return left
	}
	l, _ := s.store.FSM().Lease(id, 0)
	return l.Remaining
}

// handleKVTouch serves POST /kv/{key}?touch: the key's TTL (or its
// lease's) starts again, its value unchanged.
func (s *Service) handleKVTouch(w http.ResponseWriter, r *http.Request, p params) error {
	key, err := s.keyed(r, p)
	if err != nil {
		return err
	}
	touch, err := p.flag("touch", false)
	if err != nil {
		return err
	}
	if !touch {
		return fmt.Errorf("%w: POST /kv/{key} takes ?touch (PUT writes a value)", ErrBadRequest)
	}
	cmd := &fsm.Command{Op: fsm.OpTouch, Key: key}
	if cmd.RequestID, err = idempotencyKey(r, p); err != nil {
		return err
	}
	res, err := s.apply(w, r, cmd)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Key   string `json:"key"`
		TTL   uint64 `json:"ttl"`
		Index uint64 `json:"index"`
	}{key, res.Current, res.Index})
	return nil
}

// leaseAnswer is the answer of a grant and a keepalive.
type leaseAnswer struct {
	ID    uint64 `json:"id"`
	TTL   uint64 `json:"ttl"` // milliseconds, the full TTL now ahead
	Index uint64 `json:"index"`
}

// handleLeaseGrant serves POST /leases?ttl=10s.
func (s *Service) handleLeaseGrant(w http.ResponseWriter, r *http.Request, p params) error {
	ttl, ok, err := p.ttlParam("ttl")
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: missing parameter \"ttl\" (such as ttl=10s)", ErrBadRequest)
	}
	cmd := &fsm.Command{Op: fsm.OpLeaseGrant, TTLMillis: ttl}
	if cmd.RequestID, err = idempotencyKey(r, p); err != nil {
		return err
	}
	res, err := s.apply(w, r, cmd)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, leaseAnswer{ID: res.Current, TTL: ttl, Index: res.Index})
	return nil
}

// leasePath splits /leases/{id}[/keepalive].
func leasePath(path string) (id uint64, keepalive bool, err error) {
	rest := strings.TrimPrefix(path, "/leases/")
	rest, keepalive = strings.CutSuffix(rest, "/keepalive")
	id, perr := strconv.ParseUint(rest, 10, 64)
	if perr != nil || id == 0 {
		return 0, false, fmt.Errorf("%w: %q is not /leases/{id} or /leases/{id}/keepalive with a lease id", ErrBadRequest, path)
	}
	return id, keepalive, nil
}

// handleLease serves GET /leases/{id}, POST /leases/{id}/keepalive and
// DELETE /leases/{id}.
func (s *Service) handleLease(w http.ResponseWriter, r *http.Request, p params) error {
	id, keepalive, err := leasePath(r.URL.Path)
	if err != nil {
		return err
	}
	switch {
	case r.Method == http.MethodPost && !keepalive, r.Method != http.MethodPost && keepalive:
		return fmt.Errorf("%w: POST /leases/{id}/keepalive refreshes a lease; GET and DELETE take /leases/{id}", ErrBadRequest)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		return s.leaseInfo(w, r, p, id)
	}
	op := fsm.OpLeaseKeepAlive
	if r.Method == http.MethodDelete {
		op = fsm.OpLeaseRevoke
	}
	cmd := &fsm.Command{Op: op, Lease: id}
	if cmd.RequestID, err = idempotencyKey(r, p); err != nil {
		return err
	}
	res, err := s.apply(w, r, cmd)
	if err != nil {
		return err
	}
	if op == fsm.OpLeaseKeepAlive {
		writeJSON(w, http.StatusOK, leaseAnswer{ID: id, TTL: res.Current, Index: res.Index})
		return nil
	}
	writeJSON(w, http.StatusOK, struct {
		ID      uint64 `json:"id"`
		Deleted uint64 `json:"deleted"` // keys deleted with it
		Index   uint64 `json:"index"`
	}{id, res.Current, res.Index})
	return nil
}

// leaseInfo answers GET /leases/{id} at the read's consistency level.
func (s *Service) leaseInfo(w http.ResponseWriter, r *http.Request, p params, id uint64) error {
	consistency, _ := p.get("consistency")
	switch consistency {
	case "", consistencyLinearizable:
		if err := s.linearizable(r); err != nil {
			return err
		}
	case consistencyStale:
		setIndexHeader(w, HeaderAppliedIndex, s.store.FSM().AppliedIndex())
	default:
		return fmt.Errorf("%w: consistency %q is not linearizable or stale", ErrBadRequest, consistency)
	}
	l, ok := s.store.FSM().Lease(id, maxLeaseKeysShown)
	if !ok {
		return fmt.Errorf("%w: %d", fsm.ErrLeaseNotFound, id)
	}
	keys := l.Keys
	if keys == nil {
		keys = []string{}
	}
	writeJSON(w, http.StatusOK, struct {
		ID         uint64   `json:"id"`
		TTL        int64    `json:"ttl"`         // ms left, as this node counts it
		GrantedTTL int64    `json:"granted_ttl"` // ms, as granted
		Keys       []string `json:"keys"`        // at most 1,000, in key order
		KeyCount   int      `json:"key_count"`
		OfKey      bool     `json:"of_key,omitempty"` // the lease of one TTL key
		Refreshed  uint64   `json:"refreshed_index"`
	}{id, s.leaseRemaining(id).Milliseconds(), l.TTL.Milliseconds(), keys, l.KeyCount, l.OfKey, l.Refreshed})
	return nil
}

// lockKey is the key of /locks/{name}.
func (s *Service) lockKey(r *http.Request) (name, key string, err error) {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), "/locks/")
	if name, err = url.PathUnescape(rest); err != nil || name == "" {
		return "", "", fmt.Errorf("%w: %q is not /locks/{name}", ErrBadRequest, r.URL.Path)
	}
	key = LockPrefix + name
	return name, key, s.checkKey(key)
}

// handleLock serves POST /locks/{name}?lease=ID[&wait=10s] (take; the
// token is the lock key's create index) and DELETE /locks/{name}?token=N
// (release, only by the holder of token N).
func (s *Service) handleLock(w http.ResponseWriter, r *http.Request, p params) error {
	name, key, err := s.lockKey(r)
	if err != nil {
		return err
	}
	if r.Method == http.MethodDelete {
		token, ok, err := p.uint("token")
		if err != nil {
			return err
		}
		if !ok || token == 0 {
			return fmt.Errorf("%w: DELETE /locks/{name} needs ?token=N, the token POST answered", ErrBadRequest)
		}
		res, err := s.apply(w, r, &fsm.Command{Op: fsm.OpDelete, Key: key, HasCAS: true, CAS: token})
		if cc := (casConflict{}); errors.As(err, &cc) {
			return lockNotHeld{name: name, token: token, current: cc}
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, writeResponse{Key: key, Index: res.Index})
		return nil
	}
	lease, ok, err := p.leaseID("lease")
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: POST /locks/{name} needs ?lease=ID, the lease that holds it", ErrBadRequest)
	}
	var wait time.Duration
	if v, ok := p.get("wait"); ok {
		if wait, err = parseDuration(v); err != nil || wait < 0 || wait > s.opts.RequestTimeout {
			return fmt.Errorf("%w: wait=%q is not a duration from 0 to the request timeout (%v)", ErrBadRequest, v, s.opts.RequestTimeout)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	cmd := &fsm.Command{Op: fsm.OpSet, Key: key, Value: strconv.FormatUint(lease, 10), HasCAS: true, CAS: 0, Lease: lease, Quota: s.quota()}
	// Each round proposes once and, while the lock is held, waits for
	// this node to apply another entry; rounds end with the wait.
	taken := func(token uint64) error {
		writeJSON(w, http.StatusOK, struct {
			Key   string `json:"key"`
			Token uint64 `json:"token"`
			Lease uint64 `json:"lease"`
		}{key, token, lease})
		return nil
	}
	for {
		res, err := s.apply(w, r, cmd)
		var cc casConflict
		if !errors.As(err, &cc) {
			if err != nil {
				return err
			}
			return taken(res.Index)
		}
		// Wait until this node has applied the holder's create (a lagging
		// follower would otherwise see the lock free and propose again at
		// once), then until the lock key is gone. The leader has applied
		// it already, so the first wait is bounded by the request timeout,
		// not by the lock's wait (often 0).
		f := s.store.FSM()
		rctx, rcancel := s.requestContext(r)
		err = f.WaitApplied(rctx, cc.current)
		rcancel()
		if err != nil {
			return userErrorf(ErrIndexNotReached, "the lock is held (token %d) and this node has not applied that yet (applied index %d)", cc.current, f.AppliedIndex())
		}
		// The lease asking holds the lock already (a retry whose answer
		// was lost, or the holder asking again): its token, as Consul
		// answers an acquire by the session that holds the lock.
		if e, held := f.Get(key); held && e.CreateIndex == cc.current {
			if id, ok := f.KeyLease(key); ok && id == lease {
				return taken(cc.current)
			}
		}
		for {
			if _, held := f.Get(key); !held {
				break
			}
			if f.WaitApplied(ctx, f.AppliedIndex()+1) != nil {
				return lockHeld{name: name, token: cc.current}
			}
		}
	}
}

// keyTTLFunc reports a listed key's time left (ms) and lease, if it has
// either.
type keyTTLFunc func(key string) (ms int64, lease uint64, ok bool)

// listedTTL is keyTTLFunc for listings: as of the answer, as this node
// counts it (a later page may list a view of an earlier index, whose keys
// this state may no longer lease).
func (s *Service) listedTTL(key string) (int64, uint64, bool) {
	id, ok := s.store.FSM().KeyLease(key)
	if !ok {
		return 0, 0, false
	}
	return s.leaseRemaining(id).Milliseconds(), id, true
}
