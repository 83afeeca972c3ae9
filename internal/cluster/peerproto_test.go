package cluster

import (
	"fmt"
	"syscall"
	"testing"

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
