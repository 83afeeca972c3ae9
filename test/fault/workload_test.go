package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
)

// Operation kinds. get/put/cas/del act on the register keys and ctr on a
// client's own counter key; all of these are checked by porcupine. set
// writes a fresh key of the set keyspace, checked by the set check (C2).
const (
	opGet = "get"
	opPut = "put"
	opCAS = "cas"
	opDel = "del"
	opCtr = "ctr"
	opSet = "set"
)

// Outcome of an operation, from the API's status contract: ok is a
// definite outcome (2xx, and also 404 key_not_found and 409 cas_failed,
// which are answers, not errors); fail means definitely not applied (other
// 4xx, 503, a connection that was never made); unknown means it may or may
// not have been applied (502, 504, client timeout, connection reset).
type outcome string

const (
	outcomeOK      outcome = "ok"
	outcomeFail    outcome = "fail"
	outcomeUnknown outcome = "unknown"
)

// op is one logical client operation. Attempts that share an idempotency
// key are merged into one op spanning the first call to the last return:
// the server applies such a write at most once, somewhere in that span.
type op struct {
	Client   int     `json:"client"`
	Node     string  `json:"node"` // node the request was sent to
	Kind     string  `json:"kind"`
	Key      string  `json:"key"`
	Value    string  `json:"value,omitempty"` // the value written
	HasCAS   bool    `json:"has_cas,omitempty"`
	CAS      uint64  `json:"cas,omitempty"` // expected mod_index
	RID      string  `json:"rid,omitempty"` // idempotency key
	Call     int64   `json:"call"`          // ns since the history began
	Return   int64   `json:"return"`        // of the last attempt
	Outcome  outcome `json:"outcome"`
	Attempts int     `json:"attempts"`

	// The last attempt's answer.
	Status     int    `json:"status,omitempty"`
	Code       string `json:"code,omitempty"`
	Err        string `json:"err,omitempty"`
	ServedBy   string `json:"served_by,omitempty"`
	Replayed   bool   `json:"replayed,omitempty"`
	Unexpected bool   `json:"unexpected,omitempty"` // a status the contract does not allow here

	// The result, for ok outcomes.
	Present   bool   `json:"present,omitempty"`    // get: found; del: existed
	Out       string `json:"out,omitempty"`        // get: the value read
	Index     uint64 `json:"index,omitempty"`      // write: its index; get: mod_index; cas failure: current mod_index
	CASFailed bool   `json:"cas_failed,omitempty"` // 409 cas_failed

	// Bank ops (see bank_test.go). txn: the parts it compares and puts,
	// Succeeded (which branch ran) and, for a failed compare, Reads (what
	// the failure branch's gets read); scan: the accounts read.
	Bank      []bankPart `json:"bank,omitempty"`
	Succeeded bool       `json:"succeeded,omitempty"`
	Reads     []bankPart `json:"reads,omitempty"`
}

func (o *op) isWrite() bool { return o.Kind != opGet && o.Kind != opScan }

// history collects ops with timestamps on one monotonic clock.
type history struct {
	t0  time.Time
	mu  sync.Mutex
	ops []*op
}

func newHistory() *history { return &history{t0: time.Now()} }

func (h *history) now() int64 { return time.Since(h.t0).Nanoseconds() }

func (h *history) add(o *op) {
	h.mu.Lock()
	h.ops = append(h.ops, o)
	h.mu.Unlock()
}

func (h *history) snapshot() []*op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*op(nil), h.ops...)
}

// workloadOpts shape the client load.
type workloadOpts struct {
	clients int     // goroutines, pinned round-robin to the nodes
	rate    float64 // total ops per second
	keys    int     // register keys
	cas     bool    // cas ops on register keys, and the counters
	idem    bool    // idempotency keys on some writes, and the counters
	seed    uint64
	// The bank workload (bank_test.go): bankClients clients (0: none)
	// taking bankRate steps per second in total.
	bankClients int
	bankRate    float64
}

