package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/node"
)

func TestStatusOf(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("%w: key is empty", ErrBadRequest), 400, "bad_request"},
		{fmt.Errorf("%w: value", ErrTooLarge), 413, "too_large"},
		{fmt.Errorf("%w: %q", fsm.ErrKeyNotFound, "k"), 404, "key_not_found"},
		{casConflict{current: 7}, 409, "cas_failed"},
		{fmt.Errorf("leave n9: %w", node.ErrNodeNotFound), 404, "node_not_found"},
		{fmt.Errorf("apply set: %w (raft: leadership lost)", node.ErrOutcomeUnknown), 504, "outcome_unknown"},
		{node.ErrNoLeader, 503, "no_leader"},
		{fmt.Errorf("%w: ctx", node.ErrReadUnconfirmed), 503, "read_unconfirmed"},
		{errors.Join(cluster.ErrLeaderUnreachable, errors.New("dial")), 503, "leader_unreachable"},
		{errors.Join(cluster.ErrForwardUnknown, errors.New("reset")), 504, "forward_unknown"},
		{errors.Join(cluster.ErrForwardFailed, errors.New("reset")), 502, "forward_failed"},
		{fmt.Errorf("join n2 as a learner: %w", node.ErrSuffrageConflict), 409, "suffrage_conflict"},
		{fmt.Errorf("transfer leadership to n3: %w", node.ErrNotVoter), 409, "not_voter"},
		{fmt.Errorf("transfer leadership: %w", node.ErrNoTransferTarget), 409, "no_transfer_target"},
		{fmt.Errorf("%w: leadership transfer timeout", node.ErrTransferFailed), 503, "transfer_failed"},
		{cluster.ErrRejected, 400, "bad_request"},
		{fmt.Errorf("%w: batch frame", cluster.ErrBadBatch), 400, "bad_request"},
		{fmt.Errorf("%w: truncated", ErrBadBackup), 400, "bad_backup"},
		{fmt.Errorf("apply set: commit: %w", &node.StorageError{Op: "append to the log", Err: syscall.ENOSPC, NotSaved: true}), 503, "storage_unavailable"},
		{fmt.Errorf("apply set: commit: %w", &node.StorageError{Op: "append to the log", Err: syscall.EIO}), 504, "outcome_unknown"},
		{errors.New("something else"), 500, "internal"},
	}
	for _, tt := range tests {
		status, code := statusOf(tt.err)
		if status != tt.status || code != tt.code {
			t.Errorf("statusOf(%v) = %d %s, want %d %s", tt.err, status, code, tt.status, tt.code)
		}
	}
}

// Every error this package or its dependencies define must have a row:
// an unmapped sentinel would surface as a 500.
func TestErrorTableCoversSentinels(t *testing.T) {
	sentinels := []error{
		ErrBadRequest, ErrTooLarge, ErrMethodNotAllowed, ErrRouteNotFound, ErrIndexNotReached, ErrBadBackup,
		ErrUnauthorized, ErrForbidden, ErrRemoteAdmin, ErrCrossSite,
		cluster.ErrLeaderUnreachable, cluster.ErrForwardFailed, cluster.ErrForwardUnknown, cluster.ErrForwardTimeout,
		cluster.ErrHopLimit, cluster.ErrPeerUnauthorized, cluster.ErrRejected, cluster.ErrBadBatch,
		fsm.ErrKeyNotFound, fsm.ErrCASFailed,
		node.ErrNotLeader, node.ErrNoLeader, node.ErrUnavailable, node.ErrShutdown, node.ErrOutcomeUnknown,
		node.ErrReadUnconfirmed, node.ErrNodeNotFound, node.ErrAddressInUse, node.ErrLastVoter,
		node.ErrSuffrageConflict, node.ErrNotVoter, node.ErrNoTransferTarget, node.ErrTransferFailed, node.ErrAlreadyBootstrapped,
		node.ErrRestoreInProgress, node.ErrStorageUnavailable,
		ErrNotMember, ErrCatchingUp,
	}
	for _, e := range sentinels {
		if status, _ := statusOf(e); status == http.StatusInternalServerError {
			t.Errorf("%v maps to 500", e)
		}
	}
}

