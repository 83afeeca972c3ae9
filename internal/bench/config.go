// Package bench is the engine of raftkv-bench, a closed-loop HTTP load
// generator in the spirit of redis-benchmark and etcd's benchmark tool. It
// drives either a raftkv cluster (PUT/GET /kv/{key}) or etcd through its v3
// JSON gateway (POST /v3/kv/put, /v3/kv/range) with the same workers, key
// choice, value bytes and accounting, so the two systems are measured
// identically.
//
// Each of Concurrency workers keeps exactly one request in flight on a
// keep-alive connection, choosing for each request a key uniformly from the
// key space and a write with probability Ratio, from its own deterministic
// random stream (Seed + worker id), and sending it to the targets in
// round-robin order.
//
// Workload picks what a request is. kv (the default) is the above: one-key
// puts and gets. The other workloads measure the multi-key surface, every
// request the same kind:
//   - list: the first ListLimit keys under Prefix, in key order
//     (raftkv GET /kv/{prefix}?recurse&limit=N; etcd POST /v3/kv/range with
//     range_end = the prefix's end and limit N);
//   - count: how many keys are under Prefix (raftkv
//     GET /kv/{prefix}?recurse&count; etcd range with count_only);
//   - txn: a 3-operation transaction: compare "key i exists" (mod_index > 0)
//     and, on success, put key i and key (i + Keys/2) mod Keys (raftkv
//     POST /txn; etcd POST /v3/kv/txn, compare MOD > 0 and two
//     request_put), i uniform as for kv.
//
// Reads of list and count use Consistency like kv reads.
//
// RunWatch (watch.go, raftkv-bench -workload watch) measures the change
// feed instead: WatchConfig.Watchers streams of one prefix (raftkv
// GET /watch/{prefix}, etcd's gateway POST /v3/watch) while writers put
// keys under it (as fast as answers come, or paced to WatchConfig.Rate
// puts per second, so two systems can be compared at the same offered
// load); it reports the events delivered per second, the time
// from each put's acknowledgement to its event at each watcher, and the
// servers' memory per idle watcher, and fails a run in which any watcher
// missed, repeated or reordered an acknowledged put.
package bench

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
)

// Kind is the kind of server under test.
type Kind string

// The supported target kinds.
const (
	KindRaftkv Kind = "raftkv"
	KindEtcd   Kind = "etcd"
)

// Read consistency levels (raftkv's names). For etcd, stale maps to a
// serializable range and the others to a linearizable one.
const (
	Linearizable = "linearizable"
	Leader       = "leader"
	Stale        = "stale"
)

// The workloads (see the package comment).
const (
	WorkloadKV    = "kv"
	WorkloadList  = "list"
	WorkloadCount = "count"
	WorkloadTxn   = "txn"
)

// MaxPreloadBatch is the most keys one preload transaction writes: etcd's
// default --max-txn-ops and raftkv's per-transaction operation limit (both
// 128).
const MaxPreloadBatch = 128

// Config describes one run.
type Config struct {
	Targets     []string      // base URLs, scheme://host:port
	Kind        Kind          // raftkv or etcd
	Concurrency int           // workers, one request in flight each
	Duration    time.Duration // measured time, unless Requests > 0
	Requests    int64         // total measured requests; > 0 wins over Duration
	Keys        int           // key space size
	ValueSize   int           // bytes per written value
	Ratio       float64       // fraction of writes, 0..1
	Consistency string        // linearizable, leader or stale
	Prefix      string        // key prefix
	Warmup      time.Duration // run this long before measuring; not counted
	Preload     bool          // write every key once before measuring
	Timeout     time.Duration // per request
	Seed        uint64        // worker w uses the stream (Seed, w)
	Workload    string        // kv (also ""), list, count or txn
	ListLimit   int           // list: keys per request (0: 1000)
	// PreloadBatch is how many keys one preload request writes: 1 (or 0)
	// writes each with a single put; more batches them into transactions
	// of that many puts (≤ MaxPreloadBatch), which fills a large store
	// quickly.
	PreloadBatch int

	// Progress receives a line per second while running (and preload
	// progress); nil disables them.
	Progress io.Writer
}

