package server

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// StopOverrun is how long Stop waits past SHUTDOWN_TIMEOUT for a stop that
// hangs before it gives up and returns ErrStopOverran. The budget already
// keeps closeReserve for closing raft, whose connections to peers that do
// not answer are cut rather than waited for, so a stop that is still
// running here is stuck in raft itself (an apply or a snapshot write).
const StopOverrun = time.Second

// closeReserve is the end of the budget kept for closing raft and its
// stores: requests in flight are cut this long before the deadline. A
// quarter of the budget, at most a second; closing takes milliseconds.
func closeReserve(budget time.Duration) time.Duration { return min(budget/4, time.Second) }

// CloseGrace is how long Close lets requests in flight finish before it
// cuts their connections.
const CloseGrace = 500 * time.Millisecond

// ErrStopOverran: the graceful stop did not end within SHUTDOWN_TIMEOUT
// plus StopOverrun. It goes on in the background; the process should exit.
var ErrStopOverran = fmt.Errorf("graceful stop overran SHUTDOWN_TIMEOUT by %v", StopOverrun)

// Stop is the graceful stop, as on SIGTERM. SHUTDOWN_TIMEOUT, or ctx's
// deadline if that is sooner, bounds it as a whole:
//
//  1. retry-join stops;
//  2. a leader hands leadership to an up-to-date voter or, with leave
//     (LEAVE_ON_TERMINATE), the node leaves the configuration: at most
//     half of the budget, and skipped if the HTTP server has failed;
//  3. the HTTP server stops accepting and in-flight requests finish
//     within the rest of the budget less closeReserve, after which their
//     connections are cut;
//  4. the node's connections to its peers close, then raft and its stores
//     (raft's connections are cut, not waited for: node.Close).
//
// If all that has not ended StopOverrun after the budget, Stop logs it and
// returns ErrStopOverran, leaving the stop to finish in the background.
// Stop returns the HTTP server's failure, if it had one, with any error
// from closing raft. Only the first Stop or Close does anything; later
// calls return its result.
func (s *Server) Stop(ctx context.Context, leave bool) error {
	s.stopOnce.Do(func() {
		deadline := time.Now().Add(s.cfg.ShutdownTimeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- s.stop(ctx, true, leave) }()
		watchdog := time.NewTimer(time.Until(deadline) + StopOverrun)
		defer watchdog.Stop()
		select {
		case s.stopErr = <-done:
		case <-watchdog.C:
			s.log.WithField("overrun", StopOverrun).Error("graceful stop overran SHUTDOWN_TIMEOUT; abandoning it (raft did not close)")
			s.stopErr = ErrStopOverran
		}
	})
	return s.stopErr
}

// Close stops the node at once, as if the process died between requests:
// no hand-off and no leave, and requests in flight get CloseGrace before
// their connections are cut. The rest of the order is Stop's.
func (s *Server) Close() error {
	s.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), CloseGrace)
		defer cancel()
		s.stopErr = s.stop(ctx, false, false)
	})
	return s.stopErr
}

// stop runs the stop order; ctx's deadline is the budget.
func (s *Server) stop(ctx context.Context, graceful, leave bool) error {
	var reserve time.Duration
	if d, ok := ctx.Deadline(); ok {
		reserve = closeReserve(time.Until(d))
	}
	s.stopJoin()
	var err error
	select {
	case <-s.failed:
		err = fmt.Errorf("http server: %w", s.serveErr)
	default:
		if graceful {
			handOff := ctx
			if d, ok := ctx.Deadline(); ok {
				var cancel context.CancelFunc
				handOff, cancel = context.WithTimeout(ctx, time.Until(d)/2)
				defer cancel()
			}
			s.api.handOffOrLeave(handOff, leave)
		}
	}
	drain := ctx
	if d, ok := ctx.Deadline(); ok && graceful {
		var cancel context.CancelFunc
		drain, cancel = context.WithDeadline(ctx, d.Add(-reserve))
		defer cancel()
	}
	if s.api.drain(drain) && graceful {
		s.log.Warn("in-flight requests did not finish within SHUTDOWN_TIMEOUT (less the time kept for closing raft); closing their connections")
	}
	<-s.served
	<-s.joinDone
	s.api.close()
	if e := s.node.Close(); e != nil {
		return errors.Join(err, e)
	}
	s.log.Info("raft and its stores closed; stopped")
	return err
}
