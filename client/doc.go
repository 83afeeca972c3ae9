// Package client is the Go client of raftkv, a replicated key-value store
// over Raft. It speaks the server's HTTP API (docs/api.md) and adds what a
// program should not have to write itself: failover across nodes, safe
// retries of writes, gap-free watches, typed errors.
//
//	c, err := client.New([]string{"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"})
//	if err != nil { … }
//	defer c.Close()
//	index, err := c.Put(ctx, "config/mode", []byte("fast"))
//	kv, err := c.Get(ctx, "config/mode")               // linearizable by default
//	if errors.Is(err, client.ErrNotFound) { … }
//
// # Endpoints and failover
//
// Any node serves any request: a follower forwards writes and linearizable
// reads to the leader. A call starts at the next endpoint in round-robin
// order; an endpoint that fails to connect is skipped (for 250 ms, doubling
// with each failure up to 10 s) and tried again later.
//
// # Retries
//
// Every call is bounded by its context; without a deadline it makes at most
// DefaultMaxAttempts attempts (WithMaxAttempts), each bounded by the attempt
// timeout (WithAttemptTimeout, 10 s). Between attempts it waits a jittered
// backoff (WithRetryBackoff, 50 ms doubling to 1 s).
//
//   - Reads are retried, on another endpoint, after a connection error, a
//     503 (nothing was served: no leader, no quorum) and a 502.
//   - Writes (Put, Delete, DeletePrefix, Txn, Touch, Grant, KeepAliveOnce,
//     Revoke) carry an Idempotency-Key: a fresh random one per call (or
//     yours, WithIdempotencyKey), reused by all of the call's attempts. The
//     server applies a key's write at most once and answers a retry with the
//     first outcome, so a write is retried after a connection error, a 503
//     and a 504 (outcome unknown) and is still applied exactly once.
//   - Lock, Unlock, the membership calls and Restore are retried the same
//     way, but the server keeps no idempotency key for them: each one's
//     doc says what a retry finds when an earlier attempt was applied.
//   - A 4xx answer is never retried: it is returned as an *Error.
//
// When a write's time or attempts run out after an attempt may have reached
// a node, the error matches ErrOutcomeUnknown: the write may or may not have
// been applied. Retrying it with the same WithIdempotencyKey learns which,
// without applying it twice. When no attempt can have reached a node (every
// connection was refused before the request was written, or every answer
// was a 503), the error is not ErrOutcomeUnknown: nothing was applied.
//
// # Errors
//
// Every non-2xx answer is an *Error with the server's status, stable code
// and message; errors.Is matches it against the sentinels: ErrNotFound (any
// 404), ErrCompareFailed, ErrQuotaExceeded, ErrUnavailable (any 503),
// ErrOutcomeUnknown (504), ErrUnauthorized, ErrForbidden, ErrLockHeld,
// ErrHistoryCompacted, ErrKeyReused.
//
// # Watches
//
// Watch returns a channel of the changes under a prefix, in log order. It
// parses the server's Server-Sent Events and, when a stream breaks or its
// node stops, resumes on the next endpoint after the last position it
// received (Last-Event-ID): any node serves a resume from its copy of the
// change history, so the watch loses and repeats nothing. If the history no
// longer holds the changes it needs, it delivers EventReset and closes:
// List again and Watch from the listing's Index.
//
// # Leases and locks
//
// Grant a lease, put keys on it (WithLease), keep it alive (KeepAlive); the
// keys go when it expires or is revoked. Lock takes a named lock held by a
// lease and returns a fencing token; fence writes with a Txn compare on the
// lock key's create_index (CompareCreateIndex).
//
// The package imports nothing outside the standard library.
package client
