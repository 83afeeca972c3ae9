package httpapi

// POST /txn: compares, then a success or a failure branch of operations,
// as one log entry (fsm.OpTxn). The request is parsed and checked
// completely on the node that received it, so bad input is a 4xx that
// proposes nothing; a valid transaction runs on the leader (OnLeader),
// which answers with every operation's result. The batched peer protocol
// is not used: its answer carries an index and an outcome code, not the
// values a transaction's reads return.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/node"
)

// MaxTxnBodyBytes caps a POST /txn body: 4 MiB, the peer protocol's batch
// cap (cluster.MaxApplyBytes), so one transaction's entry is never larger
// than a batch of writes. Each key and value is held to MAX_KEY_BYTES and
// MAX_VALUE_BYTES besides.
const MaxTxnBodyBytes = cluster.MaxApplyBytes

// txnRequest is the body of POST /txn.
type txnRequest struct {
	Compare []txnCompare `json:"compare"`
	Success []txnOp      `json:"success"`
	Failure []txnOp      `json:"failure"`
}

// txnCompare: the operand is under the target's own name.
type txnCompare struct {
	Key         string  `json:"key"`
	Target      string  `json:"target"`
	Op          string  `json:"op"`
	Value       *string `json:"value"`
	ModIndex    *uint64 `json:"mod_index"`
	CreateIndex *uint64 `json:"create_index"`
}

// txnOp is one operation: key for put, delete and get; prefix for
// delete_prefix and list.
type txnOp struct {
	Op          string  `json:"op"`
	Key         *string `json:"key"`
	Prefix      *string `json:"prefix"`
	Value       *string `json:"value"`
	ValueBase64 *string `json:"value_base64"`
	CAS         *uint64 `json:"cas"`
	Limit       *uint64 `json:"limit"`
}

// txnResponse answers POST /txn.
type txnResponse struct {
	Succeeded bool        `json:"succeeded"`
	Index     uint64      `json:"index"`
	Results   []txnResult `json:"results"`
}

// txnResult is one operation's result; which fields appear depends on op.
type txnResult struct {
	Op     string  `json:"op"`
	Key    *string `json:"key,omitempty"`
	Prefix *string `json:"prefix,omitempty"`
	Index  uint64  `json:"index,omitempty"` // put
	// Deleted: delete answers a bool, delete_prefix a count.
	Deleted any   `json:"deleted,omitempty"`
	Found   *bool `json:"found,omitempty"` // get
	jsonValue
	CreateIndex uint64     `json:"create_index,omitempty"`
	ModIndex    uint64     `json:"mod_index,omitempty"`
	Items       *[]txnItem `json:"items,omitempty"` // list
	More        *bool      `json:"more,omitempty"`
	// NotKept: a replayed transaction's read; its data is not remembered.
	NotKept bool `json:"not_kept,omitempty"`
}

// txnItem is one key of a list result.
type txnItem struct {
	Key string `json:"key"`
	jsonValue
	CreateIndex uint64 `json:"create_index"`
	ModIndex    uint64 `json:"mod_index"`
}

// handleTxn serves POST /txn; p holds the query (requestId): the body
// is the transaction, never a form.
func (s *Service) handleTxn(w http.ResponseWriter, r *http.Request, p params) error {
	body, err := readBody(w, r, bodyLimit{MaxTxnBodyBytes, fmt.Sprintf("the transaction body limit of %d bytes", MaxTxnBodyBytes)})
	if err != nil {
		return err
	}
	cmd, err := s.parseTxn(r, p, body)
	if err != nil {
		return err
	}
	return s.onLeader(w, r, cluster.Forward{Body: bytes.NewReader(body), Size: int64(len(body))}, func() error {
		cmd.Quota = s.quota()
		res, servedBy, err := s.cluster.Propose(r.Context(), cmd)
		if err != nil {
			if servedBy != "" && errors.Is(err, cluster.ErrRejected) {
				// Leadership moved after OnLeader chose this node, and the
				// peer protocol refuses transactions (it cannot carry their
				// results): nothing was proposed, so hand the request on.
				return fmt.Errorf("%w: leadership moved", node.ErrNotLeader)
			}
			return err
		}
		if servedBy != "" {
			w.Header().Set(HeaderServedBy, servedBy)
		}
		if err := resultError(res, cmd); err != nil {
			return err
		}
		if res.Txn == nil {
			return fmt.Errorf("transaction at index %d has no outcome", res.Index)
		}
		if res.Replayed {
			w.Header().Set(HeaderReplayed, "true")
		}
		setIndexHeader(w, HeaderRaftIndex, res.Index)
		writeJSON(w, http.StatusOK, txnAnswer(cmd.Txn, res))
		return nil
	})
}

