package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// WatchConfig describes one watch run (RunWatch): Watchers streams on
// Prefix, opened round-robin over Targets and idle until all are open;
// then Writers workers put keys under Prefix for Duration (at most
// MaxWrites puts; with Rate > 0 paced to Rate puts per second over all
// writers), and every watcher must receive every acknowledged put exactly
// once, in order.
//
// raftkv watchers are GET /watch/{Prefix} (Server-Sent Events); etcd
// watchers are its v3 JSON gateway's POST /v3/watch with key = Prefix and
// range_end = the prefix's end (one newline-delimited JSON message per
// batch of events, keys and values in base64). Writes are the kv
// workload's puts (raftkv PUT /kv/{key}, etcd POST /v3/kv/put).
type WatchConfig struct {
	Targets  []string
	Kind     Kind
	Watchers int // streams, spread round-robin over Targets
	Writers  int // concurrent writers, one put in flight each
	// Rate, when > 0, is the offered write rate in puts per second over
	// all Writers together: put k (from 0) is not sent before
	// k / Rate seconds into the writing window, and none is sent whose
	// time falls at or after its end, so a run makes at most
	// ceil(Rate × Duration) puts (fewer if the writers cannot keep up:
	// late puts are sent at once, not skipped). 0: each writer puts as
	// fast as its answers come (closed loop).
	Rate      float64
	Duration  time.Duration // writing time
	MaxWrites int64         // bound on puts (sizes the acknowledgement table)
	Keys      int           // key space of the puts
	ValueSize int           // bytes per put value
	Prefix    string        // watched prefix, and the prefix of every key written
	Timeout   time.Duration // per put, and to open each stream
	// Drain bounds how long, after the last put was acknowledged, the
	// watchers may take to receive its event; a run that needs longer is
	// failed (events lost or too late to count).
	Drain time.Duration
	// Pids are the server processes whose resident memory (VmRSS of
	// /proc/PID/status, summed) is read with no watcher and with Watchers
	// idle ones, each after it settles (SettleRSS); none: no memory
	// figure.
	Pids []int
	// Settle bounds each wait for the memory to settle.
	Settle   time.Duration
	Seed     uint64
	Progress io.Writer // a line per second; nil: none
}

// DefaultWatchConfig is the benchmark: 1,000 watchers, writes at
// c=16 for 10 s.
func DefaultWatchConfig() WatchConfig {
	return WatchConfig{
		Targets:   []string{"http://127.0.0.1:8000"},
		Kind:      KindRaftkv,
		Watchers:  1000,
		Writers:   16,
		Duration:  10 * time.Second,
		MaxWrites: 1_000_000,
		Keys:      10000,
		ValueSize: 100,
		Prefix:    "watchbench/",
		Timeout:   10 * time.Second,
		Drain:     60 * time.Second,
		Settle:    60 * time.Second,
		Seed:      1,
	}
}

