package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// errClass classifies a request that got no HTTP answer.
type errClass int

const (
	classTimeout errClass = iota
	classRefused
	classOther
	numClasses
)

var classNames = [numClasses]string{"timeout", "connection_refused", "other"}

func (c errClass) String() string { return classNames[c] }

// classify sorts a transport error (one not caused by our own per-request
// timer or by the run ending; those are handled by the caller).
func classify(err error) errClass {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return classTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return classRefused
	}
	return classOther
}

// outcome is what one request came to.
type outcome struct {
	lat         time.Duration
	end         time.Time // when the answer was read
	status      int       // 0 when err != nil
	err         error     // no HTTP answer (or the body could not be read)
	class       errClass
	notFound    bool   // a read of an absent key: a valid answer, counted apart
	notApplied  bool   // a 200 to a transaction whose compare failed: counted as a failure
	head        []byte // start of the body (the worker's buffer; valid until its next request)
	interrupted bool   // cut off because the run ended: not counted at all
}

func (o *outcome) success() bool {
	return o.err == nil && !o.notApplied && (o.notFound || (o.status >= 200 && o.status < 300))
}

// maxSample bounds how much of an error body a sample keeps.
const maxSample = 200

// worker owns one in-flight request at a time and everything it records,
// so the hot path takes no lock; runs merge the workers at the end.
type worker struct {
	id      int
	b       *builder
	tr      *http.Transport
	targets []*url.URL
	next    int // round-robin position in targets
	timeout time.Duration
	kind    Kind
	rng     *rand.Rand
	st      *reqState
	buf     []byte // response head

	// Per-request timeout without a context and timer per request: ctx
	// lives until a request times out; timer (reset per request) cancels
	// it and signals fired.
	parent  context.Context
	ctx     context.Context
	cancelp atomic.Pointer[context.CancelFunc]
	timer   *time.Timer
	fired   chan struct{}

	// Measured counters: the atomics are read by the progress line while
	// running; everything else only after the run.
	okN, errN    atomic.Int64
	warm         atomic.Int64
	hist         [2]Histogram // successful requests by opKind
	ops          [2]int64     // measured requests (ok or not) by opKind
	notFound     int64
	status       map[int]int64
	statusSample map[int]string
	classes      [numClasses]int64
	classSample  [numClasses]string
	perSecond    []int64 // successes by second of the measured phase
}

func newWorker(id int, cfg *Config, b *builder, tr *http.Transport, targets []*url.URL) *worker {
	w := &worker{
		id:           id,
		b:            b,
		tr:           tr,
		targets:      targets,
		next:         id % len(targets),
		timeout:      cfg.Timeout,
		kind:         cfg.Kind,
		rng:          rand.New(rand.NewPCG(cfg.Seed, uint64(id))),
		st:           newReqState(),
		buf:          make([]byte, 4096),
		fired:        make(chan struct{}, 1),
		status:       map[int]int64{},
		statusSample: map[int]string{},
	}
	w.timer = time.AfterFunc(time.Hour, func() {
		(*w.cancelp.Load())()
		w.fired <- struct{}{}
	})
	w.timer.Stop()
	return w
}

// setParent makes requests run under p from now on.
func (w *worker) setParent(p context.Context) {
	if c := w.cancelp.Load(); c != nil {
		(*c)()
	}
	w.parent = p
	w.newCtx()
}

func (w *worker) newCtx() {
	ctx, cancel := context.WithCancel(w.parent)
	w.ctx = ctx
	w.cancelp.Store(&cancel)
}

func (w *worker) close() {
	w.timer.Stop()
	if c := w.cancelp.Load(); c != nil {
		(*c)()
	}
}

