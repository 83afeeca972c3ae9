package fault

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
)

// The bank workload: bankAccounts keys under bankPrefix hold balances that
// sum to bankTotal. They are created together by one transaction before the
// load starts; then bank clients (besides the register clients, against the
// same cluster under the same fault) repeatedly
//
//   - read every account with one linearizable range read
//     (GET /kv/bank/?recurse), and
//   - move a random amount between two accounts with one transaction
//     (POST /txn) whose compares pin both accounts' mod_index to what that
//     read returned (when it failed: to the newest state the client knows),
//     whose success branch puts both new balances, and whose
//     failure branch gets both accounts. Every transfer carries an
//     Idempotency-Key named after the logical transfer, and an attempt
//     whose outcome is unknown (504, timeout, broken connection) is resent
//     with the same key: the server must apply it at most once and answer
//     every resend with the original outcome. When a leader is left alone
//     (S7), a burst of transfers is sent to it (see burst).
//
// Checks (see checkBank and porcupineOps):
//   - every successful range read shows exactly the bankAccounts accounts,
//     none negative, summing to bankTotal (a torn read, a half-applied
//     transaction or one applied twice shows up here);
//   - every account's history is linearizable (C1): range reads and
//     failure-branch gets are reads of each key, transfers are
//     compare-and-set writes of each key they put.
//
// Values are "<balance> <tag>", the tag unique per transfer (client and
// sequence number), so porcupine can tell which write a read saw even when
// two transfers leave the same balance.
const (
	bankPrefix   = "bank/"
	bankAccounts = 5
	bankTotal    = 500
	// bankClientBase numbers bank clients apart from the register clients,
	// the probe, the checker and the burst clients.
	bankClientBase = 1000
	// bankAttempts bounds the attempts of one transfer within its turn.
	bankAttempts = 3
	// bankCreateTag is the Value (tag) of the transaction creating the
	// accounts; a transfer's Value is its own tag.
	bankCreateTag = "init"
)

// Bank op kinds: a transfer (or the creating transaction), and a range read
// of every account.
const (
	opTxn  = "txn"
	opScan = "scan"
)

// bankPart is one key's share of a bank op: for a transfer, a put of Value
// if the key's mod_index is CAS; for a range read or a failed transfer's
// get, what was read (Present, Value, Index = mod_index).
type bankPart struct {
	Key     string `json:"key"`
	Value   string `json:"value,omitempty"`
	CAS     uint64 `json:"cas,omitempty"`
	Present bool   `json:"present,omitempty"`
	Index   uint64 `json:"index,omitempty"`
}

// bankKeys are the account keys, in key order.
func bankKeys() []string {
	var keys []string
	for i := range bankAccounts {
		keys = append(keys, fmt.Sprintf("%sa%d", bankPrefix, i))
	}
	return keys
}

// bankValue is the stored value of a balance written by the transfer tag.
func bankValue(balance int64, tag string) string { return fmt.Sprintf("%d %s", balance, tag) }

// parseBalance reads the balance out of a stored value.
func parseBalance(v string) (int64, error) {
	b, _, _ := strings.Cut(v, " ")
	return strconv.ParseInt(b, 10, 64)
}

// txnRequest is the body of POST /txn, in the shape docs/api.md gives.
type txnRequest struct {
	Compare []txnCompare `json:"compare,omitempty"`
	Success []txnOp      `json:"success,omitempty"`
	Failure []txnOp      `json:"failure,omitempty"`
}

type txnCompare struct {
	Key         string  `json:"key"`
	Target      string  `json:"target"`
	Op          string  `json:"op"`
	ModIndex    *uint64 `json:"mod_index,omitempty"`
	CreateIndex *uint64 `json:"create_index,omitempty"`
}

type txnOp struct {
	Op    string `json:"op"`
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
}

// txnAnswer is a 200 answer of POST /txn; a get's result names its key,
// whether it was found and then its value and mod_index. A replayed answer
// (the same Idempotency-Key again) does not keep what gets read: they say
// not_kept instead.
type txnAnswer struct {
	Succeeded bool   `json:"succeeded"`
	Index     uint64 `json:"index"`
	Results   []struct {
		Key         string  `json:"key"`
		Value       *string `json:"value"`
		ValueBase64 *string `json:"value_base64"`
		ModIndex    uint64  `json:"mod_index"`
		Found       *bool   `json:"found"`
		NotKept     bool    `json:"not_kept"`
	} `json:"results"`
}