// Validate checks c and returns the parsed targets.
func (c *WatchConfig) Validate() ([]*url.URL, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	targets := checkTargets(c.Kind, c.Targets, bad)
	if c.Watchers < 1 || c.Watchers > 100_000 {
		bad("watchers %d: want 1..100000", c.Watchers)
	}
	if c.Writers < 1 {
		bad("writers %d: want at least 1", c.Writers)
	}
	if !(c.Rate >= 0 && c.Rate <= 1e6) { // also rejects NaN
		bad("rate %v: want puts per second in [0, 1000000] (0: unpaced)", c.Rate)
	}
	if c.Duration <= 0 {
		bad("duration %s: want > 0", c.Duration)
	}
	if c.MaxWrites < 1 || c.MaxWrites > 100_000_000 {
		bad("max writes %d: want 1..100000000", c.MaxWrites)
	}
	if c.Keys < 1 {
		bad("key space %d: want at least 1", c.Keys)
	}
	if c.ValueSize < 0 {
		bad("value size %d: want ≥ 0", c.ValueSize)
	}
	if c.Prefix == "" {
		bad("an empty prefix would watch every key: give one")
	}
	if c.Timeout <= 0 || c.Drain <= 0 || c.Settle <= 0 {
		bad("timeout %s, drain %s, settle %s: want each > 0", c.Timeout, c.Drain, c.Settle)
	}
	for _, p := range c.Pids {
		if p < 1 {
			bad("pid %d: want a process id", p)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return targets, nil
}

// WatchResult is the outcome of a watch run. Rates count the events
// received by all watchers together.
type WatchResult struct {
	Kind     Kind     `json:"target_kind"`
	Targets  []string `json:"targets"`
	Watchers int      `json:"watchers"` // streams opened, round-robin over the targets
	Writers  int      `json:"writers"`
	Rate     float64  `json:"rate"` // offered puts/s (WatchConfig.Rate); 0: unpaced, closed loop
	Keys     int      `json:"keys"`
	Value    int      `json:"value_size"`
	Prefix   string   `json:"prefix"`

	WriteSeconds float64 `json:"write_s"`       // the writing window
	Writes       int64   `json:"writes"`        // acknowledged puts
	WriteErrors  int64   `json:"write_errors"`  // puts that failed (any fails the run)
	WritesPerSec float64 `json:"writes_per_s"`  // Writes / WriteSeconds
	WriteLat     Latency `json:"write_latency"` // put round trips, ms

	// Events is every event received by every watcher; EventsInWindow
	// those received within the writing window; EventsPerSec is
	// EventsInWindow / WriteSeconds, the delivered rate while writing.
	Events         int64   `json:"events"`
	EventsInWindow int64   `json:"events_in_window"`
	EventsPerSec   float64 `json:"events_per_s"`
	// DrainMs is from the end of the writing window to the moment the
	// last watcher received the last event; EventsPerSecAll is Events
	// over the writing window plus the drain.
	DrainMs         float64 `json:"drain_ms"`
	EventsPerSecAll float64 `json:"events_per_s_with_drain"`

	// Complete: every watcher received exactly the acknowledged puts'
	// events (same count, same set, strictly increasing indexes).
	Complete   bool     `json:"complete"`
	Incomplete int      `json:"incomplete_watchers"`
	Problems   []string `json:"problems,omitempty"` // the first few

	// Latency is from a put's acknowledgement (its answer read by the
	// writer) to its event's arrival at a watcher, one sample per
	// (watcher, event), ms. Early counts events that arrived before their
	// put's answer was read (recorded as 0).
	Latency Latency `json:"event_latency"`
	// LatencyByTarget is Latency of the watchers on each target, in
	// Targets order (a follower delivers an event when it applies it).
	LatencyByTarget []Latency `json:"event_latency_by_target"`
	Early           int64     `json:"early_events"`
	Unresolved      int64     `json:"unresolved_events"` // no latency sample: matched no acknowledged put

	// Memory, when Pids were given: the servers' summed VmRSS with no
	// watcher (Before) and with every watcher open and idle (Idle), each
	// read once it settled; PerWatcherKiB = (Idle - Before) / Watchers.
	Pids          []int   `json:"pids,omitempty"`
	RSSBeforeKiB  []int64 `json:"rss_before_kib,omitempty"`
	RSSIdleKiB    []int64 `json:"rss_idle_kib,omitempty"`
	RSSAfterKiB   []int64 `json:"rss_after_kib,omitempty"` // after the writes, unsettled
	PerWatcherKiB float64 `json:"kib_per_idle_watcher"`
	RSSSettled    bool    `json:"rss_settled"`
	SettleMs      float64 `json:"settle_ms"` // both settles together

	OpenMs     float64 `json:"open_ms"` // opening every stream
	CPUSeconds float64 `json:"cpu_seconds"`

	Interrupted bool   `json:"interrupted"`
	Failed      bool   `json:"failed"`
	Failure     string `json:"failure,omitempty"`
}

// ackTable maps a put's index to when its answer was read (Unix ns), so a
// watcher can match each event to its put. Indexes after base within the
// table's size use a lock-free slot; any other index (never expected:
// the table holds twice MaxWrites) an overflow map under a lock.
type ackTable struct {
	base uint64
	t    []atomic.Int64
	mu   sync.Mutex
	over map[uint64]int64
}

func newAckTable(base uint64, size int64) *ackTable {
	return &ackTable{base: base, t: make([]atomic.Int64, size), over: map[uint64]int64{}}
}

func (a *ackTable) put(idx uint64, ns int64) {
	if idx > a.base && idx-a.base <= uint64(len(a.t)) {
		a.t[idx-a.base-1].Store(ns)
		return
	}
	a.mu.Lock()
	a.over[idx] = ns
	a.mu.Unlock()
}

// get is the acknowledgement time of idx, 0 if none (yet).
func (a *ackTable) get(idx uint64) int64 {
	if idx > a.base && idx-a.base <= uint64(len(a.t)) {
		return a.t[idx-a.base-1].Load()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.over[idx]
}

// latShards are the event-latency histograms, a few watchers per shard
// (a Histogram is ~60 KB: one per watcher would cost 60 MB), and
// latShardsPerTarget shards for the watchers of each target, so latency
// is also reported per node.
type latShards struct {
	mu sync.Mutex
	h  Histogram
}

const latShardsPerTarget = 8

// maxPending bounds the events a watcher keeps for matching later (those
// that arrived before their put's answer was read).
const maxPending = 1 << 16

type pendingEvent struct {
	idx  uint64
	recv int64
}

// stream is one watcher: its connection and everything it records.
type stream struct {
	id     int
	target *url.URL
	kind   Kind
	body   io.ReadCloser
	start  uint64 // the position it watches after

	count    atomic.Int64  // events received
	last     atomic.Uint64 // the last event's index (read by the drain wait)
	inWindow int64
	hash     uint64
	lastRecv int64 // Unix ns
	early    int64
	pending  []pendingEvent
	dropped  int64 // pending events beyond maxPending: no latency sample
	err      error
	ended    atomic.Bool // read returned (err says why, unless the run ended it)
}

// watchRun is the state the streams share.
type watchRun struct {
	cfg      *WatchConfig
	acks     atomic.Pointer[ackTable]
	windowNs atomic.Int64 // events received before this count as in the window
	targets  int          // streams are on target id % targets
	lat      []latShards  // latShardsPerTarget per target, in target order
}

func newWatchRun(cfg *WatchConfig, targets int) *watchRun {
	r := &watchRun{cfg: cfg, targets: targets, lat: make([]latShards, targets*latShardsPerTarget)}
	r.windowNs.Store(1<<63 - 1)
	return r
}

func (s *stream) record(r *watchRun, idx uint64, recv int64) error {
	if last := s.last.Load(); idx <= last {
		return fmt.Errorf("event at index %d after %d: repeated or out of order", idx, last)
	}
	s.hash += mix64(idx)
	s.lastRecv = recv
	if recv < r.windowNs.Load() {
		s.inWindow++
	}
	acks := r.acks.Load()
	ack := int64(0)
	if acks != nil {
		ack = acks.get(idx)
	}
	switch {
	case ack == 0 && len(s.pending) < maxPending:
		s.pending = append(s.pending, pendingEvent{idx, recv})
	case ack == 0:
		s.dropped++
	default:
		s.sample(r, recv-ack)
	}
	s.count.Add(1)
	s.last.Store(idx)
	return nil
}

func (s *stream) sample(r *watchRun, d int64) {
	if d < 0 {
		s.early++
		d = 0
	}
	sh := &r.lat[(s.id%r.targets)*latShardsPerTarget+(s.id/r.targets)%latShardsPerTarget]
	sh.mu.Lock()
	sh.h.Record(time.Duration(d))
	sh.mu.Unlock()
}

// open sends the watch request and reads until the system confirms the
// watch (raftkv's opening comment, etcd's created message).
func (s *stream) open(ctx context.Context, client *http.Client, prefix string, br *bufio.Reader, sp *sseParser) error {
	u := &url.URL{Scheme: s.target.Scheme, Host: s.target.Host}
	var req *http.Request
	var err error
	if s.kind == KindEtcd {
		u.Path = "/v3/watch"
		body := fmt.Sprintf(`{"create_request":{"key":%q,"range_end":%q}}`,
			base64.StdEncoding.EncodeToString([]byte(prefix)), base64.StdEncoding.EncodeToString(prefixEnd([]byte(prefix))))
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader([]byte(body)))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
	} else {
		u.Path = "/watch/" + prefix
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	}
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxSample))
		resp.Body.Close()
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	s.body = resp.Body
	br.Reset(resp.Body)
	var long []byte
	for range 100 { // the confirmation is the first message
		l, err := readLine(br, &long)
		if err != nil {
			return fmt.Errorf("before the watch was confirmed: %w", err)
		}
		if s.kind == KindEtcd {
			_, created, start, err := etcdWatchLine(l, nil)
			if err != nil {
				return err
			}
			if created {
				s.start = start
				return nil
			}
			continue
		}
		if _, err := sp.line(l); err != nil {
			return err
		}
		if sp.started {
			s.start = sp.start
			return nil
		}
	}
	return errors.New("no confirmation in the stream's first 100 lines")
}

