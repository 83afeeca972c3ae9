package httpapi

// The peer protocol is how a follower hands its clients' writes and
// linearizable reads to the leader, batched: concurrent requests share one
// round trip. Writes travel as the binary commands the follower already
// encoded, and the leader proposes them as they are. Reads ask the leader
// only for a read index; the follower then serves them from its own
// replica once it has applied that index, which spreads read work over
// all nodes.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/node"
)

const (
	pathApply     = "/internal/apply"
	pathReadIndex = "/internal/readindex"

	maxApplyBatch     = 256     // commands per /internal/apply
	maxApplyBytes     = 4 << 20 // encoded bytes per /internal/apply (one larger command goes alone)
	maxPeerInflight   = 2       // batches in flight per leader, per kind
	maxReadIndexBatch = 1024    // reads per read-index round trip
)

// Outcome codes of /internal/apply, one per command.
const (
	outcomeApplied     byte = iota // Result.Err is nil
	outcomeNotFound                // fsm.ErrKeyNotFound
	outcomeCASFailed               // fsm.ErrCASFailed; current carries the mod_index
	outcomeRejected                // malformed or not allowed here; not proposed
	outcomeNotProposed             // the leader could not propose it (not leader, busy, stopping)
	outcomeUnknown                 // proposed, commit not confirmed in time
)

type applyOutcome struct {
	code     byte
	index    uint64
	current  uint64
	replayed bool
}

// leaderLink batches one follower's traffic to one leader address.
type leaderLink struct {
	writes *batcher[[]byte, applyOutcome]
	reads  *batcher[struct{}, uint64]
}

func (s *Service) linkTo(addr string) *leaderLink {
	if l, ok := s.links.Load(addr); ok {
		return l.(*leaderLink)
	}
	l := &leaderLink{
		writes: &batcher[[]byte, applyOutcome]{
			send:        func(ctx context.Context, cmds [][]byte) ([]applyOutcome, error) { return s.sendApply(ctx, addr, cmds) },
			maxBatch:    maxApplyBatch,
			maxInflight: maxPeerInflight,
			weight:      func(c []byte) int { return len(c) },
			maxWeight:   maxApplyBytes,
		},
		reads: &batcher[struct{}, uint64]{
			send:        func(ctx context.Context, in []struct{}) ([]uint64, error) { return s.sendReadIndex(ctx, addr, len(in)) },
			maxBatch:    maxReadIndexBatch,
			maxInflight: maxPeerInflight,
		},
	}
	actual, _ := s.links.LoadOrStore(addr, l)
	return actual.(*leaderLink)
}

// proposeViaLeader sends cmd to the leader. local reports that this node
// became the leader meanwhile, so the caller proposes it itself.
func (s *Service) proposeViaLeader(ctx context.Context, cmd *fsm.Command) (res *fsm.Result, leaderID string, local bool, err error) {
	leader, err := s.node.WaitLeader(ctx)
	if err != nil {
		return nil, "", false, err
	}
	if leader.ID == s.node.ID() {
		return nil, "", true, nil
	}
	out, err := s.linkTo(leader.HTTPAddr).writes.call(ctx, cmd.Encode(make([]byte, 0, cmd.EncodedSize())))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			err = errors.Join(ErrForwardTimeout, err)
		}
		return nil, leader.ID, false, err
	}
	res = &fsm.Result{Index: out.index, Current: out.current, Replayed: out.replayed}
	switch out.code {
	case outcomeApplied:
	case outcomeNotFound:
		res.Err = fsm.ErrKeyNotFound
	case outcomeCASFailed:
		res.Err = fsm.ErrCASFailed
	case outcomeRejected:
		return nil, leader.ID, false, fmt.Errorf("%w: the leader refused the command", ErrBadRequest)
	case outcomeNotProposed:
		return nil, leader.ID, false, node.ErrUnavailable
	default:
		return nil, leader.ID, false, node.ErrOutcomeUnknown
	}
	return res, leader.ID, false, nil
}

// readIndexViaLeader returns a read index confirmed by the leader (this
// node's own, if it leads).
func (s *Service) readIndexViaLeader(ctx context.Context) (uint64, error) {
	leader, err := s.node.WaitLeader(ctx)
	if err != nil {
		return 0, err
	}
	if leader.ID == s.node.ID() {
		return s.node.ReadIndex(ctx)
	}
	index, err := s.linkTo(leader.HTTPAddr).reads.call(ctx, struct{}{})
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w: %v", node.ErrReadUnconfirmed, err)
	}
	return index, err
}

