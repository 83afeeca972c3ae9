package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestErrorIs pins which answers match which sentinel: by status for the
// classes (any 404, 401, 403, 503, 504) and by code for the rest.
func TestErrorIs(t *testing.T) {
	all := []error{ErrNotFound, ErrCompareFailed, ErrQuotaExceeded, ErrUnavailable, ErrOutcomeUnknown,
		ErrUnauthorized, ErrForbidden, ErrLockHeld, ErrHistoryCompacted, ErrKeyReused}
	cases := []struct {
		status int
		code   string
		want   error // nil: none
	}{
		{404, "key_not_found", ErrNotFound},
		{404, "lease_not_found", ErrNotFound},
		{404, "node_not_found", ErrNotFound},
		{404, "not_found", ErrNotFound},
		{409, "cas_failed", ErrCompareFailed},
		{507, "quota_exceeded", ErrQuotaExceeded},
		{503, "no_leader", ErrUnavailable},
		{503, "shutting_down", ErrUnavailable},
		{503, "index_not_reached", ErrUnavailable},
		{503, "storage_unavailable", ErrUnavailable},
		{504, "outcome_unknown", ErrOutcomeUnknown},
		{504, "forward_timeout", ErrOutcomeUnknown},
		{504, "forward_unknown", ErrOutcomeUnknown},
		{0, "outcome_unknown", ErrOutcomeUnknown},
		{401, "unauthorized", ErrUnauthorized},
		{403, "forbidden", ErrForbidden},
		{403, "remote_admin_refused", ErrForbidden},
		{403, "cross_site_refused", ErrForbidden},
		{409, "lock_held", ErrLockHeld},
		{410, "history_compacted", ErrHistoryCompacted},
		{422, "idempotency_key_reused", ErrKeyReused},
		{400, "bad_request", nil},
		{400, "future_index", nil},
		{409, "too_many_leases", nil},
		{409, "last_voter", nil},
		{413, "too_large", nil},
		{500, "internal", nil},
		{502, "forward_failed", nil},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d_%s", tc.status, tc.code), func(t *testing.T) {
			var err error = &Error{Status: tc.status, Code: tc.code, Message: "m"}
			err = fmt.Errorf("wrapped: %w", err)
			for _, s := range all {
				if got := errors.Is(err, s); got != (s == tc.want) {
					t.Errorf("errors.Is(%d %s, %v) = %v", tc.status, tc.code, s, got)
				}
			}
		})
	}
}

// TestErrorFrom reads the server's error body, and something else's.
func TestErrorFrom(t *testing.T) {
	e := errorFrom(&http.Response{StatusCode: 409}, []byte(`{"error":"compare failed: the key's mod_index is 21","code":"cas_failed","index":21}`), "http://h:1")
	if e.Status != 409 || e.Code != "cas_failed" || e.Index != 21 || e.Endpoint != "http://h:1" || !strings.Contains(e.Error(), "mod_index is 21") {
		t.Fatalf("%+v", e)
	}
	e = errorFrom(&http.Response{StatusCode: 502}, []byte("<html>bad gateway</html>"), "http://h:1")
	if e.Status != 502 || e.Code != "" || e.Message != "<html>bad gateway</html>" {
		t.Fatalf("%+v", e)
	}
}

// TestOutcomeUnknown: a write that may have been sent and ran out of time
// matches ErrOutcomeUnknown and the context's error; the node's own 504
// is kept as it is.
func TestOutcomeUnknown(t *testing.T) {
	err := outcomeUnknown(errors.New("dial tcp: connection refused"), context.DeadlineExceeded)
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("%v", err)
	}
	n504 := &Error{Status: 504, Code: "forward_timeout"}
	if err := outcomeUnknown(n504, nil); err != n504 {
		t.Fatalf("%v", err)
	}
	if err := outcomeUnknown(&Error{Status: 503, Code: "no_leader"}, context.DeadlineExceeded); !errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("a 503 after a possibly sent attempt: %v", err)
	}
}