// readLine is the next line of br without its line end; a line longer
// than br's buffer is gathered in *long. The slice is valid until the
// next call.
func readLine(br *bufio.Reader, long *[]byte) ([]byte, error) {
	l, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		*long = append((*long)[:0], l...)
		for errors.Is(err, bufio.ErrBufferFull) {
			l, err = br.ReadSlice('\n')
			*long = append(*long, l...)
		}
		l = *long
	}
	if err != nil {
		return nil, err
	}
	l = l[:len(l)-1]
	if n := len(l); n > 0 && l[n-1] == '\r' {
		l = l[:n-1]
	}
	return l, nil
}

// read consumes the stream until it ends (the run cancels it) or breaks
// the benchmark's rules; it always returns why it stopped.
func (s *stream) read(r *watchRun, br *bufio.Reader, sp *sseParser) error {
	var long []byte
	var revs []uint64
	for {
		l, err := readLine(br, &long)
		if err != nil {
			return err
		}
		now := time.Now().UnixNano()
		if s.kind == KindEtcd {
			var created bool
			revs, created, _, err = etcdWatchLine(l, revs[:0])
			if err == nil && created {
				err = errors.New("a second created message")
			}
			for _, idx := range revs {
				if err != nil {
					break
				}
				err = s.record(r, idx, now)
			}
		} else {
			var idx uint64
			if idx, err = sp.line(l); err == nil && idx > 0 {
				err = s.record(r, idx, now)
			}
		}
		if err != nil {
			return err
		}
	}
}