// rangeAnswer is a 200 answer of GET /kv/{prefix}?recurse.
type rangeAnswer struct {
	Index uint64 `json:"index"`
	Items []struct {
		Key         string  `json:"key"`
		Value       *string `json:"value"`
		ValueBase64 *string `json:"value_base64"`
		ModIndex    uint64  `json:"mod_index"`
	} `json:"items"`
	More bool `json:"more"`
}

// bank is the bank workload's shared state.
type bank struct {
	w       *workload
	keys    []string
	clients []*bankClient
	// problems found while running (malformed answers); checkBank adds them.
	problems []string
}

// bankClient is one bank goroutine.
type bankClient struct {
	*client
	b       *bank
	pending *op // a transfer whose outcome is not known yet
	// view is the newest state of every account this client knows: from
	// its last successful range read, updated by its own transfers' answers.
	view []bankPart
}

// newBank makes n bank clients pinned round-robin to the nodes.
func newBank(w *workload, n int) *bank {
	b := &bank{w: w, keys: bankKeys()}
	for i := range n {
		cl := w.newClient(bankClientBase+i, w.c.Nodes[i%len(w.c.Nodes)])
		b.clients = append(b.clients, &bankClient{client: cl, b: b})
	}
	return b
}

// create makes the accounts with one transaction (each compare: the account
// is absent), resent with its idempotency key until its outcome is definite
// or timeout passes, through every node in turn. Balances: bankTotal split
// evenly.
func (b *bank) create(timeout time.Duration) error {
	cl := b.clients[0]
	o := &op{Client: cl.id, Kind: opTxn, Key: bankPrefix, RID: b.w.run + "-bank-create", Value: bankCreateTag}
	var zero uint64
	for i, k := range b.keys {
		bal := int64(bankTotal / bankAccounts)
		if i == 0 {
			bal += bankTotal % bankAccounts
		}
		o.Bank = append(o.Bank, bankPart{Key: k, Value: bankValue(bal, bankCreateTag), CAS: zero})
	}
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		cl.sendTxn(b.w.c.Nodes[i%len(b.w.c.Nodes)], o, 1)
		if o.Outcome == outcomeOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.w.h.add(o)
	switch {
	case o.Outcome != outcomeOK:
		return fmt.Errorf("bank: creating the accounts: %s after %d attempts: %s", o.Outcome, o.Attempts, opString(o))
	case !o.Succeeded:
		return fmt.Errorf("bank: creating the accounts: the compares (every account absent) failed: %s", opString(o))
	}
	return nil
}

// start launches the bank clients; each takes a step every interval.
func (b *bank) start(interval time.Duration) {
	for _, cl := range b.clients {
		b.w.wg.Add(1)
		go func() {
			defer b.w.wg.Done()
			b.w.every(cl.rng, interval, cl.step)
		}()
	}
}

// step resends a pending transfer, or reads every account and transfers
// between two of them. The transfer is computed from the client's view:
// this read if it succeeded, else what the client knew before. So
// transfers keep being sent while reads fail (no quorum, a paused
// leader): they may be refused, time out with an unknown outcome and be
// resent, or fail their compares on a stale view, as a real client's
// would.
func (cl *bankClient) step() {
	if cl.pending != nil {
		cl.sendTxn(cl.node, cl.pending, bankAttempts)
		cl.settle()
		return
	}
	s := cl.scan(cl.node)
	cl.b.w.h.add(s)
	if s.Outcome == outcomeOK {
		cl.view = slices.Clone(s.Bank)
	}
	if cl.view == nil || cl.rng.IntN(4) == 0 { // some steps only read
		return
	}
	cl.transfer()
}

