package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRaftkv is a raftkv-shaped server that keeps the keys it was sent and
// counts its answers. Every failEvery-th request (by arrival) gets a 503.
type fakeRaftkv struct {
	t         *testing.T
	valueSize int
	failEvery int
	delay     time.Duration
	release   chan struct{} // closed at cleanup: frees handlers that wait

	mu        sync.Mutex
	n         int
	byStatus  map[int]int
	notFound  int
	puts      int
	gets      int
	store     map[string]bool
	seq       []string // method+path per request, in arrival order
	bad       []string // protocol violations
	consisten map[string]int
}

func newFakeRaftkv(t *testing.T, valueSize, failEvery int) (*fakeRaftkv, *httptest.Server) {
	f := &fakeRaftkv{t: t, valueSize: valueSize, failEvery: failEvery, release: make(chan struct{}),
		byStatus: map[int]int{}, store: map[string]bool{}, consisten: map[string]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(func() { close(f.release); srv.Close() })
	return f, srv
}

func (f *fakeRaftkv) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-f.release:
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	f.seq = append(f.seq, r.Method+" "+r.URL.RequestURI())
	key, ok := strings.CutPrefix(r.URL.Path, "/kv/")
	status := http.StatusOK
	var out []byte
	switch {
	case !ok:
		f.bad = append(f.bad, "path "+r.URL.Path)
		status, out = http.StatusNotFound, []byte(`{"error":"no route","code":"not_found"}`)
	case f.failEvery > 0 && f.n%f.failEvery == 0:
		status, out = http.StatusServiceUnavailable, []byte(`{"error":"no leader","code":"no_leader"}`)
	case r.Method == http.MethodPut:
		f.puts++
		if len(body) != f.valueSize || r.Header.Get("Content-Type") != "application/octet-stream" {
			f.bad = append(f.bad, "put body of "+r.Header.Get("Content-Type"))
		}
		f.store[key] = true
		out = []byte(`{"key":"` + key + `","index":1}`)
	case r.Method == http.MethodGet:
		f.gets++
		f.consisten[r.URL.Query().Get("consistency")]++
		if !f.store[key] {
			f.notFound++
			status, out = http.StatusNotFound, []byte(`{"error":"key not found","code":"key_not_found"}`)
		} else {
			out = bytes.Repeat([]byte("v"), f.valueSize)
		}
	default:
		f.bad = append(f.bad, "method "+r.Method)
		status = http.StatusMethodNotAllowed
	}
	f.byStatus[status]++
	w.WriteHeader(status)
	w.Write(out)
}

func testConfig(targets ...string) Config {
	cfg := DefaultConfig()
	cfg.Targets = targets
	cfg.Warmup = 0
	cfg.Timeout = 5 * time.Second
	cfg.Concurrency = 4
	cfg.Keys = 100
	cfg.ValueSize = 20
	return cfg
}

func mustRun(t *testing.T, ctx context.Context, cfg Config) *Result {
	t.Helper()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

// -n is exact, and every answer is accounted: 2xx and key_not_found are
// successes, 503s are counted by status, the ratio holds.
func TestRunCountsAndClassifiesAnswers(t *testing.T) {
	tests := []struct {
		name      string
		n         int64
		c         int
		ratio     float64
		failEvery int
	}{
		{"mixed with 20% 503", 500, 8, 0.3, 5},
		{"writes only, no failures", 200, 3, 1, 0},
		{"reads only, every 3rd fails", 301, 5, 0, 3},
		{"10% writes", 1000, 16, 0.1, 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFakeRaftkv(t, 20, tc.failEvery)
			cfg := testConfig(srv.URL)
			cfg.Requests, cfg.Concurrency, cfg.Ratio, cfg.Seed = tc.n, tc.c, tc.ratio, 42
			cfg.Consistency = Stale
			res := mustRun(t, context.Background(), cfg)

			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.bad) > 0 {
				t.Fatalf("protocol violations: %v", f.bad[:min(5, len(f.bad))])
			}
			if res.Requests != tc.n || int64(f.n) != tc.n {
				t.Fatalf("requests: result %d, server saw %d, want exactly %d", res.Requests, f.n, tc.n)
			}
			if got, want := res.StatusErrors["503"], int64(f.byStatus[503]); got != want || res.Errors != want {
				t.Errorf("503s: result %d (errors %d), server sent %d", got, res.Errors, want)
			}
			if want := int64(f.byStatus[200] + f.notFound); res.OK != want {
				t.Errorf("ok %d, want %d (200s %d + not found %d)", res.OK, want, f.byStatus[200], f.notFound)
			}
			if res.NotFound != int64(f.notFound) {
				t.Errorf("not found %d, server answered %d", res.NotFound, f.notFound)
			}
			if res.Latency.Count != uint64(res.OK) || res.Reads+res.Writes != res.Requests {
				t.Errorf("latency count %d, ok %d; reads %d + writes %d vs %d", res.Latency.Count, res.OK, res.Reads, res.Writes, res.Requests)
			}
			if f.consisten["stale"] != f.gets {
				t.Errorf("reads with consistency=stale: %d of %d", f.consisten["stale"], f.gets)
			}
			got := float64(res.Writes) / float64(res.Requests)
			if d := got - tc.ratio; d > 0.05 || d < -0.05 {
				t.Errorf("write fraction %.3f, want %.2f ± 0.05", got, tc.ratio)
			}
			wantFailed := float64(res.Errors) > 0.01*float64(res.Requests)
			if res.Failed != wantFailed || (res.Check() != nil) != wantFailed {
				t.Errorf("failed = %v (%q), want %v", res.Failed, res.Failure, wantFailed)
			}
			if res.Throughput <= 0 || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 {
				t.Errorf("implausible numbers: %+v", res.Latency)
			}
		})
	}
}