// rssSum reads the VmRSS of each pid.
func rssSum(pids []int) ([]int64, int64, error) {
	each := make([]int64, len(pids))
	var sum int64
	for i, p := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/status")
		if err != nil {
			return nil, 0, err
		}
		if each[i], err = parseVmRSS(b); err != nil {
			return nil, 0, fmt.Errorf("pid %d: %w", p, err)
		}
		sum += each[i]
	}
	return each, sum, nil
}

// Settling: memory is read every settleEvery, and it has settled when the
// last settleSamples readings (settleEvery × (settleSamples-1) = 3 s)
// differ by at most settleTol of the largest, or by settleMinKiB.
const (
	settleEvery   = 250 * time.Millisecond
	settleSamples = 13
	settleTol     = 0.005
	settleMinKiB  = 512
)

// settled reports whether the readings in window (all taken settleEvery
// apart) count as stable.
func settled(window []int64) bool {
	if len(window) < settleSamples {
		return false
	}
	w := window[len(window)-settleSamples:]
	lo, hi := slices.Min(w), slices.Max(w)
	return float64(hi-lo) <= max(settleTol*float64(hi), settleMinKiB)
}

// SettleRSS polls read every settleEvery until the readings are stable
// (settled) or limit passes, and returns the last reading: per process
// and summed, whether it settled, and how long it took.
func SettleRSS(ctx context.Context, read func() ([]int64, int64, error), limit time.Duration) (each []int64, sum int64, ok bool, took time.Duration, err error) {
	return settleRSS(ctx, read, limit, settleEvery)
}