// do sends one request and reads its answer in full.
func (w *worker) do(op opKind, key int) outcome {
	target := w.targets[w.next]
	if w.next++; w.next == len(w.targets) {
		w.next = 0
	}
	req := w.b.fill(w.st, target, op, key).WithContext(w.ctx)

	var o outcome
	w.timer.Reset(w.timeout)
	start := time.Now()
	resp, err := w.tr.RoundTrip(req)
	if err == nil {
		o.status = resp.StatusCode
		o.head, err = readHead(resp.Body, w.buf)
		resp.Body.Close()
	}
	o.end = time.Now()
	o.lat = o.end.Sub(start)
	timedOut := false
	if !w.timer.Stop() {
		<-w.fired // the callback has cancelled w.ctx
		timedOut = true
		w.newCtx()
	}
	switch {
	case err == nil:
		o.notFound = w.isNotFound(op, o.status, o.head)
		o.notApplied = w.isNotApplied(op, o.status, o.head)
	case timedOut:
		o.err, o.class = err, classTimeout
	case w.parent.Err() != nil:
		o.interrupted = true
	default:
		o.err, o.class = err, classify(err)
	}
	if o.err != nil {
		o.status = 0
	}
	return o
}

var (
	raftkvNotFound = []byte(`"key_not_found"`)
	etcdKVs        = []byte(`"kvs"`)
)

// isNotFound: a read answered "no such key", which both systems do
// normally (raftkv: 404 key_not_found; etcd: 200 without kvs). It counts
// as a success, reported apart, so runs without -preload stay comparable.
func (w *worker) isNotFound(op opKind, status int, head []byte) bool {
	if op != opRead || w.b.workload != WorkloadKV {
		return false
	}
	if w.kind == KindEtcd {
		return status == http.StatusOK && !bytes.Contains(head, etcdKVs)
	}
	return status == http.StatusNotFound && bytes.Contains(head, raftkvNotFound)
}

var txnSucceeded = []byte(`"succeeded":true`)

// isNotApplied: a transaction answered 200 but "succeeded" is not true, so
// its compare failed and its puts did not run (both systems answer
// "succeeded":true near the start of the body when they did; etcd leaves
// the field out when false). In the txn workload every compare should
// hold (the keys were preloaded), so this is counted as a failure, with
// the body as the sample, rather than measured as a 3-operation
// transaction.
func (w *worker) isNotApplied(op opKind, status int, head []byte) bool {
	return (op == opBatch || w.b.workload == WorkloadTxn && op == opWrite) &&
		status == http.StatusOK && !bytes.Contains(head, txnSucceeded)
}

// readHead reads body to EOF, keeping its first len(buf) bytes in buf.
func readHead(body io.Reader, buf []byte) ([]byte, error) {
	n := 0
	for n < len(buf) {
		m, err := body.Read(buf[n:])
		n += m
		if err == io.EOF {
			return buf[:n], nil
		}
		if err != nil {
			return buf[:n], err
		}
	}
	_, err := io.Copy(io.Discard, body) // io.Discard reads into a pooled buffer
	return buf[:n], err
}

// record accounts a measured outcome of a run that started measuring at
// measureStart.
func (w *worker) record(op opKind, o *outcome, measureStart time.Time) {
	w.ops[op]++
	switch {
	case o.success():
		w.hist[op].Record(o.lat)
		if sec := int(o.end.Sub(measureStart) / time.Second); sec >= 0 {
			for len(w.perSecond) <= sec {
				w.perSecond = append(w.perSecond, 0)
			}
			w.perSecond[sec]++
		}
		if o.notFound {
			w.notFound++
		}
		w.okN.Add(1)
		return
	case o.err != nil:
		w.classes[o.class]++
		if w.classSample[o.class] == "" {
			w.classSample[o.class] = truncate(o.err.Error())
		}
	default:
		w.status[o.status]++
		if _, ok := w.statusSample[o.status]; !ok {
			w.statusSample[o.status] = truncate(string(bytes.TrimSpace(o.head)))
		}
	}
	w.errN.Add(1)
}

func truncate(s string) string {
	if len(s) > maxSample {
		return s[:maxSample] + "…"
	}
	return s
}