// The same seed gives each worker the same sequence of requests.
func TestRunIsDeterministicPerSeed(t *testing.T) {
	seqOf := func(seed uint64) []string {
		f, srv := newFakeRaftkv(t, 20, 0)
		cfg := testConfig(srv.URL)
		cfg.Requests, cfg.Concurrency, cfg.Ratio, cfg.Seed, cfg.Keys = 200, 1, 0.5, seed, 1000
		mustRun(t, context.Background(), cfg)
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.seq
	}
	a, b, c := seqOf(5), seqOf(5), seqOf(6)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Fatal("same seed, different requests")
	}
	if strings.Join(a, "\n") == strings.Join(c, "\n") {
		t.Fatal("different seeds, same requests")
	}
}

// Workers spread their requests over the targets in turn.
func TestRunRoundRobinTargets(t *testing.T) {
	f1, s1 := newFakeRaftkv(t, 20, 0)
	f2, s2 := newFakeRaftkv(t, 20, 0)
	f3, s3 := newFakeRaftkv(t, 20, 0)
	cfg := testConfig(s1.URL, s2.URL, s3.URL)
	cfg.Requests, cfg.Concurrency = 300, 4
	res := mustRun(t, context.Background(), cfg)
	if res.Errors != 0 {
		t.Fatalf("errors: %s", res.errorSummary())
	}
	for i, f := range []*fakeRaftkv{f1, f2, f3} {
		f.mu.Lock()
		// Each worker's share differs by at most one per target.
		if f.n < 100-cfg.Concurrency || f.n > 100+cfg.Concurrency {
			t.Errorf("target %d got %d of 300 requests", i, f.n)
		}
		f.mu.Unlock()
	}
}

// -d stops within a bound, warmup is not counted, and the per-second
// series covers the measured seconds.
func TestRunDurationStopsInTime(t *testing.T) {
	f, srv := newFakeRaftkv(t, 20, 0)
	cfg := testConfig(srv.URL)
	cfg.Duration, cfg.Warmup = 1100*time.Millisecond, 200*time.Millisecond
	var progress bytes.Buffer
	cfg.Progress = &syncWriter{w: &progress}
	start := time.Now()
	res := mustRun(t, context.Background(), cfg)
	wall := time.Since(start)
	if wall < 1300*time.Millisecond || wall > 2*time.Second {
		t.Errorf("run took %s, want about 1.3s", wall)
	}
	if res.Seconds < 1.1 || res.Seconds > 1.5 {
		t.Errorf("measured %.3fs, want about 1.1s", res.Seconds)
	}
	f.mu.Lock()
	served := f.n
	f.mu.Unlock()
	if res.Requests == 0 || int64(served) <= res.Requests {
		t.Errorf("measured %d of %d served requests: warmup should be served but not counted", res.Requests, served)
	}
	if len(res.PerSecond) != 1 || res.PerSecond[0] == 0 || res.PerSecond[0] > res.OK {
		t.Errorf("per-second series %v (ok %d), want one full second", res.PerSecond, res.OK)
	}
	if out := progress.String(); !strings.Contains(out, "warmup") || !strings.Contains(out, "ops/s") {
		t.Errorf("progress output: %q", out)
	}
	// The fake server shares the process, so only bounds can be checked.
	if res.CPUSeconds <= 0 || res.CPUSeconds > wall.Seconds()*float64(runtime.NumCPU()) {
		t.Errorf("cpu_seconds %v over a %s run on %d CPUs", res.CPUSeconds, wall, runtime.NumCPU())
	}
}