// settleRSS is SettleRSS reading every `every` (tests: faster).
func settleRSS(ctx context.Context, read func() ([]int64, int64, error), limit, every time.Duration) (each []int64, sum int64, ok bool, took time.Duration, err error) {
	start := time.Now()
	var sums []int64
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; ; i++ {
		if each, sum, err = read(); err != nil {
			return nil, 0, false, time.Since(start), err
		}
		sums = append(sums, sum)
		if settled(sums) {
			return each, sum, true, time.Since(start), nil
		}
		if time.Since(start) >= limit || i >= int(limit/every)+1 {
			return each, sum, false, time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return each, sum, false, time.Since(start), ctx.Err()
		case <-tick.C:
		}
	}
}

// pacer spreads puts over the writing window at a fixed rate: slot k
// (from 0, claimed in order by whichever writer asks next) is due at
// start + k/rate. A nil pacer (rate 0) never waits.
type pacer struct {
	start, end time.Time
	rate       float64
	next       atomic.Int64
}

func newPacer(start, end time.Time, rate float64) *pacer {
	if rate <= 0 {
		return nil
	}
	return &pacer{start: start, end: end, rate: rate}
}

// due is when slot k may be sent.
func (p *pacer) due(k int64) time.Time {
	return p.start.Add(time.Duration(float64(k) * float64(time.Second) / p.rate))
}

