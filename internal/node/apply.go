package node

// Proposing commands: one at a time (Apply) or an encoded batch in one log
// write (ApplyEncoded), each raced against its request's deadline.

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
)

// Apply proposes cmd and waits, at most until ctx's deadline, for it to be
// committed and applied here. The caller must have validated cmd.
func (n *Node) Apply(ctx context.Context, cmd *fsm.Command) (*fsm.Result, error) {
	out := n.ApplyEncoded(ctx, [][]byte{cmd.Encode(make([]byte, 0, cmd.EncodedSize()))})
	if out[0].Err != nil {
		return nil, fmt.Errorf("apply %s: %w", cmd.Op, out[0].Err)
	}
	return out[0].Result, nil
}

// Applied is the outcome of one proposed command: a Result, or an error
// from this package (ErrNotLeader and ErrUnavailable: not proposed;
// ErrOutcomeUnknown: proposed, commit not confirmed).
type Applied struct {
	Result *fsm.Result
	Err    error
}

// ApplyEncoded proposes already-encoded commands in order and waits, at
// most until ctx's deadline, for all of them. Proposing them back to back
// lets raft put them in one log batch and one fsync.
func (n *Node) ApplyEncoded(ctx context.Context, cmds [][]byte) []Applied {
	out := make([]Applied, len(cmds))
	if n.raft.State() != raft.Leader {
		for i := range out {
			out[i].Err = ErrNotLeader
		}
		n.metrics.applyTotal.WithLabelValues(applyNotLeader).Add(float64(len(cmds)))
		return out
	}
	start := time.Now()
	defer func() {
		for _, a := range out {
			n.metrics.applyTotal.WithLabelValues(applyOutcome(a.Err)).Inc()
		}
	}()
	// raft's own timeout covers only enqueueing; the deadline below covers
	// the commit too.
	futures := make([]raft.ApplyFuture, len(cmds))
	for i, c := range cmds {
		futures[i] = n.raft.Apply(c, timeLeft(ctx))
	}
	// One goroutine waits for the futures in order; done counts those it
	// has seen, so after a timeout the earlier outcomes are still known.
	var done atomic.Int64
	errs := make([]error, len(futures))
	all := make(chan struct{})
	go func() {
		for i, f := range futures {
			errs[i] = f.Error()
			if errs[i] == nil {
				n.metrics.applyDuration.Observe(time.Since(start).Seconds())
			}
			done.Store(int64(i + 1))
		}
		close(all)
	}()
	select {
	case <-all:
	case <-ctx.Done():
	}
	known := int(done.Load())
	for i, f := range futures {
		switch {
		case i >= known:
			out[i].Err = mapRaftError("commit", ctx.Err())
		case errs[i] != nil:
			out[i].Err = mapRaftError("commit", errs[i])
		default:
			res, ok := f.Response().(*fsm.Result)
			if !ok {
				out[i].Err = fmt.Errorf("unexpected apply response %T", f.Response())
				continue
			}
			out[i].Result = res
		}
	}
	return out
}
