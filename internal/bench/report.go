package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxFailureRate is the fraction of failed requests above which a run
// counts as failed (Result.Check).
const MaxFailureRate = 0.01

// Latency summarises a histogram, in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func summarize(h *Histogram) Latency {
	return Latency{
		Count: h.Count(),
		Min:   ms(h.Min()),
		Mean:  ms(h.Mean()),
		P50:   ms(h.Percentile(50)),
		P90:   ms(h.Percentile(90)),
		P99:   ms(h.Percentile(99)),
		P999:  ms(h.Percentile(99.9)),
		Max:   ms(h.Max()),
	}
}

// TransportErrors counts requests that got no HTTP answer, by class.
type TransportErrors struct {
	Timeout           int64 `json:"timeout"`
	ConnectionRefused int64 `json:"connection_refused"`
	Other             int64 `json:"other"`
}

// Result is the outcome of a run. Latencies are of successful requests
// only (a timeout's "latency" is the timeout); failures are counted by
// HTTP status and by transport error class.
type Result struct {
	Kind        Kind     `json:"target_kind"`
	Targets     []string `json:"targets"`
	Concurrency int      `json:"concurrency"`
	Mode        string   `json:"mode"`     // "duration" or "count"
	Workload    string   `json:"workload"` // kv, list, count or txn (list/count are reads, txn writes)
	ListLimit   int      `json:"list_limit,omitempty"`
	Keys        int      `json:"keys"`
	ValueSize   int      `json:"value_size"`
	Ratio       float64  `json:"ratio"`
	Consistency string   `json:"consistency"`
	Seed        uint64   `json:"seed"`
	Preloaded   bool     `json:"preloaded"`

	Seconds    float64 `json:"duration_s"`      // measured phase, start to last answer
	Requests   int64   `json:"requests"`        // measured requests that got an outcome
	OK         int64   `json:"ok"`              // successful (2xx, or a read of an absent key)
	Errors     int64   `json:"errors"`          // Requests - OK
	Reads      int64   `json:"reads"`           // requests by kind, ok or not
	Writes     int64   `json:"writes"`          //
	NotFound   int64   `json:"not_found"`       // successful reads of an absent key
	Throughput float64 `json:"ops_per_sec"`     // OK / Seconds
	ErrorRate  float64 `json:"error_rate"`      // Errors / Requests
	Latency    Latency `json:"latency_ms"`      // all successful requests
	ReadLat    Latency `json:"read_latency_ms"` // successful reads
	WriteLat   Latency `json:"write_latency_ms"`

	StatusErrors    map[string]int64  `json:"status_errors"` // HTTP status → count
	TransportErrors TransportErrors   `json:"transport_errors"`
	ErrorSamples    map[string]string `json:"error_samples,omitempty"` // first message per status / class

	// PerSecond is the successful operations completed in each full
	// second of the measured phase (for stalls and sustained runs).
	PerSecond []int64 `json:"per_second"`

	// CPUSeconds is the load generator's own user+system CPU time from
	// the start of the warmup to the end of the run (preload excluded),
	// to compare with the servers' CPU over the same window.
	CPUSeconds float64 `json:"cpu_seconds"`

	Interrupted bool   `json:"interrupted"`
	Failed      bool   `json:"failed"`
	Failure     string `json:"failure,omitempty"`

	elapsed time.Duration
}

func newResult(cfg *Config, targets []*url.URL) *Result {
	r := &Result{
		Kind:         cfg.Kind,
		Concurrency:  cfg.Concurrency,
		Mode:         "duration",
		Workload:     cfg.workload(),
		Keys:         cfg.Keys,
		ValueSize:    cfg.ValueSize,
		Ratio:        cfg.Ratio,
		Consistency:  cfg.Consistency,
		Seed:         cfg.Seed,
		Preloaded:    cfg.Preload,
		StatusErrors: map[string]int64{},
		PerSecond:    []int64{},
	}
	if cfg.CountMode() {
		r.Mode = "count"
	}
	if r.Workload == WorkloadList {
		r.ListLimit = cfg.listLimit()
	}
	for _, t := range targets {
		r.Targets = append(r.Targets, t.String())
	}
	r.finish()
	return r
}