// wait claims the next slot and waits until it is due; false if it falls
// at or after the end of the window (no more puts) or ctx ends first. A
// slot already due (the writers fell behind) returns at once. Bounded by
// the window's end.
func (p *pacer) wait(ctx context.Context) bool {
	if p == nil {
		return true
	}
	due := p.due(p.next.Add(1) - 1)
	if !due.Before(p.end) {
		return false
	}
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// RunWatch performs one watch run; it returns an error only when the run
// could not be made (bad configuration, a stream could not be opened).
// Everything it waits for is bounded: opening by Timeout per stream (and
// 2 × Timeout + 1 ms per watcher in all), writing by Duration and
// MaxWrites, the drain by Drain, each settle by Settle.
func RunWatch(ctx context.Context, cfg WatchConfig) (*WatchResult, error) {
	targets, err := cfg.Validate()
	if err != nil {
		return nil, err
	}
	res := &WatchResult{
		Kind: cfg.Kind, Watchers: cfg.Watchers, Writers: cfg.Writers, Rate: cfg.Rate, Keys: cfg.Keys, Value: cfg.ValueSize,
		Prefix: cfg.Prefix, Pids: cfg.Pids, RSSSettled: len(cfg.Pids) > 0,
	}
	for _, t := range targets {
		res.Targets = append(res.Targets, t.String())
	}
	progress := func(format string, a ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", a...)
		}
	}
	settle := func(what string) ([]int64, error) {
		each, sum, ok, took, err := SettleRSS(ctx, func() ([]int64, int64, error) { return rssSum(cfg.Pids) }, cfg.Settle)
		res.SettleMs += ms(took)
		res.RSSSettled = res.RSSSettled && ok
		if err == nil {
			progress("memory %s: %d KiB (%v), %s in %.1fs", what, sum, each, map[bool]string{true: "settled", false: "NOT settled"}[ok], took.Seconds())
		}
		return each, err
	}
	if len(cfg.Pids) > 0 {
		if res.RSSBeforeKiB, err = settle("with no watcher"); err != nil {
			return nil, err
		}
	}

	// The streams: one connection each, never reused, no proxy.
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		ResponseHeaderTimeout: cfg.Timeout,
		DisableCompression:    true,
		MaxIdleConnsPerHost:   -1,
		ReadBufferSize:        16 << 10,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	r := newWatchRun(&cfg, len(targets))
	sctx, stopStreams := context.WithCancel(ctx)
	defer stopStreams()

	streams := make([]*stream, cfg.Watchers)
	opened := make(chan error, cfg.Watchers)
	var readers sync.WaitGroup
	sem := make(chan struct{}, 32) // streams being opened at once
	t0 := time.Now()
	for i := range streams {
		s := &stream{id: i, target: targets[i%len(targets)], kind: cfg.Kind}
		streams[i] = s
		readers.Add(1)
		go func() {
			defer readers.Done()
			br := bufio.NewReaderSize(nil, 8<<10)
			var sp sseParser
			select {
			case sem <- struct{}{}:
			case <-sctx.Done():
				opened <- sctx.Err()
				return
			}
			// Opening (up to the confirmation) is bounded by Timeout; the
			// stream then lives until the run cancels sctx.
			octx, cancel := context.WithCancel(sctx)
			timer := time.AfterFunc(cfg.Timeout, cancel)
			err := s.open(octx, client, cfg.Prefix, br, &sp)
			if !timer.Stop() && err == nil {
				err = fmt.Errorf("not confirmed within %s", cfg.Timeout)
			}
			<-sem
			opened <- err
			if err != nil {
				cancel()
				if s.body != nil {
					s.body.Close()
				}
				return
			}
			defer cancel()
			defer s.body.Close()
			if err := s.read(r, br, &sp); sctx.Err() == nil {
				s.err = err // the stream ended or broke a rule before the run ended it
			}
			s.ended.Store(true)
		}()
	}
	openWait := 2*cfg.Timeout + time.Duration(cfg.Watchers)*time.Millisecond
	openLimit := time.NewTimer(openWait)
	defer openLimit.Stop()
	for n := 0; n < cfg.Watchers; n++ {
		select {
		case err := <-opened:
			if err != nil {
				stopStreams()
				readers.Wait()
				return nil, fmt.Errorf("opening watcher %d of %d: %w", n+1, cfg.Watchers, err)
			}
		case <-openLimit.C:
			stopStreams()
			readers.Wait()
			return nil, fmt.Errorf("only %d of %d watchers open after %s", n, cfg.Watchers, openWait)
		}
	}
	res.OpenMs = ms(time.Since(t0))
	progress("%d watchers open in %.1fs", cfg.Watchers, res.OpenMs/1000)
	if len(cfg.Pids) > 0 {
		if res.RSSIdleKiB, err = settle(fmt.Sprintf("with %d idle watchers", cfg.Watchers)); err != nil {
			stopStreams()
			readers.Wait()
			return nil, err
		}
		var before, idle int64
		for i := range res.RSSBeforeKiB {
			before += res.RSSBeforeKiB[i]
			idle += res.RSSIdleKiB[i]
		}
		res.PerWatcherKiB = float64(idle-before) / float64(cfg.Watchers)
	}

	// Every put's event comes after every stream's starting position.
	var base uint64
	for _, s := range streams {
		base = max(base, s.start)
	}
	acks := newAckTable(base, 2*cfg.MaxWrites+4096)
	r.acks.Store(acks)
	failed := func(format string, a ...any) (*WatchResult, error) {
		res.Failed, res.Failure = true, fmt.Sprintf(format, a...)
		return res, nil
	}

	// Writing.
	wcfg := DefaultConfig()
	wcfg.Kind, wcfg.Concurrency, wcfg.Keys, wcfg.ValueSize = cfg.Kind, cfg.Writers, cfg.Keys, cfg.ValueSize
	wcfg.Prefix, wcfg.Timeout, wcfg.Seed, wcfg.Targets = cfg.Prefix, cfg.Timeout, cfg.Seed, cfg.Targets
	b := newBuilder(&wcfg)
	wtr := newTransport(&wcfg, len(targets))
	defer wtr.CloseIdleConnections()
	cpu0 := processCPU()
	start := time.Now()
	end := start.Add(cfg.Duration)
	r.windowNs.Store(end.UnixNano())
	wctx, cancelWrites := context.WithDeadline(ctx, end.Add(cfg.Timeout+2*time.Second))
	defer cancelWrites()
	var tickets atomic.Int64
	pace := newPacer(start, end, cfg.Rate)
	type writerOut struct {
		n, errs int64
		hash    uint64
		maxIdx  uint64
		sample  string
	}
	outs := make([]writerOut, cfg.Writers)
	workers := make([]*worker, cfg.Writers)
	var wg sync.WaitGroup
	for i := range workers {
		w := newWorker(i, &wcfg, b, wtr, targets)
		workers[i] = w
		defer w.close()
		w.setParent(wctx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := &outs[i]
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(1000+i)))
			for wctx.Err() == nil && time.Now().Before(end) {
				if !pace.wait(wctx) {
					return // no slot left in the window, or cancelled
				}
				if tickets.Add(1) > cfg.MaxWrites {
					// The bound ends the window for everyone.
					r.windowNs.Store(min(r.windowNs.Load(), time.Now().UnixNano()))
					return
				}
				o := w.do(opWrite, rng.IntN(cfg.Keys))
				if o.interrupted {
					return
				}
				w.record(opWrite, &o, start)
				if !o.success() {
					out.errs++
					if out.sample == "" {
						out.sample = o.describe()
					}
					continue
				}
				idx, ok := writeIndex(cfg.Kind, o.head)
				if !ok {
					out.errs++
					if out.sample == "" {
						out.sample = "no index in the answer: " + truncate(string(o.head))
					}
					continue
				}
				acks.put(idx, o.end.UnixNano())
				out.n++
				out.hash += mix64(idx)
				out.maxIdx = max(out.maxIdx, idx)
			}
		}()
	}
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var prevEv int64
	countEvents := func() (n int64) {
		for _, s := range streams {
			n += s.count.Load()
		}
		return n
	}
	for waiting := true; waiting; {
		select {
		case <-writersDone:
			waiting = false
		case now := <-tick.C:
			var ok int64
			for _, w := range workers {
				ok += w.okN.Load()
			}
			ev := countEvents()
			progress("%6.1fs %8d writes %12d events/s %12d events", now.Sub(start).Seconds(), ok, ev-prevEv, ev)
			prevEv = ev
		}
	}
	writeEnd := time.Unix(0, r.windowNs.Load())
	res.WriteSeconds = writeEnd.Sub(start).Seconds()
	var hash, maxIdx uint64
	var writeHist Histogram
	for i, o := range outs {
		res.Writes += o.n
		res.WriteErrors += o.errs
		hash += o.hash
		maxIdx = max(maxIdx, o.maxIdx)
		writeHist.Merge(&workers[i].hist[opWrite])
		if o.sample != "" && len(res.Problems) < 5 {
			res.Problems = append(res.Problems, "write: "+o.sample)
		}
	}
	res.WriteLat = summarize(&writeHist)
	if res.WriteSeconds > 0 {
		res.WritesPerSec = float64(res.Writes) / res.WriteSeconds
	}

	// The drain: until every watcher has the last acknowledged put's
	// event or has ended, or Drain passed.
	drainLimit := time.Now().Add(cfg.Drain)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for ctx.Err() == nil && time.Now().Before(drainLimit) {
		behind := 0
		for _, s := range streams {
			// A stream that ended will not catch up: it is reported
			// below, and waiting for it would only spend the drain.
			if s.last.Load() < maxIdx && !s.ended.Load() {
				behind++
			}
		}
		if behind == 0 {
			break
		}
		select { // poll every 20 ms, bounded by drainLimit
		case <-ctx.Done():
		case <-poll.C:
		}
	}
	stopStreams()
	readers.Wait()
	res.CPUSeconds = (processCPU() - cpu0).Seconds()
	res.Interrupted = ctx.Err() != nil
	if len(cfg.Pids) > 0 {
		if res.RSSAfterKiB, _, err = rssSum(cfg.Pids); err != nil {
			return failed("reading memory after the run: %v", err)
		}
	}

	// Matching and checking.
	var lastRecv int64
	for _, s := range streams {
		res.Events += s.count.Load()
		res.EventsInWindow += s.inWindow
		res.Unresolved += s.dropped
		lastRecv = max(lastRecv, s.lastRecv)
		for _, p := range s.pending { // every acknowledgement is in by now
			if ack := acks.get(p.idx); ack != 0 {
				s.sample(r, p.recv-ack)
			} else {
				res.Unresolved++
			}
		}
		res.Early += s.early
		problem := ""
		switch {
		case s.err != nil:
			problem = s.err.Error()
		case s.count.Load() != res.Writes || s.hash != hash:
			problem = fmt.Sprintf("received %d events (last index %d), not the %d acknowledged puts (last index %d)", s.count.Load(), s.last.Load(), res.Writes, maxIdx)
		}
		if problem != "" {
			res.Incomplete++
			if len(res.Problems) < 5 {
				res.Problems = append(res.Problems, fmt.Sprintf("watcher %d (%s): %s", s.id, s.target.Host, problem))
			}
		}
	}
	var lat Histogram
	for t := range targets {
		var h Histogram
		for i := range latShardsPerTarget {
			h.Merge(&r.lat[t*latShardsPerTarget+i].h)
		}
		res.LatencyByTarget = append(res.LatencyByTarget, summarize(&h))
		lat.Merge(&h)
	}
	res.Latency = summarize(&lat)
	if res.WriteSeconds > 0 {
		res.EventsPerSec = float64(res.EventsInWindow) / res.WriteSeconds
	}
	if lastRecv > 0 {
		res.DrainMs = max(0, ms(time.Duration(lastRecv-writeEnd.UnixNano())))
		res.EventsPerSecAll = float64(res.Events) / (res.WriteSeconds + res.DrainMs/1000)
	}
	res.Complete = res.Incomplete == 0 && res.WriteErrors == 0 && res.Writes > 0
	switch {
	case res.Interrupted:
		return failed("interrupted")
	case res.Writes == 0:
		return failed("no put was acknowledged")
	case res.WriteErrors > 0:
		return failed("%d puts failed: every put must be acknowledged for the events to be checked", res.WriteErrors)
	case res.Incomplete > 0:
		return failed("%d of %d watchers did not receive exactly the %d acknowledged puts within the %s drain", res.Incomplete, cfg.Watchers, res.Writes, cfg.Drain)
	}
	return res, nil
}

