// Package testwait holds the one polling loop of raftkv's tests: wait for a
// condition, with a deadline, and fail naming what was awaited and why it
// did not hold.
//
// It is its own package, depending only on testing and time, so that the
// in-process helpers (internal/testcluster, test/integration) and the
// process-level harness (internal/proc, test/e2e, test/fault, test/deploy)
// share it without either pulling in the other's code: process control and
// HTTP clients on one side, a Raft node per member on the other.
package testwait

import (
	"errors"
	"testing"
	"time"
)

// Interval is how often For checks its condition.
const Interval = 20 * time.Millisecond

// For calls cond every Interval until it returns nil, and returns how long
// that took. cond's error says why the condition does not hold yet; if it
// still does not when timeout has passed, For fails the test with
// "timed out after <timeout> waiting for <what>: <cond's last error>".
//
// cond runs at least once, and in the caller's goroutine, so it may itself
// end the test (t.Fatal) on a failure that waiting cannot cure.
func For(t testing.TB, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	err := errors.New("never checked")
	// Bounded twice: by the deadline, and by the number of Intervals in
	// timeout (plus one), should cond return instantly and the clock stall.
	for i := 0; i <= int(timeout/Interval); i++ {
		if err = cond(); err == nil {
			return time.Since(start)
		}
		if time.Since(start) >= timeout {
			break
		}
		time.Sleep(Interval)
	}
	t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
	return 0
}
