package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Lease is a lease: a TTL shared by the keys on it (docs/api.md, "TTLs,
// leases and locks").
type Lease struct {
	ID         uint64        // the log index that granted it
	TTL        time.Duration // time left (Grant, KeepAliveOnce: the full TTL now ahead)
	GrantedTTL time.Duration // the TTL it was granted with
	Keys       []string      // LeaseInfo: its keys, at most 1,000, in key order
	KeyCount   int           // LeaseInfo: how many keys it holds
	// Index: the log index of the grant or keepalive (Grant,
	// KeepAliveOnce), or of its last refresh (LeaseInfo).
	Index uint64
	OfKey bool // LeaseInfo: the lease of one TTL key (its id is the key's Lease)
}

// Grant grants a lease of ttl (1 s to 24 h, whole milliseconds; POST
// /leases). Errors: a 400 *Error for a TTL out of range, a 409 *Error
// too_many_leases.
func (c *Client) Grant(ctx context.Context, ttl time.Duration) (*Lease, error) {
	return c.leaseAnswer(ctx, &request{method: http.MethodPost, path: "/leases", query: url.Values{"ttl": {formatMillis(ttl)}}, write: true})
}

// leaseAnswer runs r, a grant or a keepalive, whose answer is the lease's
// {"id","ttl" (ms, the whole TTL now ahead),"index"}.
func (c *Client) leaseAnswer(ctx context.Context, r *request) (*Lease, error) {
	a, err := doJSON[struct {
		ID    uint64 `json:"id"`
		TTL   int64  `json:"ttl"`
		Index uint64 `json:"index"`
	}](ctx, c, r)
	if err != nil {
		return nil, err
	}
	d := time.Duration(a.TTL) * time.Millisecond
	return &Lease{ID: a.ID, TTL: d, GrantedTTL: d, Index: a.Index, Keys: []string{}}, nil
}

// KeepAliveOnce refreshes lease id once (POST /leases/{id}/keepalive):
// its full TTL is ahead again. Errors: ErrNotFound when it expired or
// was revoked.
func (c *Client) KeepAliveOnce(ctx context.Context, id uint64) (*Lease, error) {
	return c.leaseAnswer(ctx, &request{method: http.MethodPost, path: leasePath(id) + "/keepalive", write: true})
}

// leasePath is the path of lease id: /leases/{id}.
func leasePath(id uint64) string { return "/leases/" + strconv.FormatUint(id, 10) }

// KeepAlive keeps lease id alive: it refreshes it at once and then every
// third of its TTL, until ctx ends or the lease is gone. A refresh that
// fails for a passing reason (no leader, a node down) is tried again
// after a backoff. The channel gets exactly one value, the error that
// ended the loop (ErrNotFound: the lease expired or was revoked; a 4xx
// *Error; ctx's error when ctx ended), and is then closed.
func (c *Client) KeepAlive(ctx context.Context, id uint64) <-chan error {
	out := make(chan error, 1)
	go func() {
		defer close(out)
		out <- c.keepAlive(ctx, id)
	}()
	return out
}

// keepAliveMaxTries bounds the failed refreshes in a row (each one
// retries within itself); with one success the count starts again.
const keepAliveMaxTries = 1000

func (c *Client) keepAlive(ctx context.Context, id uint64) error {
	wait, failed := time.Duration(0), 0
	for {
		if !sleepCtx(ctx, wait) {
			return ctx.Err()
		}
		l, err := c.keepAliveRound(ctx, id, wait)
		var e *Error
		switch {
		case err == nil:
			failed = 0
			wait = max(l.TTL/3, 10*time.Millisecond)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &e) && e.Status >= 400 && e.Status < 500:
			return err
		default:
			failed++
			if failed >= keepAliveMaxTries {
				return err
			}
			wait = c.backoff(failed)
		}
	}
}

