package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"unicode/utf8"
)

// Txn is a transaction, in POST /txn's JSON shape exactly (the json tags
// are the server's field names), so a file in that shape decodes into
// it: if every Compare holds, the Success operations run, else the
// Failure ones, all in one log entry (docs/api.md, "Transactions"). At
// most 128 compares and operations in all.
type Txn struct {
	Compare []Compare `json:"compare,omitempty"`
	Success []Op      `json:"success,omitempty"`
	Failure []Op      `json:"failure,omitempty"`
}

// Compare is one condition: Target "value", "mod_index" or
// "create_index", Op "=", "!=", "<" or ">", and the operand in the field
// of the target's name (exactly one of Value, ModIndex, CreateIndex). An
// absent key's indexes are 0; every value compare on it is false.
type Compare struct {
	Key         string  `json:"key"`
	Target      string  `json:"target"`
	Op          string  `json:"op"`
	Value       *string `json:"value,omitempty"`
	ModIndex    *uint64 `json:"mod_index,omitempty"`
	CreateIndex *uint64 `json:"create_index,omitempty"`
}

// Op is one operation: Op "put" (Key, Value or ValueBase64, CAS only in
// Success), "delete" (Key), "delete_prefix" (Prefix, not empty), "get"
// (Key) or "list" (Prefix, Limit 1..1000, default 100).
type Op struct {
	Op          string  `json:"op"`
	Key         string  `json:"key,omitempty"`
	Prefix      string  `json:"prefix,omitempty"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 *string `json:"value_base64,omitempty"`
	CAS         *uint64 `json:"cas,omitempty"`
	Limit       int     `json:"limit,omitempty"`
}

// Helpers that build compares and operations.

// CompareValue holds when key's value compares to value by op.
func CompareValue(key, op, value string) Compare {
	return Compare{Key: key, Target: "value", Op: op, Value: &value}
}

// CompareModIndex holds when key's mod_index compares to index by op.
func CompareModIndex(key, op string, index uint64) Compare {
	return Compare{Key: key, Target: "mod_index", Op: op, ModIndex: &index}
}

// CompareCreateIndex holds when key's create_index compares to index by
// op; CompareCreateIndex(key, "=", 0) holds when key is absent.
func CompareCreateIndex(key, op string, index uint64) Compare {
	return Compare{Key: key, Target: "create_index", Op: op, CreateIndex: &index}
}

// OpPut writes value under key, as "value" when it is UTF-8, else as
// "value_base64".
func OpPut(key string, value []byte) Op {
	if utf8.Valid(value) {
		v := string(value)
		return Op{Op: "put", Key: key, Value: &v}
	}
	b := base64.StdEncoding.EncodeToString(value)
	return Op{Op: "put", Key: key, ValueBase64: &b}
}

// OpDelete deletes key (no error when absent: OpResult.Deleted is 0).
func OpDelete(key string) Op { return Op{Op: "delete", Key: key} }

// OpDeletePrefix deletes every key under prefix (not empty).
func OpDeletePrefix(prefix string) Op { return Op{Op: "delete_prefix", Prefix: prefix} }

// OpGet reads key.
func OpGet(key string) Op { return Op{Op: "get", Key: key} }

// OpList reads at most limit keys under prefix (0: the server's 100).
func OpList(prefix string, limit int) Op { return Op{Op: "list", Prefix: prefix, Limit: limit} }

// OpResult is one operation's result, in the order of the branch that
// ran. Which fields are set depends on Op: put: Key, Index; delete: Key,
// Deleted (1 or 0); delete_prefix: Prefix, Deleted (the count); get: Key,
// Found and, when found, Value, CreateIndex, ModIndex; list: Prefix,
// Items, More. NotKept: a replayed transaction's read, whose data the
// server does not remember (read again).
type OpResult struct {
	Op          string
	Key         string
	Prefix      string
	Index       uint64
	Deleted     int64
	Found       bool
	Value       []byte
	CreateIndex uint64
	ModIndex    uint64
	Items       []KeyValue
	More        bool
	NotKept     bool
}

// TxnResponse is a transaction's answer. Succeeded false (a compare did
// not hold) is not an error: the Failure branch ran.
type TxnResponse struct {
	Succeeded bool
	Index     uint64 // the transaction's log index
	Results   []OpResult
	// Replayed: a retry of the same idempotency key answered the first
	// outcome (its reads are NotKept).
	Replayed bool
	Raw      json.RawMessage // the answer's JSON, as the server sent it
}

// Txn runs txn (POST /txn) through any node. Options: WithIdempotencyKey
// only. Errors: a 400 *Error for a transaction the server refuses (it
// names what), ErrQuotaExceeded, ErrKeyReused, ErrOutcomeUnknown.
func (c *Client) Txn(ctx context.Context, txn Txn, opts ...WriteOption) (*TxnResponse, error) {
	o := writeOpts(opts)
	body, err := json.Marshal(txn)
	if err != nil {
		return nil, fmt.Errorf("raftkv client: %w", err)
	}
	res, err := c.do(ctx, &request{method: http.MethodPost, path: "/txn", body: body,
		header: http.Header{"Content-Type": {"application/json"}}, write: true, idem: o.idem})
	if err != nil {
		return nil, err
	}
	var a struct {
		Succeeded bool   `json:"succeeded"`
		Index     uint64 `json:"index"`
		Results   []struct {
			Op      string          `json:"op"`
			Key     string          `json:"key"`
			Prefix  string          `json:"prefix"`
			Index   uint64          `json:"index"`
			Deleted json.RawMessage `json:"deleted"`
			Found   bool            `json:"found"`
			wireValue
			CreateIndex uint64   `json:"create_index"`
			ModIndex    uint64   `json:"mod_index"`
			Items       []wireKV `json:"items"`
			More        bool     `json:"more"`
			NotKept     bool     `json:"not_kept"`
		} `json:"results"`
	}
	if err := decode(res, &a); err != nil {
		return nil, err
	}
	out := &TxnResponse{Succeeded: a.Succeeded, Index: a.Index, Raw: json.RawMessage(res.body),
		Replayed: res.header.Get("X-Raft-Replayed") == "true", Results: make([]OpResult, len(a.Results))}
	for i, r := range a.Results {
		v, err := r.bytes()
		if err != nil {
			return nil, err
		}
		or := OpResult{Op: r.Op, Key: r.Key, Prefix: r.Prefix, Index: r.Index, Found: r.Found, Value: v,
			CreateIndex: r.CreateIndex, ModIndex: r.ModIndex, More: r.More, NotKept: r.NotKept}
		switch string(r.Deleted) {
		case "", "null", "false":
		case "true":
			or.Deleted = 1
		default:
			if err := json.Unmarshal(r.Deleted, &or.Deleted); err != nil {
				return nil, fmt.Errorf("raftkv client: a transaction result's deleted is %s", r.Deleted)
			}
		}
		if r.Items != nil {
			or.Items = make([]KeyValue, len(r.Items))
			for j, w := range r.Items {
				if or.Items[j], err = w.keyValue(); err != nil {
					return nil, err
				}
			}
		}
		out.Results[i] = or
	}
	return out, nil
}
