package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Op names what a log command does.
type Op uint8

// Operations. Values are part of the log format: never renumber them.
const (
	OpSet          Op = 1 // put Key = Value
	OpDelete       Op = 2 // remove Key
	OpRegisterNode Op = 3 // record NodeID's HTTP address
	OpForgetNode   Op = 4 // drop NodeID's record
	// OpMarkPromotion records that the learner NodeID was joined as a
	// voter and is to be promoted once it has caught up; OpDropPromotion
	// forgets that (promoted, removed, or refused).
	OpMarkPromotion Op = 5
	OpDropPromotion Op = 6
	// OpDeletePrefix removes every key that starts with Key ("": every
	// key) in one entry; Result.Current is how many it removed.
	OpDeletePrefix Op = 7
	// OpTxn is a transaction (Command.Txn): compares, then one branch of
	// operations, all or none.
	OpTxn Op = 8
	// Leases (lease.go). OpLeaseGrant makes a lease of TTL whose id is the
	// entry's index; OpLeaseKeepAlive and OpTouch (the lease of Key)
	// refresh one; OpLeaseRevoke deletes one with its keys. The leader
	// decides OpLeaseCheckpoint (remaining times) and OpLeaseExpire, each
	// naming Leases with the refresh index they were decided for.
	OpLeaseGrant      Op = 9
	OpLeaseKeepAlive  Op = 10
	OpLeaseRevoke     Op = 11
	OpTouch           Op = 12
	OpLeaseCheckpoint Op = 13
	OpLeaseExpire     Op = 14
)

