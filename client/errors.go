package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Sentinels matched with errors.Is against the *Error of an answer (by
// its status and code, see Error.Is) and the errors the client makes
// itself.
var (
	// ErrNotFound: any 404: key_not_found, lease_not_found,
	// node_not_found, not_found (no such endpoint).
	ErrNotFound = errors.New("not found")
	// ErrCompareFailed: 409 cas_failed; Error.Index is the key's
	// current mod_index (0: absent). Nothing changed.
	ErrCompareFailed = errors.New("compare failed")
	// ErrQuotaExceeded: 507 quota_exceeded (MAX_DATA_BYTES). Nothing
	// applied.
	ErrQuotaExceeded = errors.New("quota exceeded")
	// ErrUnavailable: any 503 (no_leader, unavailable, shutting_down,
	// index_not_reached, …): nothing was applied. Returned once the
	// call's retries ran out.
	ErrUnavailable = errors.New("unavailable")
	// ErrOutcomeUnknown: a write may or may not have been applied: a 504
	// (outcome_unknown, forward_timeout, forward_unknown) that retries
	// did not resolve, or the call's deadline or attempts ran out after
	// an attempt was possibly sent. Retry with the same idempotency key
	// (WithIdempotencyKey) to learn the outcome without applying twice.
	ErrOutcomeUnknown = errors.New("outcome unknown")
	// ErrUnauthorized: 401: authentication is on and the token is
	// missing or invalid.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: any 403: the token's role is too low (forbidden),
	// or remote_admin_refused, cross_site_refused.
	ErrForbidden = errors.New("forbidden")
	// ErrLockHeld: 409 lock_held; Error.Index is the holder's token.
	ErrLockHeld = errors.New("lock held")
	// ErrHistoryCompacted: 410 history_compacted, or a watch's reset
	// event; Error.Index is the oldest index a watch resumes from.
	ErrHistoryCompacted = errors.New("history compacted")
	// ErrKeyReused: 422 idempotency_key_reused: the idempotency key was
	// first used for a different write. Nothing applied.
	ErrKeyReused = errors.New("idempotency key reused")
)

// Error is a non-2xx answer of a node (or, with Code "outcome_unknown"
// and Status 0, a write whose attempts ended without an answer). Match
// it with errors.Is against the sentinels, or read Code, the server's
// stable error code (docs/api.md, "Status codes").
type Error struct {
	Status   int    // HTTP status; 0 when no node answered
	Code     string // the server's "code": key_not_found, cas_failed, no_leader, …
	Message  string // the server's "error", one line for people
	Index    uint64 // "index" of the body: current mod_index (cas_failed), holder's token (lock_held), oldest index (history_compacted)
	Endpoint string // the base URL that answered

	cause error // what ended the attempts, for outcome_unknown
}

// Error is "raftkv: <message> (<status> <code> from <endpoint>)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("raftkv: ")
	b.WriteString(e.Message)
	switch {
	case e.Status != 0:
		fmt.Fprintf(&b, " (%d %s", e.Status, e.Code)
	default:
		fmt.Fprintf(&b, " (%s", e.Code)
	}
	if e.Endpoint != "" {
		b.WriteString(" from ")
		b.WriteString(e.Endpoint)
	}
	b.WriteString(")")
	return b.String()
}

// Unwrap is what ended the attempts of an outcome_unknown error (the
// context's error, a connection error), else nil.
func (e *Error) Unwrap() error { return e.cause }

// Is matches the sentinels by status and code: see each sentinel.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrCompareFailed:
		return e.Code == "cas_failed"
	case ErrQuotaExceeded:
		return e.Code == "quota_exceeded" || e.Status == http.StatusInsufficientStorage
	case ErrUnavailable:
		return e.Status == http.StatusServiceUnavailable
	case ErrOutcomeUnknown:
		return e.Status == http.StatusGatewayTimeout || e.Code == "outcome_unknown"
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrLockHeld:
		return e.Code == "lock_held"
	case ErrHistoryCompacted:
		return e.Code == "history_compacted"
	case ErrKeyReused:
		return e.Code == "idempotency_key_reused"
	}
	return false
}

// errorFrom reads an error answer: the server's {"error","code","index"},
// or, from something else (a proxy), the status and the start of the
// body.
func errorFrom(resp *http.Response, body []byte, endpoint string) *Error {
	e := &Error{Status: resp.StatusCode, Endpoint: endpoint}
	var eb struct {
		Error string `json:"error"`
		Code  string `json:"code"`
		Index uint64 `json:"index"`
	}
	if json.Unmarshal(body, &eb) == nil && (eb.Error != "" || eb.Code != "") {
		e.Message, e.Code, e.Index = eb.Error, eb.Code, eb.Index
		return e
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	e.Message = msg
	return e
}

// outcomeUnknown is the error of a write that may have been sent and
// has no answer: last is the last attempt's error, ctxErr the context's.
func outcomeUnknown(last, ctxErr error) error {
	e := &Error{Code: "outcome_unknown"}
	var se *Error
	if errors.As(last, &se) {
		if se.Status == http.StatusGatewayTimeout {
			// The node's own 504: keep it as it is.
			return se
		}
		// Not a cause: a last 503 says nothing was applied by that
		// attempt only, so this must not match ErrUnavailable.
		e.Endpoint = se.Endpoint
	} else {
		e.cause = last
	}
	switch {
	case ctxErr != nil:
		e.Message = fmt.Sprintf("the write may have been applied: the call ended (%v) after an attempt was sent; last: %v", ctxErr, last)
		if e.cause != nil {
			e.cause = errors.Join(ctxErr, e.cause)
		} else {
			e.cause = ctxErr
		}
	default:
		e.Message = fmt.Sprintf("the write may have been applied: attempts ran out after one was sent; last: %v", last)
	}
	return e
}
