package node

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// readIndex shares leadership confirmations between concurrent linearizable
// reads (Raft thesis §6.4, as etcd's ReadIndex loop). At most one
// VerifyLeader is in flight; reads arriving meanwhile gather into the next
// round, which captures the commit index only after they arrived. Each read
// then waits for the FSM to apply that index.
type readIndex struct {
	raft *raft.Raft

	mu       sync.Mutex
	next     *readRound // gathering readers; nil when none wait
	inflight bool
}

type readRound struct {
	done  chan struct{}
	index uint64
	err   error
}

// confirm returns a commit index that is at least as new as any write
// acknowledged before confirm was called, once this node has proved it is
// still the leader after capturing it.
func (ri *readIndex) confirm(ctx context.Context) (uint64, error) {
	ri.mu.Lock()
	if ri.next == nil {
		ri.next = &readRound{done: make(chan struct{})}
	}
	round := ri.next
	if !ri.inflight {
		ri.inflight = true
		ri.next = nil
		go ri.run(round)
	}
	ri.mu.Unlock()

	select {
	case <-round.done:
		return round.index, round.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (ri *readIndex) run(round *readRound) {
	for round != nil {
		round.index = ri.raft.CommitIndex()
		round.err = ri.raft.VerifyLeader().Error()
		close(round.done)

		ri.mu.Lock()
		round, ri.next = ri.next, nil
		if round == nil {
			ri.inflight = false
		}
		ri.mu.Unlock()
	}
}

// ReadIndex returns, on the leader, a commit index that covers every write
// acknowledged before the call: once a replica has applied it, a read of
// that replica is linearizable. Followers use it through the leader.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	if err := n.waitReady(ctx); err != nil {
		return 0, err
	}
	index, err := n.reads.confirm(ctx)
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, ErrNotLeader
		}
		return 0, fmt.Errorf("%w: %v", ErrReadUnconfirmed, err)
	}
	return index, nil
}