func (o Op) String() string {
	switch o {
	case OpSet:
		return "set"
	case OpDelete:
		return "delete"
	case OpRegisterNode:
		return "register-node"
	case OpForgetNode:
		return "forget-node"
	case OpMarkPromotion:
		return "mark-promotion"
	case OpDropPromotion:
		return "drop-promotion"
	case OpDeletePrefix:
		return "delete-prefix"
	case OpTxn:
		return "txn"
	case OpLeaseGrant:
		return "lease-grant"
	case OpLeaseKeepAlive:
		return "lease-keepalive"
	case OpLeaseRevoke:
		return "lease-revoke"
	case OpTouch:
		return "touch"
	case OpLeaseCheckpoint:
		return "lease-checkpoint"
	case OpLeaseExpire:
		return "lease-expire"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// CommandVersion is the first byte of every encoded command. A replica that
// meets a newer version refuses the entry (deterministically, on every
// replica alike) instead of guessing at its meaning.
const CommandVersion = 1

// Field tags. Each field is encoded as tag, uvarint length, bytes, in
// ascending tag order, so later fields (compare index, TTL, request id)
// can be added without a new version while old entries still decode.
const (
	tagKey       = 1
	tagValue     = 2
	tagNodeID    = 3
	tagHTTPAddr  = 4
	tagCAS       = 5 // uvarint; present means "compare"
	tagRequestID = 6
	tagQuota     = 7  // uvarint; MAX_DATA_BYTES of the proposing leader, 0 or absent = none
	tagTxn       = 8  // a Txn's own encoding (txn.go)
	tagTTL       = 9  // uvarint milliseconds: a set's key TTL, a grant's TTL
	tagLease     = 10 // uvarint lease id: a set's lease, keepalive, revoke
	tagLeases    = 11 // LeaseRefs: uvarint count, then (id, refreshed, remaining ms) each
)

// MaxRequestIDBytes bounds an idempotency key.
const MaxRequestIDBytes = 256

// ErrMalformedCommand means a log entry could not be decoded. It is
// returned (never panicked) so a bad entry cannot crash every replica.
var ErrMalformedCommand = errors.New("malformed command")

// Command is one state-machine operation as carried in a Raft log entry.
// Which fields are meaningful depends on Op.
type Command struct {
	Op       Op
	Key      string
	Value    string
	NodeID   string
	HTTPAddr string
	// HasCAS makes a set or delete conditional: it applies only if the
	// key's ModIndex equals CAS (CAS 0: only if the key is absent).
	HasCAS bool
	CAS    uint64
	// RequestID, when set, makes the command idempotent: a later command
	// with the same id returns this one's outcome without applying.
	RequestID string
	// Quota, when not 0, caps the data (key and value bytes) this command
	// may grow the state to: the leader's MAX_DATA_BYTES, carried in the
	// entry so every replica decides alike (set and txn only).
	Quota uint64
	// Txn is OpTxn's transaction.
	Txn *Txn
	// TTLMillis (OpSet: the key's own TTL; OpLeaseGrant: the lease's)
	// and Lease (OpSet: attach Key; keepalive, revoke: which lease).
	TTLMillis uint64
	Lease     uint64
	// Leases are what OpLeaseCheckpoint and OpLeaseExpire decide for, at
	// most MaxLeasesPerCommand.
	Leases []LeaseRef
}

// LeaseRef names a lease as the leader saw it: its id, its refresh index
// (the grant's or last keepalive's, so a decision made before a later
// refresh does nothing), and for a checkpoint its remaining milliseconds.
type LeaseRef struct {
	ID              uint64
	Refreshed       uint64
	RemainingMillis uint64
}

// Encode appends the binary form of c to dst and returns it.
func (c *Command) Encode(dst []byte) []byte {
	dst = append(dst, CommandVersion, byte(c.Op))
	dst = appendField(dst, tagKey, c.Key)
	dst = appendField(dst, tagValue, c.Value)
	dst = appendField(dst, tagNodeID, c.NodeID)
	dst = appendField(dst, tagHTTPAddr, c.HTTPAddr)
	if c.HasCAS {
		var n [binary.MaxVarintLen64]byte
		v := binary.PutUvarint(n[:], c.CAS)
		dst = append(dst, tagCAS, byte(v))
		dst = append(dst, n[:v]...)
	}
	dst = appendField(dst, tagRequestID, c.RequestID)
	if c.Quota != 0 {
		dst = appendUvarintField(dst, tagQuota, c.Quota)
	}
	if c.Txn != nil {
		body := c.Txn.encode(nil)
		dst = append(dst, tagTxn)
		dst = binary.AppendUvarint(dst, uint64(len(body)))
		dst = append(dst, body...)
	}
	dst = appendNonZeroField(dst, tagTTL, c.TTLMillis)
	dst = appendNonZeroField(dst, tagLease, c.Lease)
	if len(c.Leases) > 0 {
		var b []byte
		b = binary.AppendUvarint(b, uint64(len(c.Leases)))
		for _, r := range c.Leases {
			b = binary.AppendUvarint(b, r.ID)
			b = binary.AppendUvarint(b, r.Refreshed)
			b = binary.AppendUvarint(b, r.RemainingMillis)
		}
		dst = appendField(dst, tagLeases, string(b))
	}
	return dst
}

// appendNonZeroField encodes a number field; 0 is left out (absent).
func appendNonZeroField(dst []byte, tag byte, v uint64) []byte {
	if v == 0 {
		return dst
	}
	dst = append(dst, tag, byte(uvarintLen(v)))
	return binary.AppendUvarint(dst, v)
}

// EncodedSize is an upper bound of len(c.Encode(nil)), for preallocation.
func (c *Command) EncodedSize() int {
	const perField = 1 + binary.MaxVarintLen64
	n := 2 + 11*perField + binary.MaxVarintLen64 + len(c.Key) + len(c.Value) + len(c.NodeID) + len(c.HTTPAddr) + len(c.RequestID)
	if c.Txn != nil {
		n += c.Txn.encodedSize()
	}
	return n + len(c.Leases)*3*binary.MaxVarintLen64
}

// Empty fields are left out: absent and empty decode alike, and the log
// stays small.
func appendField(dst []byte, tag byte, s string) []byte {
	if s == "" {
		return dst
	}
	dst = append(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// DecodeCommand parses an encoded command.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if len(b) < 2 {
		return c, fmt.Errorf("%w: %d bytes", ErrMalformedCommand, len(b))
	}
	if b[0] != CommandVersion {
		return c, fmt.Errorf("%w: version %d, this build reads %d", ErrMalformedCommand, b[0], CommandVersion)
	}
	c.Op = Op(b[1])
	b = b[2:]
	var last byte
	for len(b) > 0 {
		tag := b[0]
		if tag <= last {
			return c, fmt.Errorf("%w: field %d out of order", ErrMalformedCommand, tag)
		}
		last = tag
		n, w := binary.Uvarint(b[1:])
		if w <= 0 || n > uint64(len(b)-1-w) {
			return c, fmt.Errorf("%w: field %d length", ErrMalformedCommand, tag)
		}
		start := 1 + w
		s := string(b[start : start+int(n)])
		b = b[start+int(n):]
		switch tag {
		case tagKey:
			c.Key = s
		case tagValue:
			c.Value = s
		case tagNodeID:
			c.NodeID = s
		case tagHTTPAddr:
			c.HTTPAddr = s
		case tagCAS:
			v, w := binary.Uvarint([]byte(s))
			if w != len(s) {
				return c, fmt.Errorf("%w: compare index", ErrMalformedCommand)
			}
			c.HasCAS, c.CAS = true, v
		case tagRequestID:
			c.RequestID = s
		case tagQuota:
			v, w := binary.Uvarint([]byte(s))
			if w <= 0 || w != len(s) {
				return c, fmt.Errorf("%w: quota", ErrMalformedCommand)
			}
			c.Quota = v
		case tagTxn:
			t, err := decodeTxn([]byte(s))
			if err != nil {
				return c, fmt.Errorf("%w: %v", ErrMalformedCommand, err)
			}
			c.Txn = t
		case tagTTL, tagLease:
			v, w := binary.Uvarint([]byte(s))
			if w != len(s) || v == 0 {
				return c, fmt.Errorf("%w: field %d", ErrMalformedCommand, tag)
			}
			if tag == tagTTL {
				c.TTLMillis = v
			} else {
				c.Lease = v
			}
		case tagLeases:
			refs, err := decodeLeaseRefs([]byte(s))
			if err != nil {
				return c, err
			}
			c.Leases = refs
		default:
			return c, fmt.Errorf("%w: unknown field %d", ErrMalformedCommand, tag)
		}
	}
	return c, c.check()
}

// check enforces what each op needs, so Apply can trust a decoded command.
func (c *Command) check() error {
	if c.Txn != nil && c.Op != OpTxn {
		return fmt.Errorf("%w: %s takes no transaction", ErrMalformedCommand, c.Op)
	}
	if c.Quota != 0 && c.Op != OpSet && c.Op != OpTxn {
		return fmt.Errorf("%w: %s takes no quota", ErrMalformedCommand, c.Op)
	}
	if c.Op == OpSet {
		if c.TTLMillis != 0 && c.Lease != 0 {
			return fmt.Errorf("%w: a set with both a ttl and a lease", ErrMalformedCommand)
		}
		if c.TTLMillis != 0 && !validTTL(c.TTLMillis) {
			return fmt.Errorf("%w: ttl of %d ms", ErrMalformedCommand, c.TTLMillis)
		}
		if len(c.Leases) > 0 {
			return fmt.Errorf("%w: %s takes no lease list", ErrMalformedCommand, c.Op)
		}
	} else if !c.Op.isLease() && (c.TTLMillis != 0 || c.Lease != 0 || len(c.Leases) > 0) {
		return fmt.Errorf("%w: %s takes no ttl or lease", ErrMalformedCommand, c.Op)
	}
	switch c.Op {
	case OpTxn:
		if c.Txn == nil || c.HasCAS || c.Key != "" || c.Value != "" || c.NodeID != "" || c.HTTPAddr != "" {
			return fmt.Errorf("%w: %s takes only a transaction, a quota and a request id", ErrMalformedCommand, c.Op)
		}
		if len(c.RequestID) > MaxRequestIDBytes {
			return fmt.Errorf("%w: request id of %d bytes", ErrMalformedCommand, len(c.RequestID))
		}
	case OpSet, OpDelete:
		if c.Key == "" {
			return fmt.Errorf("%w: %s without key", ErrMalformedCommand, c.Op)
		}
		if len(c.RequestID) > MaxRequestIDBytes {
			return fmt.Errorf("%w: request id of %d bytes", ErrMalformedCommand, len(c.RequestID))
		}
	case OpDeletePrefix:
		// Key is the prefix and may be empty (absent): every key.
		if c.HasCAS || c.Value != "" || c.NodeID != "" || c.HTTPAddr != "" {
			return fmt.Errorf("%w: %s takes only a prefix and a request id", ErrMalformedCommand, c.Op)
		}
		if len(c.RequestID) > MaxRequestIDBytes {
			return fmt.Errorf("%w: request id of %d bytes", ErrMalformedCommand, len(c.RequestID))
		}
	case OpLeaseGrant, OpLeaseKeepAlive, OpLeaseRevoke, OpTouch, OpLeaseCheckpoint, OpLeaseExpire:
		if err := c.checkLease(); err != nil {
			return err
		}
	case OpRegisterNode:
		if c.HasCAS || c.RequestID != "" {
			return fmt.Errorf("%w: %s takes no compare index or request id", ErrMalformedCommand, c.Op)
		}
		if c.NodeID == "" || c.HTTPAddr == "" {
			return fmt.Errorf("%w: %s without node id or address", ErrMalformedCommand, c.Op)
		}
	case OpForgetNode:
		if c.HasCAS || c.RequestID != "" {
			return fmt.Errorf("%w: %s takes no compare index or request id", ErrMalformedCommand, c.Op)
		}
		if c.NodeID == "" {
			return fmt.Errorf("%w: %s without node id", ErrMalformedCommand, c.Op)
		}
	case OpMarkPromotion, OpDropPromotion:
		if c.HasCAS || c.RequestID != "" || c.Key != "" || c.Value != "" || c.HTTPAddr != "" {
			return fmt.Errorf("%w: %s takes only a node id", ErrMalformedCommand, c.Op)
		}
		if c.NodeID == "" {
			return fmt.Errorf("%w: %s without node id", ErrMalformedCommand, c.Op)
		}
	default:
		return fmt.Errorf("%w: unknown op %d", ErrMalformedCommand, uint8(c.Op))
	}
	return nil
}