// describe is a one-line reason for a failed outcome.
func (o *outcome) describe() string {
	if o.err != nil {
		return fmt.Sprintf("%s: %s", o.class, truncate(o.err.Error()))
	}
	return fmt.Sprintf("HTTP %d: %s", o.status, truncate(string(bytes.TrimSpace(o.head))))
}

func newTransport(cfg *Config, hosts int) *http.Transport {
	return &http.Transport{
		Proxy: nil, // never a proxy from the environment: measure the servers
		DialContext: (&net.Dialer{
			Timeout:   cfg.Timeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSHandshakeTimeout: cfg.Timeout,
		// One request in flight per worker: at most Concurrency
		// connections per host, all kept alive between requests.
		MaxIdleConns:        cfg.Concurrency * hosts,
		MaxIdleConnsPerHost: cfg.Concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     32 << 10,
		ReadBufferSize:      32 << 10,
	}
}

// run is the shared state of one measured phase.
type run struct {
	ctx          context.Context
	measureStart time.Time
	measureEnd   time.Time // duration mode
	count        int64     // count mode
	tickets      atomic.Int64
	ratio        float64
	keys         int
}

func (w *worker) loop(r *run) {
	for r.ctx.Err() == nil {
		now := time.Now()
		measured := !now.Before(r.measureStart)
		if measured {
			if r.count > 0 {
				if r.tickets.Add(1) > r.count {
					return
				}
			} else if !now.Before(r.measureEnd) {
				return
			}
		}
		op := opRead
		if w.rng.Float64() < r.ratio {
			op = opWrite
		}
		key := w.rng.IntN(r.keys)
		o := w.do(op, key)
		if o.interrupted {
			return
		}
		if measured {
			w.record(op, &o, r.measureStart)
		} else {
			w.warm.Add(1)
		}
	}
}

// Run performs one benchmark run. It returns an error only when the run
// could not be made (bad configuration, preload failed); a run cut short
// by ctx returns what it measured, with Interrupted set.
//
// It always ends: in duration mode within Warmup + Duration + Timeout
// (plus a little) after the measured phase starts; on ctx's end at once.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	targets, err := cfg.Validate()
	if err != nil {
		return nil, err
	}
	// Lists and counts are reads, transactions writes.
	switch cfg.workload() {
	case WorkloadList, WorkloadCount:
		cfg.Ratio = 0
	case WorkloadTxn:
		cfg.Ratio = 1
	}
	b := newBuilder(&cfg)
	tr := newTransport(&cfg, len(targets))
	defer tr.CloseIdleConnections()

	workers := make([]*worker, cfg.Concurrency)
	for i := range workers {
		workers[i] = newWorker(i, &cfg, b, tr, targets)
		defer workers[i].close()
	}
	res := newResult(&cfg, targets)

	if cfg.Preload {
		for _, w := range workers {
			w.setParent(ctx)
		}
		if err := preload(ctx, &cfg, workers); err != nil {
			return nil, err
		}
		if ctx.Err() != nil {
			res.Interrupted = true
			return res, nil
		}
	}

	cpu0 := processCPU()
	t0 := time.Now()
	r := &run{
		measureStart: t0.Add(cfg.Warmup),
		count:        cfg.Requests,
		ratio:        cfg.Ratio,
		keys:         cfg.Keys,
	}
	var cancel context.CancelFunc
	if cfg.CountMode() {
		r.ctx, cancel = context.WithCancel(ctx)
	} else {
		r.measureEnd = r.measureStart.Add(cfg.Duration)
		// A backstop only: each request is already bounded by Timeout.
		r.ctx, cancel = context.WithDeadline(ctx, r.measureEnd.Add(cfg.Timeout+2*time.Second))
	}
	defer cancel()

	done := make(chan struct{})
	monitorDone := make(chan struct{})
	go func() {
		defer close(monitorDone)
		if cfg.Progress != nil {
			monitor(&cfg, r, workers, done)
		}
	}()

	var wg sync.WaitGroup
	for _, w := range workers {
		w.setParent(r.ctx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(r)
		}()
	}
	wg.Wait()
	end := time.Now()
	res.CPUSeconds = (processCPU() - cpu0).Seconds()
	close(done)
	<-monitorDone
	res.Interrupted = ctx.Err() != nil
	if end.After(r.measureStart) {
		res.elapsed = end.Sub(r.measureStart)
	}
	full := res.elapsed
	if !cfg.CountMode() {
		full = min(full, cfg.Duration)
	}
	res.collect(workers, int(full/time.Second))
	return res, nil
}

// monitor prints a progress line per second of the measured phase to
// cfg.Progress, until done is closed.
func monitor(cfg *Config, r *run, workers []*worker, done <-chan struct{}) {
	out := cfg.Progress
	if cfg.Warmup > 0 {
		fmt.Fprintf(out, "warmup %s (not counted)\n", cfg.Warmup)
		t := time.NewTimer(time.Until(r.measureStart))
		select {
		case <-done:
			t.Stop()
			return
		case <-t.C:
		}
		var warm int64
		for _, w := range workers {
			warm += w.warm.Load()
		}
		fmt.Fprintf(out, "warmup done: %d requests (%.0f/s)\n", warm, float64(warm)/cfg.Warmup.Seconds())
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var prevOK int64
	for {
		select {
		case <-done:
			return
		case now := <-tick.C:
			var okN, errN int64
			for _, w := range workers {
				okN += w.okN.Load()
				errN += w.errN.Load()
			}
			line := fmt.Sprintf("%6.1fs %9d ops/s %9d ops %6d errors", now.Sub(r.measureStart).Seconds(), okN-prevOK, okN, errN)
			if r.count > 0 {
				line += fmt.Sprintf("  (%d/%d requests)", okN+errN, r.count)
			}
			fmt.Fprintln(out, line)
			prevOK = okN
		}
	}
}

// preloadAttempts is how often preload tries each key.
const preloadAttempts = 3

// preload writes every key once, Concurrency requests at a time: each key
// with its own put, or with PreloadBatch > 1 in transactions of that many
// puts.
func preload(ctx context.Context, cfg *Config, workers []*worker) error {
	batch := cfg.preloadBatch()
	units := (cfg.Keys + batch - 1) / batch
	var next, done, failed atomic.Int64
	var mu sync.Mutex
	var lastErr string
	start := time.Now()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				u := next.Add(1) - 1
				if u >= int64(units) {
					return
				}
				op, first := opWrite, int(u)
				if batch > 1 {
					op, first = opBatch, int(u)*batch
				}
				n := int64(min(batch, cfg.Keys-first))
				var o outcome
				for range preloadAttempts {
					if o = w.do(op, first); o.interrupted {
						return
					}
					if o.success() {
						break
					}
				}
				if !o.success() {
					failed.Add(n)
					mu.Lock()
					lastErr = o.describe()
					mu.Unlock()
				}
				done.Add(n)
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	prev := int64(0)
	for waiting := true; waiting; {
		select {
		case <-finished:
			waiting = false
		case <-tick.C:
			d := done.Load()
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "preload %d/%d keys (%d keys/s, %d failed)\n", d, cfg.Keys, d-prev, failed.Load())
			}
			prev = d
		}
	}
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("preload: %d of %d keys could not be written after %d attempts each (last: %s)", f, cfg.Keys, preloadAttempts, lastErr)
	}
	if ctx.Err() == nil && done.Load() < int64(cfg.Keys) {
		return fmt.Errorf("preload: only %d of %d keys written", done.Load(), cfg.Keys)
	}
	if cfg.Progress != nil && ctx.Err() == nil {
		el := time.Since(start)
		fmt.Fprintf(cfg.Progress, "preload: %d keys written in %.2fs (%.0f keys/s)\n", cfg.Keys, el.Seconds(), float64(cfg.Keys)/el.Seconds())
	}
	return nil
}
