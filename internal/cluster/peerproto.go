package cluster

// The peer protocol is how a follower hands its clients' writes and
// linearizable reads to the leader, batched: concurrent requests share one
// round trip. Writes travel as the binary commands the follower already
// encoded, and the leader proposes them as they are. Reads ask the leader
// only for a read index; the follower then serves them from its own
// replica once it has applied that index, which spreads read work over
// all nodes. The wire format is in codec.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/node"
)

// Paths of the peer protocol on every node's API.
const (
	PathApply     = "/internal/apply"
	PathReadIndex = "/internal/readindex"
	PathInfo      = "/internal/info"
)

const (
	maxApplyBatch = 256 // commands per /internal/apply
	// MaxApplyBytes caps the encoded commands of one /internal/apply (one
	// larger command goes alone).
	MaxApplyBytes     = 4 << 20
	maxPeerInflight   = 2    // batches in flight per leader, per kind
	maxReadIndexBatch = 1024 // reads per read-index round trip
)

// leaderLink batches one follower's traffic to one leader address.
type leaderLink struct {
	writes *batcher[[]byte, applyOutcome]
	reads  *batcher[struct{}, uint64]
}

func (c *Cluster) linkTo(addr string) *leaderLink {
	if l, ok := c.links.Load(addr); ok {
		return l.(*leaderLink)
	}
	l := &leaderLink{
		writes: &batcher[[]byte, applyOutcome]{
			send:        func(ctx context.Context, cmds [][]byte) ([]applyOutcome, error) { return c.sendApply(ctx, addr, cmds) },
			maxBatch:    maxApplyBatch,
			maxInflight: maxPeerInflight,
			weight:      func(c []byte) int { return len(c) },
			maxWeight:   MaxApplyBytes,
		},
		reads: &batcher[struct{}, uint64]{
			send:        func(ctx context.Context, in []struct{}) ([]uint64, error) { return c.sendReadIndex(ctx, addr, len(in)) },
			maxBatch:    maxReadIndexBatch,
			maxInflight: maxPeerInflight,
		},
	}
	actual, _ := c.links.LoadOrStore(addr, l)
	return actual.(*leaderLink)
}

// proposeVia sends cmd to the leader at addr, in the next batch.
func (c *Cluster) proposeVia(ctx context.Context, addr string, cmd *fsm.Command) (*fsm.Result, error) {
	out, err := c.linkTo(addr).writes.call(ctx, cmd.Encode(make([]byte, 0, cmd.EncodedSize())))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			err = errors.Join(ErrForwardTimeout, err)
		}
		return nil, err
	}
	return resultOf(out)
}

// resultOf turns the leader's outcome for one command back into the
// Result (or the error) it stands for.
func resultOf(out applyOutcome) (*fsm.Result, error) {
	res := &fsm.Result{Index: out.index, Current: out.current, Replayed: out.replayed}
	switch out.code {
	case outcomeApplied:
	case outcomeNotFound:
		res.Err = fsm.ErrKeyNotFound
	case outcomeCASFailed:
		res.Err = fsm.ErrCASFailed
	case outcomeKeyReused:
		res.Err = fsm.ErrIdempotencyKeyReused
	case outcomeQuotaExceeded:
		res.Err, res.Index, res.Quota, res.DataBytes = fsm.ErrQuotaExceeded, 0, out.index, int64(out.current)
	case outcomeLeaseNotFound:
		res.Err = fsm.ErrLeaseNotFound
	case outcomeTooManyLeases:
		res.Err = fsm.ErrTooManyLeases
	case outcomeNoTTL:
		res.Err = fsm.ErrNoTTL
	case outcomeRejected:
		return nil, ErrRejected
	case outcomeNotProposed:
		return nil, node.ErrUnavailable
	default:
		return nil, node.ErrOutcomeUnknown
	}
	return res, nil
}

// readIndexVia asks the leader at addr for a read index, in the next batch.
func (c *Cluster) readIndexVia(ctx context.Context, addr string) (uint64, error) {
	index, err := c.linkTo(addr).reads.call(ctx, struct{}{})
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w: %v", node.ErrReadUnconfirmed, err)
	}
	return index, err
}

// post sends one peer-protocol request and returns the leader's 200
// answer. write says whether it carries writes, which decides the error
// class of an answer lost after sending; a 401/403 or a 503 means nothing
// was proposed.
func (c *Cluster) post(ctx context.Context, kind, addr, path string, body []byte, write bool) (_ []byte, err error) {
	start := time.Now()
	defer func() { c.metrics.record(kind, start, err) }()
	k := call{method: http.MethodPost, addr: addr, uri: path, contentType: "application/octet-stream", write: write, hops: 1}
	if len(body) > 0 {
		k.body, k.size = bytes.NewReader(body), int64(len(body))
	}
	status, b, err := c.client.do(ctx, k)
	switch {
	case err != nil:
		return nil, err
	case status == http.StatusOK:
		return b, nil
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// Refused before anything was proposed: the nodes disagree on
		// the tokens (a file not yet reloaded everywhere).
		c.log.WithField("leader", addr).Warn("the leader refused this node's credential; do all nodes read the same tokens file, reloaded?")
		return nil, fmt.Errorf("%w: leader answered %d", ErrPeerUnauthorized, status)
	case status == http.StatusServiceUnavailable:
		return nil, fmt.Errorf("%w: leader answered %d: %s", node.ErrUnavailable, status, bytes.TrimSpace(b))
	case status == http.StatusConflict && errorCode(b) == "other_cluster":
		// CheckClusterID refused the call before reading it: the node this
		// one takes for its leader is of another cluster. Nothing was
		// proposed, and a retry gets the same answer.
		return nil, fmt.Errorf("%w: %s answered: %s", node.ErrOtherCluster, addr, bytes.TrimSpace(b))
	}
	return nil, fmt.Errorf("%w: leader answered %d: %s", lostAnswer(write), status, bytes.TrimSpace(b))
}

