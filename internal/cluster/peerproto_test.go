package cluster

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/node"
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