// A slow server does not stretch a -d run beyond duration plus one
// request.
func TestRunDurationBoundWithSlowServer(t *testing.T) {
	f, srv := newFakeRaftkv(t, 20, 0)
	f.delay = 300 * time.Millisecond
	cfg := testConfig(srv.URL)
	cfg.Duration = 200 * time.Millisecond
	start := time.Now()
	res := mustRun(t, context.Background(), cfg)
	if wall := time.Since(start); wall > 900*time.Millisecond {
		t.Errorf("run took %s, want ≤ duration + one request (~0.5s)", wall)
	}
	if res.Requests != int64(cfg.Concurrency) || res.Errors != 0 {
		t.Errorf("requests %d errors %d, want one per worker and none failed", res.Requests, res.Errors)
	}
}

func TestRunTransportErrors(t *testing.T) {
	hang, hangSrv := newFakeRaftkv(t, 20, 0)
	hang.delay = time.Minute // until cleanup

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()

	hangup := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(hangup.Close)

	tests := []struct {
		name   string
		target string
		want   TransportErrors
	}{
		{"timeout", hangSrv.URL, TransportErrors{Timeout: 6}},
		{"connection refused", refused, TransportErrors{ConnectionRefused: 6}},
		{"connection closed", hangup.URL, TransportErrors{Other: 6}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(tc.target)
			cfg.Requests, cfg.Concurrency, cfg.Timeout = 6, 2, 150*time.Millisecond
			start := time.Now()
			res := mustRun(t, context.Background(), cfg)
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("took %s", el)
			}
			if res.TransportErrors != tc.want || res.Errors != 6 || res.OK != 0 || len(res.StatusErrors) != 0 {
				t.Errorf("transport errors %+v (errors %d, ok %d, status %v), want %+v", res.TransportErrors, res.Errors, res.OK, res.StatusErrors, tc.want)
			}
			if !res.Failed || !strings.Contains(res.Failure, "6 of 6 requests failed") {
				t.Errorf("failure %q", res.Failure)
			}
			if len(res.ErrorSamples) != 1 {
				t.Errorf("error samples %v", res.ErrorSamples)
			}
		})
	}
}

// Cancelling the context (Ctrl-C) stops a long run at once with what it
// measured so far.
func TestRunInterrupt(t *testing.T) {
	f, srv := newFakeRaftkv(t, 20, 0)
	f.delay = 5 * time.Millisecond
	cfg := testConfig(srv.URL)
	cfg.Duration = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := mustRun(t, ctx, cfg)
	if el := time.Since(start); el > time.Second {
		t.Errorf("interrupted run took %s", el)
	}
	if !res.Interrupted || res.Requests == 0 || res.Errors != 0 {
		t.Errorf("interrupted %v, requests %d, errors %d (cut-off requests must not count)", res.Interrupted, res.Requests, res.Errors)
	}
}

func TestRunPreloadRaftkv(t *testing.T) {
	f, srv := newFakeRaftkv(t, 20, 0)
	cfg := testConfig(srv.URL)
	cfg.Preload, cfg.Requests, cfg.Ratio, cfg.Keys = true, 100, 0, 50
	res := mustRun(t, context.Background(), cfg)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.store) != 50 || f.puts != 50 {
		t.Errorf("preload wrote %d distinct keys in %d puts, want 50 in 50", len(f.store), f.puts)
	}
	if res.Requests != 100 || res.Reads != 100 || res.NotFound != 0 || res.Errors != 0 {
		t.Errorf("after preload: requests %d reads %d not found %d errors %d", res.Requests, res.Reads, res.NotFound, res.Errors)
	}
}