// txnAnswer renders a transaction's result; the request supplies the
// keys and prefixes (a replayed result does not keep them).
func txnAnswer(t *fsm.Txn, res *fsm.Result) txnResponse {
	branch := t.Success
	if !res.Txn.Succeeded {
		branch = t.Failure
	}
	out := txnResponse{Succeeded: res.Txn.Succeeded, Index: res.Index, Results: make([]txnResult, len(res.Txn.Ops))}
	for i, o := range res.Txn.Ops {
		rr := &out.Results[i]
		rr.Op = o.Kind.String()
		var name string
		if i < len(branch) {
			name = branch[i].Key
		}
		if o.Kind == fsm.TxnList || o.Kind == fsm.TxnDeletePrefix {
			rr.Prefix = &name
		} else {
			rr.Key = &name
		}
		if o.NotKept {
			rr.NotKept = true
			continue
		}
		switch o.Kind {
		case fsm.TxnPut:
			rr.Index = res.Index
		case fsm.TxnDelete:
			rr.Deleted = o.Deleted > 0
		case fsm.TxnDeletePrefix:
			rr.Deleted = o.Deleted
		case fsm.TxnGet:
			found := o.Found
			rr.Found = &found
			if found {
				rr.jsonValue = valueOf(o.Entry.Value)
				rr.CreateIndex, rr.ModIndex = o.Entry.CreateIndex, o.Entry.ModIndex
			}
		case fsm.TxnList:
			items := make([]txnItem, len(o.Items))
			for j, e := range o.Items {
				items[j] = txnItem{Key: e.Key, jsonValue: valueOf(e.Value), CreateIndex: e.CreateIndex, ModIndex: e.ModIndex}
			}
			more := o.More
			rr.Items, rr.More = &items, &more
		}
	}
	return out
}

// parseTxn decodes and checks a transaction strictly: unknown fields,
// trailing data, unknown ops, targets or compare ops, operands of the
// wrong type or under the wrong name, empty or oversized keys and values
// are each a 400 (an oversized value a 413) naming what was wrong.
// atPosition names where in the transaction body err was found (such as
// "success[1]"), after the error's kind, so the message reads
// "bad request: success[1]: key must not be empty" like every other 400,
// not "success[1]: bad request: …". err keeps its sentinel for the error
// table; an error of another kind is prefixed as it is.
func atPosition(where string, err error) error {
	for _, kind := range []error{ErrBadRequest, ErrTooLarge} {
		if rest, ok := strings.CutPrefix(err.Error(), kind.Error()+": "); ok && errors.Is(err, kind) {
			return fmt.Errorf("%w: %s: %s", kind, where, rest)
		}
	}
	return fmt.Errorf("%s: %w", where, err)
}