// transfer moves a random amount between two accounts of the client's
// view and files the transfer, or keeps it pending if its outcome is
// unknown.
func (cl *bankClient) transfer() {
	bal := map[string]int64{}
	var rich []int
	for i, p := range cl.view {
		v, err := parseBalance(p.Value)
		if !p.Present || err != nil {
			return // checkBank reports it
		}
		bal[p.Key] = v
		if v > 0 {
			rich = append(rich, i)
		}
	}
	if len(rich) == 0 || len(cl.view) < 2 {
		return
	}
	from := cl.view[rich[cl.rng.IntN(len(rich))]]
	to := cl.view[cl.rng.IntN(len(cl.view))]
	for to.Key == from.Key {
		to = cl.view[cl.rng.IntN(len(cl.view))]
	}
	amount := 1 + cl.rng.Int64N(bal[from.Key])
	cl.seq++
	tag := fmt.Sprintf("b%d-%d", cl.id, cl.seq)
	o := &op{Client: cl.id, Kind: opTxn, Key: bankPrefix, Value: tag, RID: fmt.Sprintf("%s-bank%d-%d", cl.w.run, cl.id, cl.seq),
		Bank: []bankPart{
			{Key: from.Key, Value: bankValue(bal[from.Key]-amount, tag), CAS: from.Index},
			{Key: to.Key, Value: bankValue(bal[to.Key]+amount, tag), CAS: to.Index},
		}}
	cl.pending = o
	cl.sendTxn(cl.node, o, bankAttempts)
	cl.settle()
}

// burst fires n transfers at node, each from a new client pinned to it,
// computed from a stale read of node (not recorded: it only picks the
// amounts and the expected indexes) and resent with its idempotency key
// every 200 ms until its outcome is definite or the workload stops (then
// finish resolves it). Fired at a leader that is about to be left without
// a quorum, the transfers sit uncommitted in its log, time out with an
// unknown outcome and may commit later while they are resent: the case
// idempotency keys exist for (as burstCounters does for single keys).
func (b *bank) burst(node *proc.Node, n int) {
	for range n {
		cl := &bankClient{client: b.w.newBurstClient(node), b: b}
		b.clients = append(b.clients, cl)
		b.w.wg.Add(1)
		go func() {
			defer b.w.wg.Done()
			a := cl.send(http.MethodGet, node.URL("/kv/"+bankPrefix+"?recurse&consistency=stale"), nil, "", opTimeout)
			v := &op{}
			if a.err != nil || a.status != http.StatusOK || fillScan(v, a.body, b.keys) != nil {
				return
			}
			cl.view = v.Bank
			cl.transfer()
			for cl.pending != nil {
				select {
				case <-b.w.stopCh:
					return
				case <-time.After(200 * time.Millisecond):
				}
				cl.sendTxn(node, cl.pending, 1)
				cl.settle()
			}
		}()
	}
}

// settle files the pending transfer in the history unless its outcome is
// still unknown (then it stays pending and is resent next turn, with its
// idempotency key).
func (cl *bankClient) settle() {
	o := cl.pending
	if o == nil || o.Outcome == outcomeUnknown {
		return
	}
	cl.pending = nil
	cl.w.h.add(o)
	if o.Outcome != outcomeOK {
		return
	}
	// What the answer shows: the puts at the transaction's index, or
	// what the failure branch's gets read.
	seen := o.Reads
	if o.Succeeded {
		seen = nil
		for _, p := range o.Bank {
			seen = append(seen, bankPart{Key: p.Key, Present: true, Value: p.Value, Index: o.Index})
		}
	}
	for _, p := range seen {
		if i := slices.IndexFunc(cl.view, func(v bankPart) bool { return v.Key == p.Key }); i >= 0 {
			cl.view[i] = p
		}
	}
}

// sendTxn sends the transfer o through n as POST /txn, continuing o's
// attempt chain like sendWrite: resends only with the idempotency key, and
// an unknown attempt keeps the whole op unknown until one is definite.
func (cl *bankClient) sendTxn(n *proc.Node, o *op, maxAttempts int) {
	body := transferBody(o)
	sawUnknown := o.Outcome == outcomeUnknown
	for try := 0; try < maxAttempts; try++ {
		if try > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		a := cl.send(http.MethodPost, n.URL("/txn"), body, o.RID, opTimeout)
		if o.Attempts == 0 {
			o.Call = a.call
		}
		o.Attempts++
		o.Node = n.Name
		res := a.classify(o.Kind)
		a.fill(o)
		if res == outcomeOK {
			if err := fillTxn(o, a.body); err != nil {
				o.Unexpected = true
				cl.b.problems = append(cl.b.problems, fmt.Sprintf("bank: %v: %s", err, opString(o)))
				o.Outcome = outcomeUnknown // counted as may-or-may-not
				return
			}
			o.Outcome = outcomeOK
			return
		}
		switch {
		case res == outcomeUnknown:
			sawUnknown = true
		case !sawUnknown:
			o.Outcome = outcomeFail
			return
		}
		o.Outcome = outcomeUnknown
	}
}

