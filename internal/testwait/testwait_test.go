package testwait

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB whose Fatalf only records the message.
type recorder struct {
	testing.TB
	fatal string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
}

func TestForReturnsOnceCondHolds(t *testing.T) {
	calls := 0
	r := &recorder{TB: t}
	For(r, 5*time.Second, "three calls", func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if r.fatal != "" || calls != 3 {
		t.Fatalf("calls %d, fatal %q; want 3 calls and no failure", calls, r.fatal)
	}
}

func TestForFailsNamingWhatAndWhy(t *testing.T) {
	calls := 0
	r := &recorder{TB: t}
	start := time.Now()
	For(r, 100*time.Millisecond, "the impossible", func() error {
		calls++
		return fmt.Errorf("still %d", calls)
	})
	took := time.Since(start)
	want := fmt.Sprintf("timed out after 100ms waiting for the impossible: still %d", calls)
	if r.fatal != want {
		t.Fatalf("fatal %q, want %q", r.fatal, want)
	}
	if took < 100*time.Millisecond || took > 2*time.Second || calls < 2 {
		t.Fatalf("gave up after %v and %d calls", took, calls)
	}
}

func TestForChecksAtLeastOnce(t *testing.T) {
	r := &recorder{TB: t}
	For(r, 0, "an instant condition", func() error { return nil })
	if r.fatal != "" {
		t.Fatal(r.fatal)
	}
	For(r, 0, "a false condition", func() error { return errors.New("no") })
	if !strings.HasSuffix(r.fatal, "a false condition: no") {
		t.Fatalf("fatal %q", r.fatal)
	}
}
