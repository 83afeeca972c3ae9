package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"

	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/watch"
)

// Errors raised by this package itself. Errors from the node, the FSM and
// the cluster pass through unchanged; errorTable is the one place that
// maps them all to HTTP.
var (
	ErrBadRequest       = errors.New("bad request")
	ErrTooLarge         = errors.New("too large")
	ErrMethodNotAllowed = errors.New("method not allowed")
	ErrRouteNotFound    = errors.New("no such endpoint")
	// ErrBadBackup: an uploaded backup failed verification; nothing changed.
	ErrBadBackup = errors.New("not a valid raftkv backup; nothing was changed")
	// ErrIndexNotReached: a read's minIndex was not applied in time.
	ErrIndexNotReached = errors.New("minIndex not applied on this node in time")
	// ErrUnauthorized: authentication is on and the request has no valid
	// bearer token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the token is valid but its role is below the route's.
	ErrForbidden = errors.New("forbidden")
	// ErrRemoteAdmin: authentication is off and an admin route was called
	// from a host that is neither this one nor a cluster member's.
	ErrRemoteAdmin = errors.New("admin endpoints accept only callers on this host or on a cluster member's host while authentication is off; " +
		"set AUTH_TOKENS_FILE to use tokens, or ALLOW_REMOTE_ADMIN=true to accept admin requests from anywhere")
	// ErrCrossSite: a state-changing request that a browser marks as sent
	// by another site's page (see crossSite).
	ErrCrossSite = errors.New("cross-site request refused: a web page from another origin may not change this store")
	// ErrNotMember: /ready on a node outside the cluster configuration.
	ErrNotMember = errors.New("not a member of the cluster")
	// ErrCatchingUp: /ready on a node that has not yet applied what the
	// leader has committed.
	ErrCatchingUp = errors.New("catching up with the leader")
)

// casConflict carries the key's current mod_index into the 409 body, so a
// client can retry its compare without another read.
type casConflict struct{ current uint64 }

func (e casConflict) Error() string {
	return fmt.Sprintf("compare failed: the key's mod_index is %d", e.current)
}

func (e casConflict) Unwrap() error { return fsm.ErrCASFailed }

// quotaError is a write refused by MAX_DATA_BYTES: its message names the
// quota and the data's current size, for users (it is a 507).
type quotaError struct {
	quota uint64
	size  int64
}

func (e quotaError) Error() string {
	return fmt.Sprintf("quota exceeded: the write would grow the data (keys and values) past MAX_DATA_BYTES=%d; it is %d bytes now. "+
		"Deletes and writes that do not grow the data still apply", e.quota, e.size)
}

func (e quotaError) Unwrap() error       { return fsm.ErrQuotaExceeded }
func (e quotaError) UserMessage() string { return e.Error() }