// WriteJSON writes r as one JSON object on one line.
func (r *WatchResult) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteText writes r for a terminal.
func (r *WatchResult) WriteText(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "target       %s %v\n", r.Kind, r.Targets)
	pacing := "unpaced"
	if r.Rate > 0 {
		pacing = fmt.Sprintf("paced at %g puts/s", r.Rate)
	}
	fmt.Fprintf(&b, "watchers     %d on %q (opened in %.1fs), writers %d (%s), %d keys, %d-byte values\n", r.Watchers, r.Prefix, r.OpenMs/1000, r.Writers, pacing, r.Keys, r.Value)
	fmt.Fprintf(&b, "writes       %d acknowledged in %.2fs (%.0f/s), %d failed; p50 %.2f ms, p99 %.2f ms\n", r.Writes, r.WriteSeconds, r.WritesPerSec, r.WriteErrors, r.WriteLat.P50, r.WriteLat.P99)
	fmt.Fprintf(&b, "events       %.0f/s delivered while writing (%d); %d in all, %.0f/s with the drain of %.0f ms\n", r.EventsPerSec, r.EventsInWindow, r.Events, r.EventsPerSecAll, r.DrainMs)
	fmt.Fprintf(&b, "ack → event  p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms (%d samples, %d before the ack, %d unmatched)\n",
		r.Latency.P50, r.Latency.P99, r.Latency.P999, r.Latency.Max, r.Latency.Count, r.Early, r.Unresolved)
	for i, l := range r.LatencyByTarget {
		if len(r.LatencyByTarget) > 1 && i < len(r.Targets) {
			fmt.Fprintf(&b, "  watchers on %s: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", r.Targets[i], l.P50, l.P99, l.Max)
		}
	}
	if len(r.Pids) > 0 {
		fmt.Fprintf(&b, "memory       %.1f KiB per idle watcher (RSS %v → %v KiB%s)\n", r.PerWatcherKiB, r.RSSBeforeKiB, r.RSSIdleKiB, map[bool]string{true: "", false: ", NOT settled"}[r.RSSSettled])
	}
	fmt.Fprintf(&b, "complete     %v (%d watchers incomplete)\n", r.Complete, r.Incomplete)
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	if r.Failed {
		fmt.Fprintf(&b, "FAILED       %s\n", r.Failure)
	}
	_, err := w.Write(b.Bytes())
	return err
}