func (s *Service) parseTxn(r *http.Request, p params, body []byte) (*fsm.Command, error) {
	var req txnRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("%w: transaction body: %s", ErrBadRequest, jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: transaction body: data after the JSON object", ErrBadRequest)
	}
	n := len(req.Compare) + len(req.Success) + len(req.Failure)
	switch {
	case n == 0:
		return nil, fmt.Errorf("%w: empty transaction: give compare, success or failure", ErrBadRequest)
	case n > fsm.MaxTxnOps:
		return nil, fmt.Errorf("%w: %d compares and operations exceed the limit of %d per transaction", ErrBadRequest, n, fsm.MaxTxnOps)
	}
	t := &fsm.Txn{}
	for i := range req.Compare {
		c, err := s.txnCompare(&req.Compare[i])
		if err != nil {
			return nil, atPosition(fmt.Sprintf("compare[%d]", i), err)
		}
		t.Compare = append(t.Compare, c)
	}
	for _, br := range []struct {
		name string
		in   []txnOp
		out  *[]fsm.TxnOp
	}{{"success", req.Success, &t.Success}, {"failure", req.Failure, &t.Failure}} {
		for i := range br.in {
			o, err := s.txnOperation(&br.in[i], br.name == "success")
			if err != nil {
				return nil, atPosition(fmt.Sprintf("%s[%d]", br.name, i), err)
			}
			*br.out = append(*br.out, o)
		}
	}
	cmd := &fsm.Command{Op: fsm.OpTxn, Txn: t}
	var err error
	if cmd.RequestID, err = idempotencyKey(r, p); err != nil {
		return nil, err
	}
	return cmd, nil
}

// jsonProblem says what encoding/json found wrong, in the request's terms.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("%q must be %s, not a JSON %s", te.Field, jsonTypeName(te.Type.String()), te.Value)
		}
		return fmt.Sprintf("must be a JSON object, not %s", te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.EOF):
		return "empty body (a JSON object is expected)"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	}
	// Unknown fields: `json: unknown field "x"`.
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonTypeName(goType string) string {
	switch strings.TrimPrefix(goType, "*") {
	case "string":
		return "a string"
	case "uint64":
		return "a non-negative integer"
	case "[]httpapi.txnCompare", "[]httpapi.txnOp":
		return "an array of objects"
	}
	return "an object"
}

var (
	txnTargets = map[string]fsm.CompareTarget{"value": fsm.TargetValue, "mod_index": fsm.TargetModIndex, "create_index": fsm.TargetCreateIndex}
	txnCmpOps  = map[string]fsm.CompareOp{"=": fsm.CmpEqual, "!=": fsm.CmpNotEqual, "<": fsm.CmpLess, ">": fsm.CmpGreater}
	txnKinds   = map[string]fsm.TxnOpKind{"put": fsm.TxnPut, "delete": fsm.TxnDelete, "delete_prefix": fsm.TxnDeletePrefix, "get": fsm.TxnGet, "list": fsm.TxnList}
)

func (s *Service) txnCompare(in *txnCompare) (fsm.Compare, error) {
	c := fsm.Compare{Key: in.Key}
	if err := s.checkKey(in.Key); err != nil {
		return c, err
	}
	var ok bool
	if c.Target, ok = txnTargets[in.Target]; !ok {
		return c, fmt.Errorf("%w: unknown target %q (value, mod_index or create_index)", ErrBadRequest, in.Target)
	}
	if c.Op, ok = txnCmpOps[in.Op]; !ok {
		return c, fmt.Errorf("%w: unknown op %q (=, !=, < or >)", ErrBadRequest, in.Op)
	}
	given := 0
	for _, p := range []bool{in.Value != nil, in.ModIndex != nil, in.CreateIndex != nil} {
		if p {
			given++
		}
	}
	var operand bool
	switch c.Target {
	case fsm.TargetValue:
		operand = in.Value != nil
		if operand {
			c.Value = *in.Value
			if err := s.checkValue(len(c.Value)); err != nil {
				return c, err
			}
		}
	case fsm.TargetModIndex:
		operand = in.ModIndex != nil
		if operand {
			c.Index = *in.ModIndex
		}
	case fsm.TargetCreateIndex:
		operand = in.CreateIndex != nil
		if operand {
			c.Index = *in.CreateIndex
		}
	}
	if !operand || given != 1 {
		return c, fmt.Errorf("%w: a %s compare takes its operand as %q, and only that", ErrBadRequest, in.Target, in.Target)
	}
	return c, nil
}