// peerPost sends one peer request. write says whether it carries writes,
// which decides the error class of an answer lost after sending.
func (s *Service) peerPost(ctx context.Context, addr, path string, body []byte, write bool) (_ []byte, err error) {
	start := time.Now()
	defer func() { s.recordForward(peerKind(path), start, err) }()
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout+forwardSlack)
	defer cancel()
	req, err := s.peerRequest(ctx, http.MethodPost, s.nodeURL(addr, path), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(HeaderForwarded, "1")
	resp, err := s.sendToLeader(req, write)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, errors.Join(lostAnswer(write), err)
	}
	if resp.StatusCode != http.StatusOK {
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			// Refused before anything was proposed: the nodes disagree on
			// the tokens (a file not yet reloaded everywhere).
			s.log.WithField("leader", addr).Warn("the leader refused this node's credential; do all nodes read the same tokens file, reloaded?")
			return nil, fmt.Errorf("%w: leader answered %s", ErrPeerUnauthorized, resp.Status)
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			return nil, fmt.Errorf("%w: leader answered %s: %s", node.ErrUnavailable, resp.Status, bytes.TrimSpace(b))
		}
		return nil, fmt.Errorf("%w: leader answered %s: %s", lostAnswer(write), resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

func (s *Service) sendApply(ctx context.Context, addr string, cmds [][]byte) ([]applyOutcome, error) {
	size := binary.MaxVarintLen64
	for _, c := range cmds {
		size += binary.MaxVarintLen64 + len(c)
	}
	body := binary.AppendUvarint(make([]byte, 0, size), uint64(len(cmds)))
	for _, c := range cmds {
		body = binary.AppendUvarint(body, uint64(len(c)))
		body = append(body, c...)
	}
	b, err := s.peerPost(ctx, addr, pathApply, body, true)
	if err != nil {
		return nil, err
	}
	out, err := decodeOutcomes(b, len(cmds))
	if err != nil {
		return nil, errors.Join(ErrForwardUnknown, err)
	}
	return out, nil
}

func (s *Service) sendReadIndex(ctx context.Context, addr string, n int) ([]uint64, error) {
	b, err := s.peerPost(ctx, addr, pathReadIndex, nil, false)
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

// handlePeerApply proposes a follower's batch of encoded commands. Only
// key writes are accepted here, checked as strictly as the public API
// checks them; membership goes through /join and /leave.
func (s *Service) handlePeerApply(w http.ResponseWriter, r *http.Request) {
	limit := int64(maxApplyBytes+s.opts.MaxKeyBytes+s.opts.MaxValueBytes) + formOverhead
	body, err := readBody(w, r, limit)
	var frames [][]byte
	if err == nil {
		frames, err = decodeFrames(body)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]applyOutcome, len(frames))
	var valid [][]byte
	var where []int
	for i, f := range frames {
		if s.checkPeerCommand(f) != nil {
			out[i].code = outcomeRejected
			continue
		}
		valid = append(valid, f)
		where = append(where, i)
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	for j, a := range s.node.ApplyEncoded(ctx, valid) {
		out[where[j]] = outcomeOf(a)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(encodeOutcomes(out))
}

func (s *Service) checkPeerCommand(b []byte) error {
	cmd, err := fsm.DecodeCommand(b)
	if err != nil {
		return err
	}
	if cmd.Op != fsm.OpSet && cmd.Op != fsm.OpDelete {
		return fmt.Errorf("%w: %s is not a key write", ErrBadRequest, cmd.Op)
	}
	if err := s.checkKey(cmd.Key); err != nil {
		return err
	}
	return s.checkValue(len(cmd.Value))
}

func outcomeOf(a node.Applied) applyOutcome {
	switch {
	case errors.Is(a.Err, node.ErrOutcomeUnknown):
		return applyOutcome{code: outcomeUnknown}
	case a.Err != nil && (errors.Is(a.Err, node.ErrNotLeader) || errors.Is(a.Err, node.ErrUnavailable) || errors.Is(a.Err, node.ErrShutdown)):
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
	default:
		o.code = outcomeRejected
	}
	return o
}

// handlePeerReadIndex answers a follower's read-index request.
func (s *Service) handlePeerReadIndex(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	index, err := s.node.ReadIndex(ctx)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(strconv.AppendUint(nil, index, 10))
}

// decodeFrames splits "count, then count × (length, bytes)".
func decodeFrames(b []byte) ([][]byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > maxApplyBatch {
		return nil, fmt.Errorf("%w: batch header", ErrBadRequest)
	}
	b = b[w:]
	frames := make([][]byte, 0, n)
	for range n {
		l, w := binary.Uvarint(b)
		if w <= 0 || l > uint64(len(b)-w) {
			return nil, fmt.Errorf("%w: batch frame", ErrBadRequest)
		}
		frames = append(frames, b[w:w+int(l)])
		b = b[w+int(l):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes after batch", ErrBadRequest)
	}
	return frames, nil
}

func encodeOutcomes(out []applyOutcome) []byte {
	b := make([]byte, 0, 1+len(out)*(2+2*binary.MaxVarintLen64))
	b = binary.AppendUvarint(b, uint64(len(out)))
	for _, o := range out {
		flags := o.code
		if o.replayed {
			flags |= 0x80
		}
		b = append(b, flags)
		b = binary.AppendUvarint(b, o.index)
		b = binary.AppendUvarint(b, o.current)
	}
	return b
}

func decodeOutcomes(b []byte, want int) ([]applyOutcome, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n != uint64(want) {
		return nil, fmt.Errorf("leader answered %d outcomes for %d commands", n, want)
	}
	b = b[w:]
	out := make([]applyOutcome, n)
	for i := range out {
		if len(b) == 0 {
			return nil, errors.New("truncated outcomes")
		}
		out[i].code, out[i].replayed = b[0]&0x7f, b[0]&0x80 != 0
		b = b[1:]
		for _, dst := range []*uint64{&out[i].index, &out[i].current} {
			v, w := binary.Uvarint(b)
			if w <= 0 {
				return nil, errors.New("truncated outcomes")
			}
			*dst, b = v, b[w:]
		}
	}
	return out, nil
}