// errorTable maps every error a handler can meet to a status and a stable
// machine-readable code. The first entry that matches (errors.Is) wins.
var errorTable = []struct {
	err    error
	status int
	code   string
}{
	{ErrBadRequest, http.StatusBadRequest, "bad_request"},
	{cluster.ErrRejected, http.StatusBadRequest, "bad_request"},
	{cluster.ErrBadBatch, http.StatusBadRequest, "bad_request"},
	{ErrBadBackup, http.StatusBadRequest, "bad_backup"},
	{ErrFutureIndex, http.StatusBadRequest, "future_index"},
	{ErrHistoryCompacted, http.StatusGone, "history_compacted"},
	{ErrBadCursor, http.StatusBadRequest, "bad_cursor"},
	{ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{ErrMethodNotAllowed, http.StatusMethodNotAllowed, "method_not_allowed"},
	{ErrRouteNotFound, http.StatusNotFound, "not_found"},
	{ErrUnauthorized, http.StatusUnauthorized, "unauthorized"},
	{ErrForbidden, http.StatusForbidden, "forbidden"},
	{ErrRemoteAdmin, http.StatusForbidden, "remote_admin_refused"},
	{ErrCrossSite, http.StatusForbidden, "cross_site_refused"},
	{fsm.ErrKeyNotFound, http.StatusNotFound, "key_not_found"},
	{fsm.ErrLeaseNotFound, http.StatusNotFound, "lease_not_found"},
	{fsm.ErrTooManyLeases, http.StatusConflict, "too_many_leases"},
	{fsm.ErrNoTTL, http.StatusConflict, "no_ttl"},
	{ErrLockHeld, http.StatusConflict, "lock_held"},
	{node.ErrNodeNotFound, http.StatusNotFound, "node_not_found"},
	{node.ErrAddressInUse, http.StatusConflict, "address_in_use"},
	{node.ErrLastVoter, http.StatusConflict, "last_voter"},
	{node.ErrSuffrageConflict, http.StatusConflict, "suffrage_conflict"},
	{node.ErrNotVoter, http.StatusConflict, "not_voter"},
	{node.ErrNoTransferTarget, http.StatusConflict, "no_transfer_target"},
	{node.ErrAlreadyBootstrapped, http.StatusConflict, "already_bootstrapped"},
	{node.ErrJoinerUnreachable, http.StatusConflict, "joiner_unreachable"},
	{node.ErrJoinerHasState, http.StatusConflict, "joiner_has_state"},
	{node.ErrJoinerMismatch, http.StatusConflict, "joiner_mismatch"},
	{node.ErrOtherCluster, http.StatusConflict, "other_cluster"},
	{fsm.ErrCASFailed, http.StatusConflict, "cas_failed"},
	{fsm.ErrIdempotencyKeyReused, http.StatusUnprocessableEntity, "idempotency_key_reused"},
	{node.ErrRestoreInProgress, http.StatusConflict, "restore_in_progress"},
	// 507: MAX_DATA_BYTES; nothing was applied, and the write applies once
	// the data has shrunk.
	{fsm.ErrQuotaExceeded, http.StatusInsufficientStorage, "quota_exceeded"},
	// 503: definitely not applied; safe to retry anywhere.
	{node.ErrNotLeader, http.StatusServiceUnavailable, "not_leader"},
	{node.ErrNoLeader, http.StatusServiceUnavailable, "no_leader"},
	{cluster.ErrBootstrapPending, http.StatusServiceUnavailable, "bootstrap_pending"},
	{node.ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
	{node.ErrShutdown, http.StatusServiceUnavailable, "shutting_down"},
	{watch.ErrClosed, http.StatusServiceUnavailable, "shutting_down"},
	{watch.ErrTooManyWatchers, http.StatusServiceUnavailable, "too_many_watchers"},
	{node.ErrReadUnconfirmed, http.StatusServiceUnavailable, "read_unconfirmed"},
	{cluster.ErrLeaderUnreachable, http.StatusServiceUnavailable, "leader_unreachable"},
	{cluster.ErrHopLimit, http.StatusServiceUnavailable, "hop_limit"},
	{cluster.ErrPeerUnauthorized, http.StatusServiceUnavailable, "peer_unauthorized"},
	{ErrIndexNotReached, http.StatusServiceUnavailable, "index_not_reached"},
	{node.ErrTransferFailed, http.StatusServiceUnavailable, "transfer_failed"},
	{ErrNotMember, http.StatusServiceUnavailable, "not_member"},
	{node.ErrRemoved, http.StatusServiceUnavailable, "not_member"},
	{ErrCatchingUp, http.StatusServiceUnavailable, "catching_up"},
	{node.ErrVoteWithheld, http.StatusServiceUnavailable, "vote_withheld"},
	{node.ErrStorageUnavailable, http.StatusServiceUnavailable, "storage_unavailable"},
	// 502: a read's forward broke. 504: a write's outcome is unknown.
	{cluster.ErrForwardFailed, http.StatusBadGateway, "forward_failed"},
	{cluster.ErrForwardUnknown, http.StatusGatewayTimeout, "forward_unknown"},
	{cluster.ErrForwardTimeout, http.StatusGatewayTimeout, "forward_timeout"},
	{node.ErrOutcomeUnknown, http.StatusGatewayTimeout, "outcome_unknown"},
}

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error string  `json:"error"`
	Code  string  `json:"code"`
	Index *uint64 `json:"index,omitempty"` // current mod_index on cas_failed; oldest resumable index on history_compacted
}

// userError is an error whose whole message is written for users (with
// the numbers they need), although its class is a 5xx one whose wrapped
// detail is otherwise kept for the log (see publicMessage).
type userError struct {
	class error
	msg   string
}

func (e userError) Error() string       { return e.msg }
func (e userError) Unwrap() error       { return e.class }
func (e userError) UserMessage() string { return e.msg }

// userMessager is any error, from this package or another (the cluster's
// bootstrap-expect wait), whose message is written for users in full.
type userMessager interface{ UserMessage() string }

// userErrorf is class's message followed by a detail for users.
func userErrorf(class error, format string, args ...any) error {
	return userError{class: class, msg: class.Error() + ": " + fmt.Sprintf(format, args...)}
}

// publicMessage is the "error" text of an answer, and whether detail was
// kept back for the log. Messages are for users: a 4xx is about their own
// request and says what was wrong with it (which key, parameter, limit),
// as this package wrote it; a 5xx says what happened in the class's own
// words (its sentinel's message, the one user message per row of the
// error table), without the wrapped internals (dial errors, paths, raft's
// words), unless it is a userMessager. Either way it is one line.
func publicMessage(err error, status int) (string, bool) {
	var um userMessager
	switch {
	case errors.As(err, &um):
		return oneLine(um.UserMessage()), false
	case status < 500:
		return oneLine(err.Error()), false
	}
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			return e.err.Error(), err.Error() != e.err.Error()
		}
	}
	return "internal error", true
}

// oneLine replaces newlines and other control characters with spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// statusOf returns the HTTP status and code for err; unknown errors are 500.
func statusOf(err error) (int, string) {
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			return e.status, e.code
		}
	}
	return http.StatusInternalServerError, "internal"
}