func TestRunPreloadFails(t *testing.T) {
	_, srv := newFakeRaftkv(t, 20, 1) // everything 503
	cfg := testConfig(srv.URL)
	cfg.Preload, cfg.Requests, cfg.Keys = true, 10, 5
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Run = %v, want a preload error naming the 503", err)
	}
}

// fakeEtcd speaks the subset of the v3 JSON gateway the tool uses.
type fakeEtcd struct {
	mu           sync.Mutex
	kv           map[string]string
	puts, ranges int
	serializable int
	bad          []string
}

func (f *fakeEtcd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Key          string `json:"key"`
		Value        string `json:"value"`
		Serializable bool   `json:"serializable"`
	}
	err := json.NewDecoder(r.Body).Decode(&req)
	key, kerr := base64.StdEncoding.DecodeString(req.Key)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil || kerr != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		f.bad = append(f.bad, r.Method+" "+r.URL.Path)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	header := `"header":{"cluster_id":"1","member_id":"2","revision":"3","raft_term":"4"}`
	switch r.URL.Path {
	case "/v3/kv/put":
		f.puts++
		f.kv[string(key)] = req.Value
		io.WriteString(w, "{"+header+"}")
	case "/v3/kv/range":
		f.ranges++
		if req.Serializable {
			f.serializable++
		}
		v, ok := f.kv[string(key)]
		if !ok {
			io.WriteString(w, "{"+header+"}")
			return
		}
		io.WriteString(w, "{"+header+`,"kvs":[{"key":"`+req.Key+`","value":"`+v+`","version":"1"}],"count":"1"}`)
	default:
		f.bad = append(f.bad, r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
	}
}

func TestRunEtcd(t *testing.T) {
	for _, consistency := range []string{Stale, Linearizable} {
		t.Run(consistency, func(t *testing.T) {
			f := &fakeEtcd{kv: map[string]string{}}
			srv := httptest.NewServer(f)
			defer srv.Close()
			cfg := testConfig(srv.URL)
			cfg.Kind, cfg.Consistency = KindEtcd, consistency
			cfg.Requests, cfg.Ratio, cfg.Keys, cfg.ValueSize = 300, 0.5, 40, 33

			// Without preload some reads miss: 200 without kvs.
			res := mustRun(t, context.Background(), cfg)
			if res.Errors != 0 || res.NotFound == 0 {
				t.Fatalf("errors %d (%s), not found %d: want 0 and some misses", res.Errors, res.errorSummary(), res.NotFound)
			}
			cfg.Preload = true
			res = mustRun(t, context.Background(), cfg)
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.bad) > 0 {
				t.Fatalf("bad requests: %v", f.bad)
			}
			if res.Errors != 0 || res.NotFound != 0 || res.Requests != 300 {
				t.Fatalf("with preload: requests %d errors %d not found %d", res.Requests, res.Errors, res.NotFound)
			}
			if len(f.kv) != 40 {
				t.Errorf("etcd holds %d keys, want 40", len(f.kv))
			}
			for k, v := range f.kv {
				raw, _ := base64.StdEncoding.DecodeString(v)
				if !strings.HasPrefix(k, "bench/") || len(raw) != 33 {
					t.Errorf("stored %q = %d bytes", k, len(raw))
				}
			}
			wantSer := 0
			if consistency == Stale {
				wantSer = f.ranges
			}
			if f.serializable != wantSer {
				t.Errorf("%d of %d ranges serializable, want %d", f.serializable, f.ranges, wantSer)
			}
		})
	}
}

func TestIsNotFound(t *testing.T) {
	tests := []struct {
		kind   Kind
		op     opKind
		status int
		body   string
		want   bool
	}{
		{KindRaftkv, opRead, 404, `{"error":"key not found: \"x\"","code":"key_not_found"}`, true},
		{KindRaftkv, opRead, 404, `{"error":"no route","code":"not_found"}`, false},
		{KindRaftkv, opWrite, 404, `{"code":"key_not_found"}`, false},
		{KindRaftkv, opRead, 200, `value`, false},
		{KindEtcd, opRead, 200, `{"header":{"revision":"3"}}`, true},
		{KindEtcd, opRead, 200, `{"header":{},"kvs":[{}],"count":"1"}`, false},
		{KindEtcd, opRead, 503, `{"error":"etcdserver: leader changed"}`, false},
		{KindEtcd, opWrite, 200, `{"header":{}}`, false},
	}
	for _, tc := range tests {
		w := &worker{kind: tc.kind, b: &builder{kind: tc.kind, workload: WorkloadKV}}
		if got := w.isNotFound(tc.op, tc.status, []byte(tc.body)); got != tc.want {
			t.Errorf("%s %s %d %s: %v, want %v", tc.kind, tc.op, tc.status, tc.body, got, tc.want)
		}
	}
}