// workload runs pinned clients against a cluster until stopped.
type workload struct {
	c       *cluster
	h       *history
	opts    workloadOpts
	run     string // makes idempotency keys unique to this run
	keys    []string
	clients []*client
	probe   *client // recovery probe writes (set keyspace)
	checker *client // final reads
	stopCh  chan struct{}
	wg      sync.WaitGroup
	// started and stopped bound the load, in ns since the history began.
	started, stopped int64
	// present records the final reads: key -> present.
	present map[string]bool
	bursts  int       // clients made by the burst helpers so far
	extra   []*client // counter clients made by burstCounters
	bank    *bank     // nil without bank clients
}

func newWorkload(c *cluster, h *history, opts workloadOpts) *workload {
	w := &workload{c: c, h: h, opts: opts, run: fmt.Sprintf("r%x", opts.seed&0xffffff), stopCh: make(chan struct{}),
		present: map[string]bool{}}
	for i := range opts.keys {
		w.keys = append(w.keys, fmt.Sprintf("r%d", i))
	}
	for i := range opts.clients {
		w.clients = append(w.clients, w.newClient(i, c.Nodes[i%len(c.Nodes)]))
	}
	w.probe = w.newClient(opts.clients, c.Nodes[0])
	w.checker = w.newClient(opts.clients+1, c.Nodes[0])
	if opts.bankClients > 0 {
		w.bank = newBank(w, opts.bankClients)
	}
	return w
}

// start launches the client goroutines.
func (w *workload) start() {
	interval := time.Duration(float64(time.Second) * float64(w.opts.clients) / w.opts.rate)
	w.started = w.h.now()
	for _, cl := range w.clients {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			cl.loop(interval)
		}()
	}
	if w.bank != nil {
		w.bank.start(time.Duration(float64(time.Second) * float64(w.opts.bankClients) / w.opts.bankRate))
	}
}

// stop ends the load and waits for every in-flight op to finish.
func (w *workload) stop() {
	select {
	case <-w.stopCh:
	default:
		close(w.stopCh)
		w.wg.Wait()
		w.stopped = w.h.now()
	}
}

// opTimeout is the client's deadline for one request: the server's own
// deadline plus a forward's extra second and some slack. Counter steps use
// the much shorter ctrTimeout, like an impatient client that relies on its
// idempotency key: during a fault, copies of the same step pile up in
// flight (for example queued in a paused leader, and all forwarded once it
// resumes), which is what the idempotency check needs.
const (
	opTimeout  = requestTimeout + 2*time.Second
	ctrTimeout = time.Second
)

// client is one workload goroutine's state.
type client struct {
	id   int
	node *proc.Node
	w    *workload
	rng  *rand.Rand
	http *http.Client
	seq  int
	// lastIndex is the mod_index this client last saw per key (0: absent),
	// the expected index of its next cas on that key.
	lastIndex map[string]uint64

	// The counter: a key only this client writes, only by cas with an
	// idempotency key; see counterInc.
	ctrKey     string
	ctrValue   uint64 // acknowledged increments
	ctrIndex   uint64 // mod_index of the last acknowledged increment
	ctrPending *op    // an increment whose outcome is not known yet
	ctrErrors  []string
}

func (w *workload) newClient(id int, n *proc.Node) *client {
	return &client{
		id: id, node: n, w: w,
		rng: rand.New(rand.NewPCG(w.opts.seed, uint64(id))),
		http: &http.Client{Transport: &http.Transport{
			Proxy: nil, MaxIdleConnsPerHost: 2, DisableCompression: true,
		}},
		lastIndex: map[string]uint64{},
		ctrKey:    fmt.Sprintf("ctr/c%d", id),
	}
}

// every calls step once per interval, from a random offset inside the
// first, until the workload stops. A slow step does not cause a burst
// afterwards.
func (w *workload) every(rng *rand.Rand, interval time.Duration, step func()) {
	next := time.Now().Add(time.Duration(rng.Int64N(int64(interval))))
	for {
		select {
		case <-w.stopCh:
			return
		case <-time.After(time.Until(next)):
		}
		next = next.Add(interval)
		if now := time.Now(); next.Before(now) {
			next = now
		}
		step()
	}
}

