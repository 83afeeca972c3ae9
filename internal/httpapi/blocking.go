package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/watch"
)

// Blocking queries (GET /kv/{key}?index=N&wait=D): Consul's ?index&wait.
const (
	// DefaultBlockingWait is a blocking query's wait when it gives none
	// (Consul's default).
	DefaultBlockingWait = 5 * time.Minute
	// MaxBlockingWait caps wait= (Consul's cap); a longer wait is cut to it.
	MaxBlockingWait = 10 * time.Minute
)

// blockingReq is a read's ?index= and ?wait=: block is false when the
// read does not block (no index, or index 0).
type blockingReq struct {
	block bool
	index uint64
	wait  time.Duration
}

// parseBlocking reads ?index=N (a log index, as X-Raft-Index gave it) and
// ?wait=D (a Go duration such as 30s; only with index; at most
// MaxBlockingWait, longer is cut; default DefaultBlockingWait).
func parseBlocking(p params) (blockingReq, error) {
	index, given, err := p.uint("index")
	if err != nil {
		return blockingReq{}, err
	}
	q := blockingReq{index: index, block: given && index > 0, wait: DefaultBlockingWait}
	if v, ok := p.get("wait"); ok {
		if !given {
			return q, fmt.Errorf("%w: wait needs index (a blocking query waits for a change after index)", ErrBadRequest)
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return q, fmt.Errorf("%w: wait=%q is not a positive duration such as 30s", ErrBadRequest, v)
		}
		q.wait = min(d, MaxBlockingWait)
	}
	return q, nil
}

// block waits until something q selects changes after b.index, or b.wait
// passes, or the node stops; the caller then answers the read as usual.
// It returns at once when b does not block, and when this node no longer
// holds the changes after b.index (the answer then tells the client where
// things are). Errors: ErrFutureIndex, ErrTooManyWatchers, the client
// leaving.
func (s *Service) block(w http.ResponseWriter, r *http.Request, b blockingReq, q fsm.Filter) error {
	if !b.block {
		return nil
	}
	wt, err := s.openWatch(r, fsm.Pos{Index: b.index, Seq: fsm.EndSeq}, q)
	switch {
	case errors.Is(err, fsm.ErrHistoryCompacted), errors.Is(err, watch.ErrClosed):
		return nil
	case err != nil:
		return err
	}
	defer wt.Close()
	// The wait may outlast the server's read and write timeouts: the
	// request is read, and the answer gets its own deadline after it.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Now().Add(b.wait + 2*s.opts.RequestTimeout + cluster.ForwardSlack + 5*time.Second))
	_, err = wt.Next(r.Context(), b.wait)
	if err != nil && !errors.Is(err, fsm.ErrHistoryCompacted) && !errors.Is(err, watch.ErrClosed) {
		return err // the client left
	}
	return nil
}
