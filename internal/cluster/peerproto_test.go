package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/node"
	"github.com/sirupsen/logrus"
)

// TestOutcomeOfStorageFault: a write the leader's volume refused travels
// back to the follower as "not proposed" (503 there), not as an unknown
// outcome (504); an ambiguous disk error stays unknown.
func TestOutcomeOfStorageFault(t *testing.T) {
	refused := node.Applied{Err: fmt.Errorf("commit: %w", &node.StorageError{Op: "append to the log", Err: syscall.ENOSPC, NotSaved: true})}
	if got := outcomeOf(refused).code; got != outcomeNotProposed {
		t.Errorf("full volume: outcome %v, want outcomeNotProposed", got)
	}
	ambiguous := node.Applied{Err: fmt.Errorf("commit: %w", &node.StorageError{Op: "append to the log", Err: syscall.EIO})}
	if got := outcomeOf(ambiguous).code; got != outcomeUnknown {
		t.Errorf("I/O error: outcome %v, want outcomeUnknown", got)
	}
}

// TestQuotaOutcome: a write the leader's quota refused reaches the
// follower as fsm.ErrQuotaExceeded with the quota and the data size, not
// as a rejected (400) command.
func TestQuotaOutcome(t *testing.T) {
	a := node.Applied{Result: &fsm.Result{Index: 9, Err: fsm.ErrQuotaExceeded, Quota: 1 << 31, DataBytes: 1<<31 - 3}}
	out, err := decodeOutcomes(encodeOutcomes([]applyOutcome{outcomeOf(a)}), 1)
	if err != nil {
		t.Fatal(err)
	}
	res, err := resultOf(out[0])
	if err != nil || !errors.Is(res.Err, fsm.ErrQuotaExceeded) || res.Quota != 1<<31 || res.DataBytes != 1<<31-3 || res.Index != 0 {
		t.Fatalf("resultOf = %+v, %v", res, err)
	}
}

// TestPostClasses: what a node makes of its leader's answer on the peer
// protocol. A 409 other_cluster (the leader's CheckClusterID refused the
// call unread) is a definite refusal, not a write whose outcome is
// unknown, so a client is told at once instead of retrying to its deadline.
func TestPostClasses(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   error
	}{
		{"other cluster", http.StatusConflict, `{"error":"the node belongs to another cluster","code":"other_cluster"}`, node.ErrOtherCluster},
		{"unavailable", http.StatusServiceUnavailable, `{"code":"no_leader"}`, node.ErrUnavailable},
		{"credential", http.StatusForbidden, `{}`, ErrPeerUnauthorized},
		{"another 409", http.StatusConflict, `{"code":"cas_failed"}`, ErrForwardUnknown},
		{"not JSON", http.StatusConflict, `conflict`, ErrForwardUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer leader.Close()
			c := &Cluster{client: newClient(nil, nil, 2*time.Second), metrics: newForwardMetrics(), log: logrus.NewEntry(logrus.New())}
			defer c.Close()
			_, err := c.post(context.Background(), kindApply, strings.TrimPrefix(leader.URL, "http://"), PathApply, []byte("x"), true)
			if !errors.Is(err, tt.want) {
				t.Fatalf("post = %v, want %v", err, tt.want)
			}
			if tt.want != ErrForwardUnknown && errors.Is(err, ErrForwardUnknown) {
				t.Fatalf("post = %v: also outcome unknown", err)
			}
		})
	}
}