func (cl *client) loop(interval time.Duration) {
	cl.w.every(cl.rng, interval, func() {
		switch r := cl.rng.Float64(); {
		case r < 0.08:
			cl.setAdd(cl.node)
		case r < 0.16 && cl.w.opts.cas && cl.w.opts.idem:
			cl.counterInc()
		default:
			cl.registerOp()
		}
	})
}

// registerOp: ~45% get, ~35% put, ~10% cas, ~10% delete on a random
// register key; writes carry unique values.
func (cl *client) registerOp() {
	key := cl.w.keys[cl.rng.IntN(len(cl.w.keys))]
	r := cl.rng.Float64()
	if r < 0.45 {
		cl.w.h.add(cl.read(cl.node, key))
		return
	}
	o := &op{Client: cl.id, Node: cl.node.Name, Key: key, Kind: opPut}
	switch {
	case r < 0.90:
		cl.seq++
		o.Value = fmt.Sprintf("c%d-%d", cl.id, cl.seq)
		if r >= 0.80 && cl.w.opts.cas {
			o.Kind, o.HasCAS, o.CAS = opCAS, true, cl.lastIndex[key]
		}
		// Half the puts carry an idempotency key; on an unknown outcome
		// they are retried once with it.
		attempts := 1
		if cl.w.opts.idem && cl.rng.IntN(2) == 0 {
			o.RID = fmt.Sprintf("%s-c%d-%d", cl.w.run, cl.id, cl.seq)
			attempts = 2
		}
		cl.write(o, attempts)
	default:
		o.Kind = opDel
		cl.write(o, 1)
	}
	cl.w.h.add(o)
}

// setAdd writes a fresh key of the set keyspace through n.
func (cl *client) setAdd(n *proc.Node) *op {
	cl.seq++
	o := &op{Client: cl.id, Node: n.Name, Kind: opSet, Key: fmt.Sprintf("s/c%d-%d", cl.id, cl.seq), Value: "v"}
	cl.sendWrite(n, o, 1)
	cl.w.h.add(o)
	return o
}

// counterInc adds one to this client's counter.
//
// The idempotency check. The counter key has exactly one writer, this
// client, which always knows the counter's acknowledged value v and
// mod_index i. An increment is PUT ?cas=i with value v+1 and the
// idempotency key "<run>-ctr<client>-<v+1>", named after the logical step,
// so every resend of the same step carries the same key, and the step is
// resent (in this turn, or the next turn if the cluster is unavailable)
// until its outcome is definite; attempts time out after ctrTimeout, so
// during faults several copies of a step are in flight at once. Hence:
//   - An attempt may apply at most once: cas on i can succeed only once,
//     and a resend of an applied step must be answered from the
//     idempotency table with the original 200 and index.
//   - So a 409 cas_failed on the counter is always a violation: nobody else
//     writes the key, so the index moved only if an earlier attempt of this
//     same step applied, and then its resend had to replay that success.
//   - At the end, after pending steps are resolved, the counter must read
//     exactly v, at exactly mod_index i: a write applied twice, or applied
//     but answered as failed, or lost, shows up as a different value or
//     index.
//
// Every attempt chain is also one op in the porcupine history.
func (cl *client) counterInc() {
	o := cl.ctrPending
	if o == nil {
		next := cl.ctrValue + 1
		o = &op{Client: cl.id, Node: cl.node.Name, Kind: opCtr, Key: cl.ctrKey, Value: strconv.FormatUint(next, 10),
			HasCAS: true, CAS: cl.ctrIndex, RID: fmt.Sprintf("%s-ctr%d-%d", cl.w.run, cl.id, next)}
	}
	cl.write(o, 3)
	cl.settleCounter(o)
}