// transferBody is o's POST /txn body: compare every part's mod_index (0:
// create_index = 0, i.e. absent), put every part on success, get every
// part on failure.
func transferBody(o *op) []byte {
	var req txnRequest
	for _, p := range o.Bank {
		c := txnCompare{Key: p.Key, Target: "mod_index", Op: "="}
		if p.CAS == 0 {
			c.Target, c.CreateIndex = "create_index", new(uint64)
		} else {
			c.ModIndex = &p.CAS
		}
		req.Compare = append(req.Compare, c)
		req.Success = append(req.Success, txnOp{Op: "put", Key: p.Key, Value: p.Value})
		req.Failure = append(req.Failure, txnOp{Op: "get", Key: p.Key})
	}
	b, err := json.Marshal(req)
	if err != nil {
		panic(err) // our own struct
	}
	return b
}

// fillTxn records a 200 answer: which branch ran, its index, and on
// failure what the gets read (kept in o.Reads; none when the answer is a
// replay that did not keep them).
func fillTxn(o *op, body []byte) error {
	var ans txnAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return fmt.Errorf("txn answer %q: %v", trimBody(body), err)
	}
	o.Succeeded, o.Index, o.Reads = ans.Succeeded, ans.Index, nil
	if ans.Succeeded {
		return nil
	}
	if len(ans.Results) != len(o.Bank) {
		return fmt.Errorf("failed txn answered %d results for %d gets: %q", len(ans.Results), len(o.Bank), trimBody(body))
	}
	var reads []bankPart
	for i, r := range ans.Results {
		p := bankPart{Key: o.Bank[i].Key, Index: r.ModIndex}
		if r.Key != p.Key {
			return fmt.Errorf("result %d is for key %q, want %q: %q", i, r.Key, p.Key, trimBody(body))
		}
		switch {
		case r.NotKept:
			return nil // a replay: what the gets read then is not known
		case r.Found == nil:
			return fmt.Errorf("result %d says neither found nor not_kept: %q", i, trimBody(body))
		case !*r.Found:
		case r.Value == nil:
			return fmt.Errorf("result %d has no text value: %q", i, trimBody(body))
		default:
			p.Present, p.Value = true, *r.Value
		}
		reads = append(reads, p)
	}
	o.Reads = reads
	return nil
}

// scan reads every account with one linearizable range read through n; an
// ok answer fills o.Bank with one part per account (absent ones too), in
// key order.
func (cl *bankClient) scan(n *proc.Node) *op {
	o := &op{Client: cl.id, Node: n.Name, Kind: opScan, Key: bankPrefix}
	a := cl.send(http.MethodGet, n.URL("/kv/"+bankPrefix+"?recurse&consistency=linearizable"), nil, "", opTimeout)
	o.Call, o.Attempts = a.call, 1
	o.Outcome = a.classify(opScan)
	a.fill(o)
	if o.Outcome == outcomeOK {
		if err := fillScan(o, a.body, cl.b.keys); err != nil {
			o.Outcome, o.Unexpected = outcomeFail, true
			cl.b.problems = append(cl.b.problems, fmt.Sprintf("bank: %v: %s", err, opString(o)))
		}
	}
	return o
}

// fillScan records a range read's answer: every account key in order, and
// an error for anything else in the answer (a key that is no account, a
// second page, keys out of order, a binary value).
func fillScan(o *op, body []byte, keys []string) error {
	var ans rangeAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return fmt.Errorf("range answer %q: %v", trimBody(body), err)
	}
	if ans.More {
		return fmt.Errorf("range of %d accounts says more=true: %q", len(keys), trimBody(body))
	}
	found := map[string]bankPart{}
	prev := ""
	for _, it := range ans.Items {
		if !slices.Contains(keys, it.Key) {
			return fmt.Errorf("range lists %q, which is no account: %q", it.Key, trimBody(body))
		}
		if it.Key <= prev {
			return fmt.Errorf("range lists %q after %q: not in key order, or twice", it.Key, prev)
		}
		prev = it.Key
		if it.Value == nil {
			return fmt.Errorf("range item %q has no text value: %q", it.Key, trimBody(body))
		}
		found[it.Key] = bankPart{Key: it.Key, Present: true, Value: *it.Value, Index: it.ModIndex}
	}
	o.Bank = nil
	for _, k := range keys {
		p, ok := found[k]
		if !ok {
			p = bankPart{Key: k}
		}
		o.Bank = append(o.Bank, p)
	}
	o.Index = ans.Index
	return nil
}