func (s *Service) txnOperation(in *txnOp, success bool) (fsm.TxnOp, error) {
	kind, ok := txnKinds[in.Op]
	if !ok {
		return fsm.TxnOp{}, fmt.Errorf("%w: unknown op %q (put, delete, delete_prefix, get or list)", ErrBadRequest, in.Op)
	}
	o := fsm.TxnOp{Kind: kind}
	prefixed := kind == fsm.TxnDeletePrefix || kind == fsm.TxnList
	switch {
	case prefixed && in.Key != nil:
		return o, fmt.Errorf("%w: %s takes \"prefix\", not \"key\"", ErrBadRequest, in.Op)
	case !prefixed && in.Prefix != nil:
		return o, fmt.Errorf("%w: %s takes \"key\", not \"prefix\"", ErrBadRequest, in.Op)
	case prefixed && in.Prefix == nil && kind == fsm.TxnDeletePrefix:
		return o, fmt.Errorf("%w: delete_prefix needs a non-empty \"prefix\"", ErrBadRequest)
	case !prefixed && in.Key == nil:
		return o, fmt.Errorf("%w: %s needs \"key\"", ErrBadRequest, in.Op)
	}
	if prefixed {
		if in.Prefix != nil {
			o.Key = *in.Prefix
		}
		if kind == fsm.TxnDeletePrefix && o.Key == "" {
			return o, fmt.Errorf("%w: delete_prefix needs a non-empty \"prefix\"", ErrBadRequest)
		}
		if len(o.Key) > s.opts.MaxKeyBytes || !utf8.ValidString(o.Key) {
			return o, fmt.Errorf("%w: prefix must be valid UTF-8 of at most MAX_KEY_BYTES=%d bytes", ErrBadRequest, s.opts.MaxKeyBytes)
		}
	} else {
		o.Key = *in.Key
		if err := s.checkKey(o.Key); err != nil {
			return o, err
		}
	}
	hasValue := in.Value != nil || in.ValueBase64 != nil
	switch {
	case kind != fsm.TxnPut && hasValue:
		return o, fmt.Errorf("%w: only put takes a value", ErrBadRequest)
	case kind == fsm.TxnPut && !hasValue:
		return o, fmt.Errorf("%w: put needs \"value\" (or \"value_base64\")", ErrBadRequest)
	case in.Value != nil && in.ValueBase64 != nil:
		return o, fmt.Errorf("%w: give \"value\" or \"value_base64\", not both", ErrBadRequest)
	case in.Value != nil:
		o.Value = *in.Value
	case in.ValueBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*in.ValueBase64)
		if err != nil {
			return o, fmt.Errorf("%w: value_base64 is not standard base64", ErrBadRequest)
		}
		o.Value = string(b)
	}
	if err := s.checkValue(len(o.Value)); err != nil {
		return o, err
	}
	if in.CAS != nil {
		if kind != fsm.TxnPut || !success {
			return o, fmt.Errorf("%w: cas is taken only by a put in \"success\" (it is an extra compare); use a mod_index compare", ErrBadRequest)
		}
		o.HasCAS, o.CAS = true, *in.CAS
	}
	if in.Limit != nil {
		if kind != fsm.TxnList {
			return o, fmt.Errorf("%w: only list takes a limit", ErrBadRequest)
		}
		if *in.Limit < 1 || *in.Limit > fsm.MaxTxnListLimit {
			return o, fmt.Errorf("%w: limit %d is not in 1..%d", ErrBadRequest, *in.Limit, fsm.MaxTxnListLimit)
		}
		o.Limit = *in.Limit
	}
	return o, nil
}