// settleCounter files an increment's outcome; an unknown one stays pending.
func (cl *client) settleCounter(o *op) {
	switch o.Outcome {
	case outcomeUnknown:
		cl.ctrPending = o
		return
	case outcomeOK:
		if o.CASFailed {
			cl.ctrErrors = append(cl.ctrErrors, fmt.Sprintf(
				"counter %s: step to %s (idempotency key %s, %d attempts) answered 409 cas_failed with index %d, but this client "+
					"is the key's only writer and expected index %d: an earlier attempt of the same step must have applied, "+
					"and its resend should have replayed that success", o.Key, o.Value, o.RID, o.Attempts, o.Index, o.CAS))
			// Resynchronise so later steps can still be checked.
			cl.ctrValue, _ = strconv.ParseUint(o.Value, 10, 64)
			cl.ctrIndex = o.Index
		} else {
			cl.ctrValue++
			cl.ctrIndex = o.Index
		}
	}
	cl.ctrPending = nil
	cl.w.h.add(o)
}

// write sends a logical write through the client's node; see sendWrite.
func (cl *client) write(o *op, maxAttempts int) { cl.sendWrite(cl.node, o, maxAttempts) }

// sendWrite sends o through n, continuing o's attempt chain. It retries
// only with an idempotency key, and only while the outcome is not definite:
// once any attempt's outcome was unknown, a later 503 does not make the
// whole op definite, as the earlier attempt may still have applied.
func (cl *client) sendWrite(n *proc.Node, o *op, maxAttempts int) {
	method, path := http.MethodPut, "/kv/"+o.Key
	if o.Kind == opDel {
		method = http.MethodDelete
	}
	if o.HasCAS {
		path += "?cas=" + strconv.FormatUint(o.CAS, 10)
	}
	sawUnknown := o.Outcome == outcomeUnknown
	for try := 0; try < maxAttempts; try++ {
		if try > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		timeout := opTimeout
		if o.Kind == opCtr {
			timeout = ctrTimeout
		}
		a := cl.send(method, n.URL(path), []byte(o.Value), o.RID, timeout)
		if o.Attempts == 0 {
			o.Call = a.call
		}
		o.Attempts++
		o.Node = n.Name
		res := a.classify(o.Kind)
		a.fill(o)
		switch {
		case res == outcomeOK:
			o.Outcome = outcomeOK
			cl.noteIndex(o)
			return
		case res == outcomeUnknown:
			sawUnknown = true
		case !sawUnknown:
			o.Outcome = outcomeFail
			return
		}
		o.Outcome = outcomeUnknown
		if o.RID == "" {
			return
		}
	}
}

// read is a linearizable GET of key through n.
func (cl *client) read(n *proc.Node, key string) *op {
	o := &op{Client: cl.id, Node: n.Name, Kind: opGet, Key: key}
	a := cl.send(http.MethodGet, n.URL("/kv/"+key+"?consistency=linearizable"), nil, "", opTimeout)
	o.Call, o.Attempts = a.call, 1
	o.Outcome = a.classify(opGet)
	a.fill(o)
	if o.Outcome == outcomeOK {
		cl.noteIndex(o)
	}
	return o
}

// noteIndex remembers the key's mod_index from a definite answer.
func (cl *client) noteIndex(o *op) {
	switch {
	case o.CASFailed:
		cl.lastIndex[o.Key] = o.Index
	case o.Kind == opDel:
		cl.lastIndex[o.Key] = 0
	case o.Kind == opGet && !o.Present:
		cl.lastIndex[o.Key] = 0
	default:
		cl.lastIndex[o.Key] = o.Index
	}
}

// attempt is one HTTP exchange.
type attempt struct {
	call, ret int64
	status    int
	code      string
	index     uint64 // JSON "index", or X-Raft-Index on raw reads
	body      []byte
	servedBy  string
	replayed  bool
	err       error
	// wrote: some attempt of this exchange wrote the request to a
	// connection. Go's Transport resends a request carrying an
	// Idempotency-Key (and any GET) on a fresh connection when a reused one
	// breaks before the answer, and then returns the resend's error: a
	// dial error after the first copy reached the server (and may have been
	// applied). Only an exchange that never wrote is "not sent".
	wrote bool
	// noRetryAfter: a 503 without Retry-After, which the contract requires.
	noRetryAfter bool
}