func trimBody(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// finish resolves pending transfers by resending them (same idempotency
// key) until their outcome is definite or timeout passes, files them, and
// then reads every account once more, through every node in turn until
// one answers; that read is checked like the others. It returns the
// problems found.
func (b *bank) finish(timeout time.Duration) []string {
	var problems []string
	deadline := time.Now().Add(timeout)
	for _, cl := range b.clients {
		for i := 0; cl.pending != nil && time.Now().Before(deadline); i++ {
			cl.sendTxn(b.w.c.Nodes[i%len(b.w.c.Nodes)], cl.pending, 1)
			cl.settle()
			if cl.pending != nil {
				time.Sleep(100 * time.Millisecond)
			}
		}
		if o := cl.pending; o != nil {
			cl.pending = nil
			b.w.h.add(o)
			problems = append(problems, fmt.Sprintf("bank: transfer %s still unknown after %v of resends", o.RID, timeout))
		}
	}
	for i := 0; ; i++ {
		s := b.clients[0].scan(b.w.c.Nodes[i%len(b.w.c.Nodes)])
		if s.Outcome == outcomeOK {
			b.w.h.add(s)
			for _, p := range s.Bank {
				b.w.present[p.Key] = p.Present
			}
			break
		}
		if time.Now().After(deadline) {
			problems = append(problems, "bank: no final range read succeeded: "+opString(s))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return problems
}

// bankStats summarises the bank ops of a history.
type bankStats struct {
	reads, transfers, succeeded, failedCompare, unknown int
	// resent: transfers sent more than once (an attempt's outcome was
	// unknown); replayed: of those, answered from the idempotency record.
	resent, replayed int
}

// checkBank checks every successful range read of the history: all
// accounts present, none negative, the total bankTotal. It returns the
// problems (at most 10 listed) and the counts.
func checkBank(ops []*op) (problems []string, st bankStats) {
	for _, o := range ops {
		switch {
		case o.Kind == opTxn && o.Value != bankCreateTag:
			st.transfers++
			if o.Attempts > 1 {
				st.resent++
				if o.Replayed {
					st.replayed++
				}
			}
			switch {
			case o.Outcome == outcomeUnknown:
				st.unknown++
			case o.Outcome == outcomeOK && o.Succeeded:
				st.succeeded++
			case o.Outcome == outcomeOK:
				st.failedCompare++
			}
		case o.Kind == opScan && o.Outcome == outcomeOK:
			st.reads++
			var sum int64
			var bad []string
			for _, p := range o.Bank {
				if !p.Present {
					bad = append(bad, p.Key+" missing")
					continue
				}
				v, err := parseBalance(p.Value)
				if err != nil {
					bad = append(bad, fmt.Sprintf("%s=%q unreadable", p.Key, p.Value))
					continue
				}
				if v < 0 {
					bad = append(bad, fmt.Sprintf("%s=%d negative", p.Key, v))
				}
				sum += v
			}
			if len(o.Bank) != bankAccounts {
				bad = append(bad, fmt.Sprintf("%d accounts, want %d", len(o.Bank), bankAccounts))
			}
			if sum != bankTotal {
				bad = append(bad, fmt.Sprintf("total %d, want %d", sum, bankTotal))
			}
			if len(bad) > 0 {
				problems = append(problems, fmt.Sprintf("bank: range read at index %d: %s; read %s: %s",
					o.Index, strings.Join(bad, ", "), describeParts(o.Bank), opString(o)))
			}
		}
	}
	return first(problems, 10), st
}

func describeParts(parts []bankPart) string {
	var s []string
	for _, p := range parts {
		if p.Present {
			s = append(s, fmt.Sprintf("%s=%q@%d", p.Key, p.Value, p.Index))
		} else {
			s = append(s, p.Key+"=absent")
		}
	}
	return strings.Join(s, " ")
}
