package cluster

// Wire format of /internal/apply. The request is a count, then count
// frames, each a length and the command's own encoding (fsm.Command):
// uvarint(n) { uvarint(len) bytes }. The answer is one outcome per frame,
// in order: uvarint(n) { flags uvarint(index) uvarint(current) }, where
// flags is the outcome code with 0x80 set for an idempotent replay.
// /internal/readindex answers the index in decimal.

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Outcome codes of /internal/apply, one per command.
const (
	outcomeApplied     byte = iota // Result.Err is nil
	outcomeNotFound                // fsm.ErrKeyNotFound
	outcomeCASFailed               // fsm.ErrCASFailed; current carries the mod_index
	outcomeRejected                // malformed or not allowed here; not proposed
	outcomeNotProposed             // the leader could not propose it (not leader, busy, stopping)
	outcomeUnknown                 // proposed, commit not confirmed in time
	outcomeKeyReused               // fsm.ErrIdempotencyKeyReused: applied as a no-op
	// outcomeQuotaExceeded: fsm.ErrQuotaExceeded, nothing applied; index
	// carries the entry's quota and current the data bytes (a refused
	// write's log index is of no use to the client).
	outcomeQuotaExceeded
	outcomeLeaseNotFound // fsm.ErrLeaseNotFound
	outcomeTooManyLeases // fsm.ErrTooManyLeases
	outcomeNoTTL         // fsm.ErrNoTTL
)

type applyOutcome struct {
	code     byte
	index    uint64
	current  uint64
	replayed bool
}

func encodeFrames(cmds [][]byte) []byte {
	size := binary.MaxVarintLen64
	for _, c := range cmds {
		size += binary.MaxVarintLen64 + len(c)
	}
	body := binary.AppendUvarint(make([]byte, 0, size), uint64(len(cmds)))
	for _, c := range cmds {
		body = binary.AppendUvarint(body, uint64(len(c)))
		body = append(body, c...)
	}
	return body
}

// decodeFrames splits "count, then count × (length, bytes)".
func decodeFrames(b []byte) ([][]byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > maxApplyBatch {
		return nil, fmt.Errorf("%w: batch header", ErrBadBatch)
	}
	b = b[w:]
	frames := make([][]byte, 0, n)
	for range n {
		l, w := binary.Uvarint(b)
		if w <= 0 || l > uint64(len(b)-w) {
			return nil, fmt.Errorf("%w: batch frame", ErrBadBatch)
		}
		frames = append(frames, b[w:w+int(l)])
		b = b[w+int(l):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes after batch", ErrBadBatch)
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