// send makes one HTTP exchange with url (a node's URL and path). The
// exchange may be several attempts inside Go's Transport (see
// attempt.wrote); it counts as one op attempt spanning all of them.
func (cl *client) send(method, url string, body []byte, rid string, timeout time.Duration) attempt {
	h := cl.w.h
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Set on every attempt that started writing, even one that failed: the
	// Transport calls WroteRequest from a deferred call in Request.write and
	// waits for the write to end before it resends, so the flag is final
	// when Do returns an error.
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
	})
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		panic(err) // our own URL
	}
	if rid != "" {
		req.Header.Set("Idempotency-Key", rid)
	}
	a := attempt{call: h.now()}
	resp, err := cl.http.Do(req)
	if err == nil {
		a.body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
	}
	a.ret = h.now()
	a.wrote = wrote.Load()
	if err != nil {
		a.err = err
		return a
	}
	a.status = resp.StatusCode
	a.noRetryAfter = a.status == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == ""
	a.servedBy = resp.Header.Get("X-Raft-Served-By")
	a.replayed = resp.Header.Get("X-Raft-Replayed") != ""
	if method == http.MethodGet && a.status == http.StatusOK {
		a.index, _ = strconv.ParseUint(resp.Header.Get("X-Raft-Index"), 10, 64)
		return a
	}
	var j struct {
		Code  string `json:"code"`
		Index uint64 `json:"index"`
	}
	if json.Unmarshal(a.body, &j) == nil {
		a.code, a.index = j.Code, j.Index
	}
	return a
}

// classify maps an attempt to an outcome under the status contract.
func (a attempt) classify(kind string) outcome {
	if a.err != nil {
		if notSent(a.err) && !a.wrote {
			return outcomeFail
		}
		return outcomeUnknown
	}
	switch {
	case a.status == http.StatusOK:
		return outcomeOK
	case a.status == http.StatusNotFound && a.code == "key_not_found" && (kind == opGet || kind == opDel):
		return outcomeOK
	case a.status == http.StatusConflict && a.code == "cas_failed" && a.hasCAS(kind):
		return outcomeOK
	case a.status == http.StatusBadGateway, a.status == http.StatusGatewayTimeout:
		if kind == opGet || kind == opScan {
			return outcomeFail // a read that failed changed nothing
		}
		return outcomeUnknown
	case a.status == http.StatusServiceUnavailable, a.status >= 400 && a.status < 500:
		return outcomeFail
	}
	return outcomeUnknown // 500 and anything else: assume the worst
}

func (a attempt) hasCAS(kind string) bool { return kind == opCAS || kind == opCtr }

// expected reports whether the status is one the contract allows for a
// workload request (a 400 or 500 means a harness or server bug).
func (a attempt) expected(kind string) bool {
	if a.err != nil {
		return true
	}
	if a.noRetryAfter {
		return false
	}
	switch a.status {
	case http.StatusOK, http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return true
	case http.StatusNotFound:
		return a.code == "key_not_found" && (kind == opGet || kind == opDel)
	case http.StatusConflict:
		return a.code == "cas_failed" && a.hasCAS(kind)
	}
	return false
}

// fill copies the attempt's answer into o.
func (a attempt) fill(o *op) {
	o.Return, o.Status, o.Code, o.ServedBy, o.Replayed = a.ret, a.status, a.code, a.servedBy, a.replayed
	o.Err = ""
	if a.err != nil {
		o.Err = a.err.Error()
		if notSent(a.err) && a.wrote {
			o.Err += " (after the Transport had sent the request on a connection that broke: resent, so the outcome is unknown)"
		}
	}
	o.Unexpected = o.Unexpected || !a.expected(o.Kind)
	o.Present, o.Out, o.Index, o.CASFailed = false, "", 0, false
	switch {
	case a.err != nil:
	case a.status == http.StatusOK:
		o.Present, o.Index = true, a.index
		if o.Kind == opGet {
			o.Out = string(a.body)
		}
	case a.status == http.StatusConflict && a.code == "cas_failed":
		o.CASFailed, o.Index = true, a.index
	}
}