// DefaultConfig is the configuration every flag defaults to.
func DefaultConfig() Config {
	return Config{
		Targets:      []string{"http://127.0.0.1:8000"},
		Kind:         KindRaftkv,
		Concurrency:  16,
		Duration:     10 * time.Second,
		Keys:         10000,
		ValueSize:    100,
		Ratio:        1,
		Consistency:  Linearizable,
		Prefix:       "bench/",
		Warmup:       time.Second,
		Timeout:      10 * time.Second,
		Seed:         1,
		Workload:     WorkloadKV,
		ListLimit:    1000,
		PreloadBatch: 1,
	}
}

// workload is c.Workload, "" read as kv.
func (c *Config) workload() string {
	if c.Workload == "" {
		return WorkloadKV
	}
	return c.Workload
}

// listLimit is c.ListLimit, 0 read as 1000.
func (c *Config) listLimit() int {
	if c.ListLimit == 0 {
		return 1000
	}
	return c.ListLimit
}

// preloadBatch is c.PreloadBatch, 0 read as 1.
func (c *Config) preloadBatch() int { return max(c.PreloadBatch, 1) }

// checkTargets parses targets (parseTarget) and checks kind, the part of
// Config.Validate and WatchConfig.Validate they share: each problem goes
// to bad, and the targets that parsed are returned.
func checkTargets(kind Kind, targets []string, bad func(format string, a ...any)) []*url.URL {
	if len(targets) == 0 {
		bad("no targets")
	}
	var out []*url.URL
	for _, t := range targets {
		u, err := parseTarget(t)
		if err != nil {
			bad("target %q: %v", t, err)
			continue
		}
		out = append(out, u)
	}
	switch kind {
	case KindRaftkv, KindEtcd:
	default:
		bad("target kind %q: want raftkv or etcd", kind)
	}
	return out
}

// CountMode reports whether the run is bounded by a request count.
func (c *Config) CountMode() bool { return c.Requests > 0 }

// Validate checks c and returns the parsed targets.
func (c *Config) Validate() ([]*url.URL, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	targets := checkTargets(c.Kind, c.Targets, bad)
	if c.Concurrency < 1 {
		bad("concurrency %d: want at least 1", c.Concurrency)
	}
	if c.Requests < 0 {
		bad("request count %d: want at least 1 (or 0 to run for a duration)", c.Requests)
	}
	if c.Requests == 0 && c.Duration <= 0 {
		bad("duration %s: want > 0", c.Duration)
	}
	if c.Keys < 1 {
		bad("key space %d: want at least 1", c.Keys)
	}
	if c.ValueSize < 0 {
		bad("value size %d: want ≥ 0", c.ValueSize)
	}
	if !(c.Ratio >= 0 && c.Ratio <= 1) { // also rejects NaN
		bad("ratio %v: want a write fraction in [0, 1]", c.Ratio)
	}
	switch c.Consistency {
	case Linearizable, Leader, Stale:
	default:
		bad("consistency %q: want linearizable, leader or stale", c.Consistency)
	}
	if c.Warmup < 0 {
		bad("warmup %s: want ≥ 0", c.Warmup)
	}
	if c.Timeout <= 0 {
		bad("timeout %s: want > 0", c.Timeout)
	}
	switch c.Workload {
	case "", WorkloadKV, WorkloadList, WorkloadCount:
	case WorkloadTxn:
		if c.Keys < 2 {
			bad("key space %d: the txn workload puts two distinct keys, want at least 2", c.Keys)
		}
	default:
		bad("workload %q: want kv, list, count or txn", c.Workload)
	}
	if c.ListLimit < 0 {
		bad("list limit %d: want at least 1 (0: the default, 1000)", c.ListLimit)
	}
	if c.PreloadBatch < 0 || c.PreloadBatch > MaxPreloadBatch {
		bad("preload batch %d: want 1..%d (0: 1)", c.PreloadBatch, MaxPreloadBatch)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return targets, nil
}

// parseTarget accepts scheme://host[:port] with an optional trailing "/".
func parseTarget(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("want an http:// or https:// base URL")
	}
	if u.Host == "" {
		return nil, errors.New("no host")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, errors.New("want only scheme://host[:port], without path, query or user")
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}
