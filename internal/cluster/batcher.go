package cluster

import (
	"context"
	"sync"
)

// batcher coalesces concurrent calls into few round trips: at most
// maxInflight batches are in flight, and calls that arrive meanwhile are
// sent together in the next one. A call is always queued before the batch
// that carries it is sent, which is what a read index needs: the leader
// captures its commit index after every read in the batch began.
type batcher[In, Out any] struct {
	send        func(ctx context.Context, in []In) ([]Out, error)
	maxBatch    int
	maxInflight int
	// weight and maxWeight, when set, also cap a batch's total size (a
	// single call heavier than maxWeight still goes, alone).
	weight    func(In) int
	maxWeight int

	mu       sync.Mutex
	queue    []*batchCall[In, Out]
	inflight int
}

type batchCall[In, Out any] struct {
	in   In
	out  Out
	err  error
	done chan struct{}
}

// call queues in and waits for its batch's answer, or for ctx. A call whose
// ctx ends may still be sent: for a write that means "outcome unknown".
func (b *batcher[In, Out]) call(ctx context.Context, in In) (Out, error) {
	c := &batchCall[In, Out]{in: in, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	if b.inflight < b.maxInflight {
		b.inflight++
		go b.run()
	}
	b.mu.Unlock()
	select {
	case <-c.done:
		return c.out, c.err
	case <-ctx.Done():
		var zero Out
		return zero, ctx.Err()
	}
}

// takeLocked is how many queued calls the next batch carries.
func (b *batcher[In, Out]) takeLocked() int {
	n := min(len(b.queue), b.maxBatch)
	if b.weight == nil {
		return n
	}
	total := 0
	for i := range n {
		total += b.weight(b.queue[i].in)
		if total > b.maxWeight && i > 0 {
			return i
		}
	}
	return n
}

// run sends batches until the queue is empty.
func (b *batcher[In, Out]) run() {
	for {
		b.mu.Lock()
		n := b.takeLocked()
		if n == 0 {
			b.inflight--
			b.mu.Unlock()
			return
		}
		batch := make([]*batchCall[In, Out], n)
		copy(batch, b.queue)
		b.queue = append(b.queue[:0], b.queue[n:]...)
		b.mu.Unlock()

		in := make([]In, n)
		for i, c := range batch {
			in[i] = c.in
		}
		out, err := b.send(context.Background(), in)
		for i, c := range batch {
			if err != nil {
				c.err = err
			} else {
				c.out = out[i]
			}
			close(c.done)
		}
	}
}