// TestRouteWriteClass: the route table says which requests may change
// state, which decides the class of a forward that breaks after sending.
func TestRouteWriteClass(t *testing.T) {
	s, _, _ := newFakeService(t, Options{})
	tests := []struct {
		method, target string
		write          bool
	}{
		{"GET", "/set?key=a&value=1", true},
		{"POST", "/remove?key=a", true},
		{"GET", "/join?nodeId=n2&raftPort=9001", true},
		{"POST", "/leave?nodeId=n2", true},
		{"POST", "/promote?nodeId=n2", true},
		{"POST", "/transfer-leadership", true},
		{"POST", "/restore", true},
		{"PUT", "/kv/a", true},
		{"DELETE", "/kv/a", true},
		{"GET", "/kv/a", false},
		{"GET", "/get?key=a", false},
		{"POST", "/get", false},
		{"GET", "/nodes", false},
		{"GET", "/status", false},
		{"GET", "/health", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.target, nil)
		rt := s.match(r.Method, r.URL.Path)
		if rt == nil {
			t.Fatalf("%s %s: no route", tt.method, tt.target)
		}
		if rt.write != tt.write {
			t.Errorf("%s %s: write %v, want %v", tt.method, tt.target, rt.write, tt.write)
		}
	}
}

// TestStorageFaultAnswers: a write the volume refused answers 503
// storage_unavailable with Retry-After (never 500), and /ready names the
// fault before anything else.
func TestStorageFaultAnswers(t *testing.T) {
	s, st, c := newFakeService(t, Options{})
	c.err = fmt.Errorf("apply set: commit: %w", &node.StorageError{Op: "append to the log", Err: syscall.ENOSPC, NotSaved: true})
	rec := call(s, "PUT", "/kv/a", "v", nil)
	if rec.Code != http.StatusServiceUnavailable || errorOf(t, rec).Code != "storage_unavailable" || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("write on a full volume: %d %s (Retry-After %q), want 503 storage_unavailable with Retry-After",
			rec.Code, rec.Body, rec.Header().Get("Retry-After"))
	}
	if msg := errorOf(t, rec).Error; !strings.Contains(msg, "no space left on device") || strings.Contains(msg, "apply set") {
		t.Errorf("message %q: want the storage error in users' words, without internals", msg)
	}
	c.err = nil
	st.mu.Lock()
	st.storageFault = fmt.Errorf("%w: the last write failed", node.ErrStorageUnavailable)
	st.mu.Unlock()
	rec = call(s, "GET", "/ready", "", nil)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"code":"storage_unavailable"`) {
		t.Fatalf("/ready with a storage fault: %d %s, want 503 storage_unavailable", rec.Code, rec.Body)
	}
}

// TestReadyVoteWithheld: a node that repaired its volume at start and
// still withholds its vote is not ready, and /ready says why; once the hold
// ends it is ready again.
func TestReadyVoteWithheld(t *testing.T) {
	s, st, _ := newFakeService(t, Options{})
	st.mu.Lock()
	st.voteHeld = fmt.Errorf("%w (dropped log entries 7-9)", node.ErrVoteWithheld)
	st.mu.Unlock()
	rec := call(s, "GET", "/ready", "", nil)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"code":"vote_withheld"`) || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("/ready while the vote is held: %d %s, want 503 vote_withheld with Retry-After", rec.Code, rec.Body)
	}
	st.mu.Lock()
	st.voteHeld = nil
	st.mu.Unlock()
	if rec := call(s, "GET", "/ready", "", nil); rec.Code != http.StatusOK {
		t.Fatalf("/ready once the hold ended: %d %s, want 200", rec.Code, rec.Body)
	}
}

// TestEveryCodeDocumented: each code the error table can answer has a row
// in docs/api.md's status table, so a client can look up every code it
// gets.
func TestEveryCodeDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(doc), "### Status codes")
	if start < 0 {
		t.Fatal(`docs/api.md has no "### Status codes" section`)
	}
	table := string(doc[start:])
	codes := []string{"internal"} // statusOf's answer for an error not in the table
	for _, e := range errorTable {
		codes = append(codes, e.code)
	}
	for _, c := range codes {
		if !strings.Contains(table, "`"+c+"`") {
			t.Errorf("code %q is not in docs/api.md's status table", c)
		}
	}
}