func TestReportFormats(t *testing.T) {
	_, srv := newFakeRaftkv(t, 20, 10)
	cfg := testConfig(srv.URL)
	cfg.Requests, cfg.Ratio = 100, 0.5
	res := mustRun(t, context.Background(), cfg)

	var js bytes.Buffer
	if err := res.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if strings.Count(js.String(), "\n") != 1 {
		t.Errorf("JSON is not one line: %q", js.String())
	}
	var back map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ops_per_sec", "latency_ms", "status_errors", "transport_errors", "requests", "failed", "per_second"} {
		if _, ok := back[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, js.String())
		}
	}
	if back["status_errors"].(map[string]any)["503"].(float64) != 10 || back["failed"] != true {
		t.Errorf("JSON status errors / failed: %s", js.String())
	}

	var txt bytes.Buffer
	if err := res.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"throughput", "p99", "reads", "writes", "HTTP 503 ×10", "FAILED"} {
		if !strings.Contains(txt.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, txt.String())
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		errHas string
	}{
		{"defaults", func(*Config) {}, ""},
		{"count mode ignores duration", func(c *Config) { c.Requests, c.Duration = 10, 0 }, ""},
		{"no duration", func(c *Config) { c.Duration = 0 }, "duration"},
		{"ratio above 1", func(c *Config) { c.Ratio = 1.5 }, "ratio"},
		{"negative ratio", func(c *Config) { c.Ratio = -0.1 }, "ratio"},
		{"consistency", func(c *Config) { c.Consistency = "strong" }, "consistency"},
		{"kind", func(c *Config) { c.Kind = "redis" }, "target kind"},
		{"target with path", func(c *Config) { c.Targets = []string{"http://h:1/kv"} }, "target"},
		{"target without scheme", func(c *Config) { c.Targets = []string{"127.0.0.1:8000"} }, "target"},
		{"no targets", func(c *Config) { c.Targets = nil }, "no targets"},
		{"concurrency", func(c *Config) { c.Concurrency = 0 }, "concurrency"},
		{"keys", func(c *Config) { c.Keys = 0 }, "key space"},
		{"timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
		{"workload", func(c *Config) { c.Workload = "scan" }, "workload"},
		{"txn needs two keys", func(c *Config) { c.Workload, c.Keys = WorkloadTxn, 1 }, "two distinct keys"},
		{"list limit", func(c *Config) { c.ListLimit = -1 }, "list limit"},
		{"preload batch over 128", func(c *Config) { c.PreloadBatch = 129 }, "preload batch"},
		{"list with the default limit", func(c *Config) { c.Workload, c.ListLimit = WorkloadList, 0 }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			_, err := cfg.Validate()
			if tc.errHas == "" && err != nil || tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)) {
				t.Errorf("Validate = %v, want error containing %q", err, tc.errHas)
			}
		})
	}
}

// syncWriter lets the test read what the monitor goroutine wrote.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// BenchmarkWorkerDo measures the generator's own cost per request (client
// side plus an in-process trivial server): go test -bench WorkerDo -benchmem.
func BenchmarkWorkerDo(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"key":"bench/0001","index":1}`)
	}))
	defer srv.Close()
	for _, kind := range []Kind{KindRaftkv, KindEtcd} {
		for _, op := range []opKind{opWrite, opRead} {
			b.Run(string(kind)+"/"+op.String(), func(b *testing.B) {
				cfg := testConfig(srv.URL)
				cfg.Kind = kind
				targets, err := cfg.Validate()
				if err != nil {
					b.Fatal(err)
				}
				tr := newTransport(&cfg, 1)
				defer tr.CloseIdleConnections()
				w := newWorker(0, &cfg, newBuilder(&cfg), tr, targets)
				defer w.close()
				w.setParent(context.Background())
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if o := w.do(op, i%cfg.Keys); !o.success() {
						b.Fatal(o.describe())
					}
				}
			})
		}
	}
}