// notSent reports an error from before the request left: the connection
// was never made, so nothing can have been applied. That holds for the
// whole exchange only if no earlier attempt wrote it (attempt.wrote).
func notSent(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// burstReads sends n concurrent linearizable reads of random register keys
// through node, each from its own client, recorded like any other op. The
// returned channel closes when all have returned.
func (w *workload) burstReads(node *proc.Node, n int) <-chan struct{} {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		cl := w.newBurstClient(node)
		key := w.keys[i%len(w.keys)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.h.add(cl.read(node, key))
		}()
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}

// newBurstClient makes a client outside the steady workload.
func (w *workload) newBurstClient(node *proc.Node) *client {
	cl := w.newClient(w.opts.clients+2+w.bursts, node)
	w.bursts++
	return cl
}

// burstCounters starts n clients pinned to node, each taking one step on
// its own counter and resending it until the outcome is definite (or the
// workload stops). Fired at a leader that is about to lose its quorum,
// the steps sit uncommitted in its log, come back as unknown, and may
// commit later while their clients resend: the case idempotency keys
// exist for.
func (w *workload) burstCounters(node *proc.Node, n int) {
	for range n {
		cl := w.newBurstClient(node)
		w.extra = append(w.extra, cl)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for {
				cl.counterInc()
				if cl.ctrPending == nil {
					return
				}
				select {
				case <-w.stopCh:
					return
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
	}
}

// counterClients are the clients that own a counter.
func (w *workload) counterClients() []*client {
	return append(slices.Clone(w.clients), w.extra...)
}

// finishCounters resolves pending increments by resending them until their
// outcome is definite, then reads every counter (linearizably, recorded in
// the history) and checks it against the acknowledged count. It returns
// the problems found.
func (w *workload) finishCounters(timeout time.Duration) []string {
	var problems []string
	if !w.opts.cas || !w.opts.idem {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for _, cl := range w.counterClients() {
		for cl.ctrPending != nil && time.Now().Before(deadline) {
			cl.write(cl.ctrPending, 1)
			cl.settleCounter(cl.ctrPending)
			if cl.ctrPending != nil {
				time.Sleep(100 * time.Millisecond)
			}
		}
		if o := cl.ctrPending; o != nil {
			w.h.add(o)
			problems = append(problems, fmt.Sprintf("counter %s: step to %s still unknown after %v of resends", o.Key, o.Value, timeout))
			continue
		}
		problems = append(problems, cl.ctrErrors...)
		o := w.finalRead(cl.ctrKey, deadline)
		switch {
		case o == nil:
			problems = append(problems, fmt.Sprintf("counter %s: no successful read", cl.ctrKey))
		case cl.ctrValue == 0 && !o.Present:
		case !o.Present || o.Out != strconv.FormatUint(cl.ctrValue, 10) || o.Index != cl.ctrIndex:
			problems = append(problems, fmt.Sprintf("counter %s: reads %q at mod_index %d (present %v), want %d acknowledged increments at mod_index %d",
				cl.ctrKey, o.Out, o.Index, o.Present, cl.ctrValue, cl.ctrIndex))
		}
	}
	return problems
}

// finalRead reads key linearizably, trying every node until one answers
// definitely; the op joins the history. nil if none did by deadline.
func (w *workload) finalRead(key string, deadline time.Time) *op {
	for i := 0; time.Now().Before(deadline); i++ {
		o := w.checker.read(w.c.Nodes[i%len(w.c.Nodes)], key)
		if o.Outcome == outcomeOK {
			w.h.add(o)
			w.present[key] = o.Present
			return o
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// counterStats sums acknowledged increments over the clients.
func (w *workload) counterStats() (acked uint64) {
	for _, cl := range w.counterClients() {
		acked += cl.ctrValue
	}
	return acked
}