func (c *Cluster) sendApply(ctx context.Context, addr string, cmds [][]byte) ([]applyOutcome, error) {
	b, err := c.post(ctx, kindApply, addr, PathApply, encodeFrames(cmds), true)
	if err != nil {
		return nil, err
	}
	out, err := decodeOutcomes(b, len(cmds))
	if err != nil {
		return nil, errors.Join(ErrForwardUnknown, err)
	}
	return out, nil
}

func (c *Cluster) sendReadIndex(ctx context.Context, addr string, n int) ([]uint64, error) {
	b, err := c.post(ctx, kindReadIndex, addr, PathReadIndex, nil, false)
	if err != nil {
		return nil, err
	}
	index, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: bad read index %q", ErrForwardFailed, b)
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = index
	}
	return out, nil
}

// ServeApply is the leader's side of /internal/apply: it proposes a
// follower's batch of encoded commands and returns the encoded outcomes.
// Only key writes that accept allows are proposed (the API checks them as
// strictly as its own, and may complete them: the leader's quota), as
// accept left them; the rest are answered as rejected. Membership goes
// through /join and /leave instead.
func (c *Cluster) ServeApply(ctx context.Context, body []byte, accept func(*fsm.Command) error) ([]byte, error) {
	frames, err := decodeFrames(body)
	if err != nil {
		return nil, err
	}
	out := make([]applyOutcome, len(frames))
	var valid [][]byte
	var where []int
	for i, f := range frames {
		cmd, err := fsm.DecodeCommand(f)
		if err != nil || !forwardable(cmd.Op) || accept(&cmd) != nil {
			out[i].code = outcomeRejected
			continue
		}
		// accept may have completed the command (the leader's quota):
		// propose what it accepted.
		valid = append(valid, cmd.Encode(make([]byte, 0, cmd.EncodedSize())))
		where = append(where, i)
	}
	for j, a := range c.node.ApplyEncoded(ctx, valid) {
		out[where[j]] = outcomeOf(a)
	}
	return encodeOutcomes(out), nil
}

// ServeReadIndex is the leader's side of /internal/readindex: its read
// index, as the answer's body.
func (c *Cluster) ServeReadIndex(ctx context.Context) ([]byte, error) {
	index, err := c.node.ReadIndex(ctx)
	if err != nil {
		return nil, err
	}
	return strconv.AppendUint(nil, index, 10), nil
}

func outcomeOf(a node.Applied) applyOutcome {
	switch {
	case errors.Is(a.Err, node.ErrOutcomeUnknown):
		return applyOutcome{code: outcomeUnknown}
	case a.Err != nil && (errors.Is(a.Err, node.ErrNotLeader) || errors.Is(a.Err, node.ErrUnavailable) || errors.Is(a.Err, node.ErrShutdown) ||
		errors.Is(a.Err, node.ErrStorageUnavailable)):
		return applyOutcome{code: outcomeNotProposed}
	case a.Err != nil:
		return applyOutcome{code: outcomeUnknown}
	}
	o := applyOutcome{index: a.Result.Index, current: a.Result.Current, replayed: a.Result.Replayed}
	switch {
	case a.Result.Err == nil:
		o.code = outcomeApplied
	case errors.Is(a.Result.Err, fsm.ErrKeyNotFound):
		o.code = outcomeNotFound
	case errors.Is(a.Result.Err, fsm.ErrCASFailed):
		o.code = outcomeCASFailed
	case errors.Is(a.Result.Err, fsm.ErrIdempotencyKeyReused):
		o.code = outcomeKeyReused
	case errors.Is(a.Result.Err, fsm.ErrQuotaExceeded):
		o.code, o.index, o.current = outcomeQuotaExceeded, a.Result.Quota, uint64(max(a.Result.DataBytes, 0))
	case errors.Is(a.Result.Err, fsm.ErrLeaseNotFound):
		o.code = outcomeLeaseNotFound
	case errors.Is(a.Result.Err, fsm.ErrTooManyLeases):
		o.code = outcomeTooManyLeases
	case errors.Is(a.Result.Err, fsm.ErrNoTTL):
		o.code = outcomeNoTTL
	default:
		o.code = outcomeRejected
	}
	return o
}

// forwardable reports whether a follower may hand the leader a command of
// op: client writes only. Lease checkpoints and expiries are the leader's
// own decisions and never come from another node.
func forwardable(op fsm.Op) bool {
	switch op {
	case fsm.OpSet, fsm.OpDelete, fsm.OpDeletePrefix, fsm.OpLeaseGrant, fsm.OpLeaseKeepAlive, fsm.OpLeaseRevoke, fsm.OpTouch:
		return true
	}
	return false
}

// errorCode is the "code" of a JSON error answer, "" for any other body.
func errorCode(b []byte) string {
	var e struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(b, &e) != nil {
		return ""
	}
	return e.Code
}