// keepAliveRound is one refresh, bounded so that a failed one leaves time
// for another before the lease runs out.
func (c *Client) keepAliveRound(ctx context.Context, id uint64, period time.Duration) (*Lease, error) {
	if period <= 0 {
		period = c.opts.attemptTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, max(period, time.Second))
	defer cancel()
	return c.KeepAliveOnce(rctx, id)
}

// sleepCtx waits d (0: not at all) or until ctx ends; false if it ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// LeaseInfo reads lease id (GET /leases/{id}, linearizable): time left,
// granted TTL, keys. Errors: ErrNotFound.
func (c *Client) LeaseInfo(ctx context.Context, id uint64) (*Lease, error) {
	a, err := doJSON[struct {
		ID         uint64   `json:"id"`
		TTL        int64    `json:"ttl"`
		GrantedTTL int64    `json:"granted_ttl"`
		Keys       []string `json:"keys"`
		KeyCount   int      `json:"key_count"`
		OfKey      bool     `json:"of_key"`
		Refreshed  uint64   `json:"refreshed_index"`
	}](ctx, c, &request{method: http.MethodGet, path: leasePath(id)})
	if err != nil {
		return nil, err
	}
	if a.Keys == nil {
		a.Keys = []string{}
	}
	return &Lease{ID: a.ID, TTL: time.Duration(a.TTL) * time.Millisecond, GrantedTTL: time.Duration(a.GrantedTTL) * time.Millisecond,
		Keys: a.Keys, KeyCount: a.KeyCount, Index: a.Refreshed, OfKey: a.OfKey}, nil
}

// Revoke ends lease id now (DELETE /leases/{id}) and returns how many
// keys went with it. Errors: ErrNotFound (expired, or revoked before
// this call; a retry of this call's own revoke answers its first
// outcome).
func (c *Client) Revoke(ctx context.Context, id uint64) (int64, error) {
	a, err := doJSON[struct {
		Deleted int64 `json:"deleted"`
	}](ctx, c, &request{method: http.MethodDelete, path: leasePath(id), write: true})
	return a.Deleted, err
}

// Lock takes the lock name for lease leaseID (POST /locks/{name}) and
// returns its fencing token: the lock key's create_index, which only
// grows from holder to holder. With wait > 0 (at most the server's
// REQUEST_TIMEOUT) it waits that long for a held lock to be freed. The
// lock is released by Unlock, or when the lease expires or is revoked:
// keep the lease alive (KeepAlive) while holding it. Fence writes with
// CompareCreateIndex("_locks/"+name, "=", token) in a Txn. Errors:
// ErrLockHeld (Error.Index is the holder's token), ErrNotFound (no such
// lease). A lock already held by leaseID answers its token (the server
// does that, not ErrLockHeld): so a retry after an attempt whose answer
// was lost once it took the lock is not mistaken for another holder.
func (c *Client) Lock(ctx context.Context, name string, leaseID uint64, wait time.Duration) (uint64, error) {
	q := url.Values{"lease": {strconv.FormatUint(leaseID, 10)}}
	if wait > 0 {
		q.Set("wait", formatMillis(wait))
	}
	r := &request{method: http.MethodPost, path: "/locks/" + escapePath(name), query: q, write: true, extra: wait}
	a, err := doJSON[struct {
		Token uint64 `json:"token"`
	}](ctx, c, r)
	return a.Token, err
}

// Unlock releases the lock name held with token (DELETE /locks/{name}).
// Errors: ErrCompareFailed when token does not hold it (released, expired
// or taken by another holder; Error.Index 0: nobody holds it, which is
// also what a retry finds after an attempt that released it).
func (c *Client) Unlock(ctx context.Context, name string, token uint64) error {
	if token == 0 {
		return fmt.Errorf("raftkv client: Unlock needs the token Lock returned")
	}
	_, err := c.do(ctx, &request{method: http.MethodDelete, path: "/locks/" + escapePath(name),
		query: url.Values{"token": {strconv.FormatUint(token, 10)}}, write: true})
	return err
}