// collect merges the workers' records (after they stopped); the first
// fullSeconds seconds of the measured phase go into PerSecond.
func (r *Result) collect(workers []*worker, fullSeconds int) {
	var all, reads, writes Histogram
	r.PerSecond = make([]int64, fullSeconds)
	for _, w := range workers {
		for i, n := range w.perSecond[:min(len(w.perSecond), fullSeconds)] {
			r.PerSecond[i] += n
		}
		reads.Merge(&w.hist[opRead])
		writes.Merge(&w.hist[opWrite])
		r.Reads += w.ops[opRead]
		r.Writes += w.ops[opWrite]
		r.OK += w.okN.Load()
		r.Errors += w.errN.Load()
		r.NotFound += w.notFound
		for code, n := range w.status {
			k := strconv.Itoa(code)
			r.StatusErrors[k] += n
			if r.ErrorSamples == nil {
				r.ErrorSamples = map[string]string{}
			}
			if _, ok := r.ErrorSamples[k]; !ok {
				r.ErrorSamples[k] = w.statusSample[code]
			}
		}
		for c, n := range w.classes {
			if n == 0 {
				continue
			}
			if r.ErrorSamples == nil {
				r.ErrorSamples = map[string]string{}
			}
			name := errClass(c).String()
			if _, ok := r.ErrorSamples[name]; !ok {
				r.ErrorSamples[name] = w.classSample[c]
			}
		}
		r.TransportErrors.Timeout += w.classes[classTimeout]
		r.TransportErrors.ConnectionRefused += w.classes[classRefused]
		r.TransportErrors.Other += w.classes[classOther]
	}
	all.Merge(&reads)
	all.Merge(&writes)
	r.Latency, r.ReadLat, r.WriteLat = summarize(&all), summarize(&reads), summarize(&writes)
	r.Requests = r.OK + r.Errors
	r.finish()
}

// finish computes the derived fields.
func (r *Result) finish() {
	r.Seconds = r.elapsed.Seconds()
	r.Throughput, r.ErrorRate = 0, 0
	if r.Seconds > 0 {
		r.Throughput = float64(r.OK) / r.Seconds
	}
	if r.Requests > 0 {
		r.ErrorRate = float64(r.Errors) / float64(r.Requests)
	}
	r.Failed, r.Failure = false, ""
	if err := r.check(); err != nil {
		r.Failed, r.Failure = true, err.Error()
	}
}

// Check returns why the run failed: no request completed, or more than
// MaxFailureRate of them failed. Nil means it passed.
func (r *Result) Check() error { return r.check() }

func (r *Result) check() error {
	switch {
	case r.Requests == 0:
		return fmt.Errorf("no request completed")
	case float64(r.Errors) > MaxFailureRate*float64(r.Requests):
		return fmt.Errorf("%d of %d requests failed (%.2f%%, more than %.0f%%): %s",
			r.Errors, r.Requests, 100*r.ErrorRate, 100*MaxFailureRate, r.errorSummary())
	}
	return nil
}

func (r *Result) errorSummary() string {
	var parts []string
	codes := make([]string, 0, len(r.StatusErrors))
	for c := range r.StatusErrors {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("HTTP %s ×%d", c, r.StatusErrors[c]))
	}
	te := r.TransportErrors
	for _, x := range []struct {
		name string
		n    int64
	}{{"timeout", te.Timeout}, {"connection refused", te.ConnectionRefused}, {"other transport error", te.Other}} {
		if x.n > 0 {
			parts = append(parts, fmt.Sprintf("%s ×%d", x.name, x.n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// WriteJSON writes r as one JSON object on one line.
func (r *Result) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteText writes r as a human-readable table.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	mix := "writes only"
	switch {
	case r.Ratio == 0:
		mix = "reads only (" + r.Consistency + ")"
	case r.Ratio < 1:
		mix = fmt.Sprintf("%.0f%% writes, %.0f%% reads (%s)", 100*r.Ratio, 100*(1-r.Ratio), r.Consistency)
	}
	switch r.Workload {
	case WorkloadList:
		mix = fmt.Sprintf("lists of %d keys (%s)", r.ListLimit, r.Consistency)
	case WorkloadCount:
		mix = "prefix counts (" + r.Consistency + ")"
	case WorkloadTxn:
		mix = "transactions: compare + 2 puts"
	}
	fmt.Fprintf(&b, "target       %s %s\n", r.Kind, strings.Join(r.Targets, ","))
	fmt.Fprintf(&b, "workload     %s, concurrency %d, %d keys, %d-byte values", mix, r.Concurrency, r.Keys, r.ValueSize)
	if r.Preloaded {
		b.WriteString(", preloaded")
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "requests     %d in %.2fs (ok %d, errors %d", r.Requests, r.Seconds, r.OK, r.Errors)
	if r.NotFound > 0 {
		fmt.Fprintf(&b, ", not found %d", r.NotFound)
	}
	b.WriteString(")\n")
	fmt.Fprintf(&b, "throughput   %.0f ops/s\n", r.Throughput)
	b.WriteString("latency ms      p50      p90      p99    p99.9      max     mean\n")
	row := func(name string, l Latency) {
		fmt.Fprintf(&b, "  %-8s %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f\n", name, l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	}
	row("all", r.Latency)
	if r.ReadLat.Count > 0 && r.WriteLat.Count > 0 {
		row("reads", r.ReadLat)
		row("writes", r.WriteLat)
	}
	fmt.Fprintf(&b, "errors       %s\n", r.errorSummary())
	keys := make([]string, 0, len(r.ErrorSamples))
	for k := range r.ErrorSamples {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  first %s: %s\n", k, r.ErrorSamples[k])
	}
	if r.Interrupted {
		b.WriteString("interrupted  yes (partial results)\n")
	}
	if r.Failed {
		fmt.Fprintf(&b, "FAILED       %s\n", r.Failure)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
