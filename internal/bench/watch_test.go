package bench

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSSEParser(t *testing.T) {
	stream := ": raftkv watch app/ after 41\n\n" +
		"id: 42.0\nevent: put\ndata: {\"key\":\"app/a\",\"value\":\"1\",\"create_index\":42,\"mod_index\":42,\"prev_mod_index\":0}\n\n" +
		": keep-alive\n\n" +
		"id: 43\nevent: progress\ndata: {\"index\":43}\n\n" +
		"id: 57.3\r\nevent: put\r\ndata: {}\r\n\r\n"
	var p sseParser
	var got []uint64
	br := bufio.NewReaderSize(strings.NewReader(stream), 16) // lines longer than the buffer too
	var long []byte
	for {
		l, err := readLine(br, &long)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		idx, err := p.line(l)
		if err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if idx > 0 {
			got = append(got, idx)
		}
	}
	if fmt.Sprint(got) != "[42 57]" || !p.started || p.start != 41 {
		t.Errorf("puts %v, start %d (started %v); want [42 57] after 41", got, p.start, p.started)
	}

	for _, bad := range []struct{ lines, want string }{
		{"event: reset\ndata: {\"code\":\"history_compacted\",\"index\":9}\n", `"reset" event: {"code":"history_compacted"`},
		{"id: 5.0\nevent: delete\ndata: {}\n", `"delete" event`},
		{"id: 5.0\nevent: expire\ndata: {}\n", `"expire" event`},
		{"id: x.0\n", "event id"},
		{"id: \n", "event id"},
		{"event: put\ndata: {}\n", "without an id"},
		{": raftkv watch app/ after\n", "opening comment"},
	} {
		var p sseParser
		var err error
		for _, l := range strings.Split(bad.lines+"\n", "\n") {
			if _, err = p.line([]byte(l)); err != nil {
				break
			}
		}
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want one with %q", bad.lines, err, bad.want)
		}
	}
}

func TestEtcdWatchLine(t *testing.T) {
	created := `{"result":{"header":{"cluster_id":"32","member_id":"33","revision":"17","raft_term":"2"},"created":true}}`
	revs, ok, start, err := etcdWatchLine([]byte(created), nil)
	if err != nil || !ok || start != 17 || len(revs) != 0 {
		t.Errorf("created: %v %v %d %v", revs, ok, start, err)
	}
	two := `{"result":{"header":{"revision":"20"},"events":[{"kv":{"key":"dy9hMQ==","create_revision":"2","mod_revision":"19","version":"1","value":"dg=="}},` +
		`{"kv":{"key":"dy9hMg==","create_revision":"3","mod_revision":"20","version":"4","value":"dg=="}}]}}`
	revs, ok, _, err = etcdWatchLine([]byte(two), []uint64{7})
	if err != nil || ok || fmt.Sprint(revs) != "[7 19 20]" {
		t.Errorf("events: %v %v %v; want [7 19 20] appended", revs, ok, err)
	}
	progressNotify := `{"result":{"header":{"revision":"20"}}}`
	if revs, _, _, err = etcdWatchLine([]byte(progressNotify), nil); err != nil || len(revs) != 0 {
		t.Errorf("progress notification: %v %v", revs, err)
	}
	for _, bad := range []struct{ line, want string }{
		{`{"result":{"header":{"revision":"4"},"events":[{"type":"DELETE","kv":{"key":"dy9hMQ==","mod_revision":"4"}}]}}`, "delete"},
		{`{"result":{"header":{"revision":"4"},"canceled":true,"cancel_reason":"compacted"}}`, "ended the watch"},
		{`{"error":{"grpc_code":14,"message":"unavailable"}}`, "ended the watch"},
		{`{"result":{"events":[{"kv":{"mod_revision":"x1"}}]}}`, "mod_revision"},
		{`{"result":{"events":[{"kv":{"mod_revision":"12`, "unterminated"},
		{`{"result":{"header":{},"created":true}}`, "without a header revision"},
	} {
		if _, _, _, err := etcdWatchLine([]byte(bad.line), nil); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: error %v, want one with %q", bad.line, err, bad.want)
		}
	}
}

func TestWriteIndex(t *testing.T) {
	for _, c := range []struct {
		kind Kind
		body string
		want uint64
		ok   bool
	}{
		{KindRaftkv, `{"key":"bench/1","value":"abc","index":12345}`, 12345, true},
		{KindRaftkv, `{"key":"bench/1","value":"\"index\":7","index":9}`, 9, true}, // the last field wins
		{KindRaftkv, `{"key":"bench/1"}`, 0, false},
		{KindRaftkv, `{"index":}`, 0, false},
		{KindEtcd, `{"header":{"cluster_id":"1","member_id":"2","revision":"77","raft_term":"2"}}`, 77, true},
		{KindEtcd, `{"header":{}}`, 0, false},
	} {
		got, ok := writeIndex(c.kind, []byte(c.body))
		if got != c.want || ok != c.ok {
			t.Errorf("%s %s: %d %v, want %d %v", c.kind, c.body, got, ok, c.want, c.ok)
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	n, err := parseVmRSS([]byte("Name:\traftkv\nVmPeak:\t  900 kB\nVmRSS:\t   48300 kB\nThreads: 9\n"))
	if err != nil || n != 48300 {
		t.Errorf("got %d %v, want 48300", n, err)
	}
	for _, bad := range []string{"Name:\tkthreadd\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n"} {
		if _, err := parseVmRSS([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc:", err)
	}
	if n, err := parseVmRSS(b); err != nil || n <= 0 {
		t.Errorf("own status: %d %v", n, err)
	}
}

func TestSettleRSS(t *testing.T) {
	// Growing, then flat: settles on the first window of settleSamples
	// flat readings, and returns the last one.
	seq := []int64{1000, 5000, 9000, 20000}
	for range settleSamples + 5 {
		seq = append(seq, 30000)
	}
	i := 0
	read := func() ([]int64, int64, error) {
		v := seq[min(i, len(seq)-1)]
		i++
		return []int64{v - 10, 10}, v, nil
	}
	each, sum, ok, _, err := settleRSS(context.Background(), read, 10*time.Second, time.Millisecond)
	if err != nil || !ok || sum != 30000 || fmt.Sprint(each) != "[29990 10]" || i != 4+settleSamples {
		t.Errorf("settled %v at %d %v after %d readings (err %v); want true at 30000 after %d", ok, sum, each, i, err, 4+settleSamples)
	}

	// Never flat (+1% a reading): gives up at the limit, not settled.
	v := int64(100000)
	grow := func() ([]int64, int64, error) { v += v / 100; return []int64{v}, v, nil }
	start := time.Now()
	_, _, ok, _, err = settleRSS(context.Background(), grow, 50*time.Millisecond, time.Millisecond)
	if err != nil || ok || time.Since(start) > 5*time.Second {
		t.Errorf("growing memory: settled %v (err %v) after %s; want false at the limit", ok, err, time.Since(start))
	}

	// A wobble within the tolerance (0.4% of the largest) counts as flat.
	if !settled([]int64{100000, 100400, 100050, 100100, 100000, 100300, 100200, 100000, 100000, 100100, 100000, 100200, 100100}) {
		t.Error("0.4% wobble: not settled")
	}
	if settled([]int64{100000, 100400, 100050, 100100, 100000, 100300, 100200, 100000, 100000, 100100, 100000, 100200, 101000}) {
		t.Error("1% jump in the window: settled")
	}
	if settled([]int64{100000, 100000, 100000}) {
		t.Error("three readings: settled")
	}
}

func TestAckTableAndRecord(t *testing.T) {
	a := newAckTable(100, 4)
	a.put(101, 5)
	a.put(104, 8)
	a.put(105, 9) // beyond the table: the overflow map
	a.put(50, 3)  // before base: the overflow map
	for idx, want := range map[uint64]int64{101: 5, 102: 0, 104: 8, 105: 9, 50: 3, 100: 0} {
		if got := a.get(idx); got != want {
			t.Errorf("get(%d) = %d, want %d", idx, got, want)
		}
	}

	r := newWatchRun(&WatchConfig{}, 2)
	r.windowNs.Store(1000)
	r.acks.Store(a)
	s := &stream{id: 3} // target 1, its shard 1
	for _, e := range []struct {
		idx  uint64
		recv int64
	}{{101, 7}, {102, 500}, {104, 2000}} {
		if err := s.record(r, e.idx, e.recv); err != nil {
			t.Fatal(err)
		}
	}
	// 101: acked at 5, received at 7; 102: no ack yet, pending; 104:
	// received at 2000, after the window.
	if s.count.Load() != 3 || s.inWindow != 2 || len(s.pending) != 1 || s.pending[0] != (pendingEvent{102, 500}) ||
		s.hash != mix64(101)+mix64(102)+mix64(104) || s.last.Load() != 104 {
		t.Errorf("stream after 3 events: count %d, in window %d, pending %v, last %d", s.count.Load(), s.inWindow, s.pending, s.last.Load())
	}
	if h := &r.lat[latShardsPerTarget+1].h; h.Count() != 2 || h.Min() != 2 || h.Max() != 1992 {
		t.Errorf("latency samples: %d, min %s, max %s; want 2: 2ns and 1992ns", h.Count(), h.Min(), h.Max())
	}
	// An event before its put's answer counts as early, latency 0.
	a.put(106, 3000)
	if err := s.record(r, 106, 2500); err != nil || s.early != 1 || r.lat[latShardsPerTarget+1].h.Min() != 0 {
		t.Errorf("early event: err %v, early %d, min %s", err, s.early, r.lat[latShardsPerTarget+1].h.Min())
	}
	for _, idx := range []uint64{106, 105} {
		if err := s.record(r, idx, 3000); err == nil || !strings.Contains(err.Error(), "repeated or out of order") {
			t.Errorf("index %d after 106: %v", idx, err)
		}
	}
}

// fakeFeed serves the two systems' put and watch endpoints the way the
// benchmark uses them: every put gets the next index and goes to every
// watcher, except that the dropWatcher-th watcher to open (if ≥ 0) skips
// the event of the dropEvent-th put after it opened.
type fakeFeed struct {
	kind        Kind
	dropWatcher int
	dropEvent   uint64
	cutWatcher  int // the cutWatcher-th watcher to open (if > 0) ends its stream after 2 events

	mu    sync.Mutex
	index uint64
	subs  []chan uint64
}

func (f *fakeFeed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v3/kv/put":
		f.put(w, func(idx uint64) string { return fmt.Sprintf(`{"header":{"revision":"%d"}}`, idx) })
	case "/v3/watch":
		f.watch(w, r, func(start uint64) string {
			return fmt.Sprintf(`{"result":{"header":{"revision":"%d"},"created":true}}`+"\n", start)
		}, func(idx uint64) string {
			return fmt.Sprintf(`{"result":{"header":{"revision":"%d"},"events":[{"kv":{"key":"%s","mod_revision":"%d","value":"dg=="}}]}}`+"\n",
				idx, base64.StdEncoding.EncodeToString([]byte("p/x")), idx)
		})
	default:
		if strings.HasPrefix(r.URL.Path, "/watch/") {
			f.watch(w, r, func(start uint64) string { return fmt.Sprintf(": raftkv watch p/ after %d\n\n", start) },
				func(idx uint64) string {
					return fmt.Sprintf("id: %d.0\nevent: put\ndata: {\"key\":\"p/x\",\"mod_index\":%d}\n\n", idx, idx)
				})
			return
		}
		f.put(w, func(idx uint64) string { return fmt.Sprintf(`{"key":"p/x","value":"v","index":%d}`, idx) })
	}
}

func (f *fakeFeed) put(w http.ResponseWriter, answer func(uint64) string) {
	f.mu.Lock()
	f.index++
	idx := f.index
	for i, ch := range f.subs {
		if i == f.dropWatcher && idx == f.dropEvent {
			continue
		}
		ch <- idx
	}
	f.mu.Unlock()
	io.WriteString(w, answer(idx))
}

func (f *fakeFeed) watch(w http.ResponseWriter, r *http.Request, open func(uint64) string, event func(uint64) string) {
	ch := make(chan uint64, 1<<16)
	f.mu.Lock()
	f.subs = append(f.subs, ch)
	start := f.index
	if len(f.subs)-1 == f.dropWatcher {
		f.dropEvent += start // the dropEvent-th put after it opened
	}
	cut := f.cutWatcher > 0 && len(f.subs) == f.cutWatcher
	f.mu.Unlock()
	io.WriteString(w, open(start))
	w.(http.Flusher).Flush()
	for sent := 0; !cut || sent < 2; sent++ {
		select {
		case <-r.Context().Done():
			return
		case idx := <-ch:
			io.WriteString(w, event(idx))
			w.(http.Flusher).Flush()
		}
	}
}

func TestRunWatchFake(t *testing.T) {
	for _, c := range []struct {
		kind Kind
		drop int
	}{{KindRaftkv, -1}, {KindEtcd, -1}, {KindRaftkv, 2}, {KindEtcd, 2}} {
		t.Run(fmt.Sprintf("%s/drop=%d", c.kind, c.drop), func(t *testing.T) {
			f := &fakeFeed{kind: c.kind, dropWatcher: c.drop, dropEvent: 3}
			srv := httptest.NewServer(f)
			defer srv.Close()
			cfg := DefaultWatchConfig()
			cfg.Targets, cfg.Kind, cfg.Watchers, cfg.Writers = []string{srv.URL, srv.URL + "/"}, c.kind, 8, 3
			cfg.Duration, cfg.Drain, cfg.Timeout, cfg.MaxWrites, cfg.Prefix = 200*time.Millisecond, 2*time.Second, 5*time.Second, 300, "p/"
			cfg.Pids = []int{os.Getpid()}
			cfg.Settle = 20 * time.Millisecond // too short to settle: reported, not waited for
			res, err := RunWatch(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Writes < 3 || res.Writes > cfg.MaxWrites || res.WriteErrors != 0 {
				t.Fatalf("writes %d (errors %d): want 3..%d, no error", res.Writes, res.WriteErrors, cfg.MaxWrites)
			}
			if c.drop < 0 {
				if res.Failed || !res.Complete || res.Events != res.Writes*int64(cfg.Watchers) || res.Incomplete != 0 {
					t.Errorf("failed %v (%s), complete %v: %d events for %d writes × %d watchers", res.Failed, res.Failure, res.Complete, res.Events, res.Writes, cfg.Watchers)
				}
				if res.Latency.Count != uint64(res.Events)-uint64(res.Unresolved) || res.Unresolved != 0 {
					t.Errorf("%d latency samples, %d unresolved, for %d events", res.Latency.Count, res.Unresolved, res.Events)
				}
				if res.EventsInWindow == 0 || res.EventsPerSec <= 0 || res.EventsInWindow > res.Events {
					t.Errorf("in the window: %d events, %.0f/s (of %d)", res.EventsInWindow, res.EventsPerSec, res.Events)
				}
			} else {
				// One event lost to one watcher: the run fails and says which.
				if !res.Failed || res.Complete || res.Incomplete != 1 || len(res.Problems) != 1 ||
					!strings.Contains(res.Problems[0], fmt.Sprintf("received %d events", res.Writes-1)) || res.Events != res.Writes*int64(cfg.Watchers)-1 {
					t.Errorf("dropped event: failed %v (%s), complete %v, incomplete %d, problems %q, events %d of %d",
						res.Failed, res.Failure, res.Complete, res.Incomplete, res.Problems, res.Events, res.Writes*int64(cfg.Watchers))
				}
			}
			if len(res.LatencyByTarget) != 2 || res.LatencyByTarget[0].Count+res.LatencyByTarget[1].Count != res.Latency.Count ||
				res.LatencyByTarget[0].Count == 0 || res.LatencyByTarget[1].Count == 0 {
				t.Errorf("latency by target: %+v, all: %d samples", res.LatencyByTarget, res.Latency.Count)
			}
			if len(res.RSSBeforeKiB) != 1 || len(res.RSSIdleKiB) != 1 || res.RSSBeforeKiB[0] <= 0 {
				t.Errorf("memory readings: %v %v", res.RSSBeforeKiB, res.RSSIdleKiB)
			}
		})
	}
}

// TestRunWatchStreamEnds: a stream that ends during the run fails it at
// once, without waiting out the drain for a watcher that will not catch
// up.
func TestRunWatchStreamEnds(t *testing.T) {
	f := &fakeFeed{kind: KindRaftkv, dropWatcher: -1, cutWatcher: 3}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cfg := DefaultWatchConfig()
	cfg.Targets, cfg.Watchers, cfg.Writers, cfg.Prefix = []string{srv.URL}, 5, 2, "p/"
	cfg.Duration, cfg.Drain, cfg.Timeout = 200*time.Millisecond, 30*time.Second, 5*time.Second
	start := time.Now()
	res, err := RunWatch(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the run took %s: it waited out the drain for a stream that had ended", took)
	}
	if !res.Failed || res.Incomplete != 1 || len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "EOF") {
		t.Errorf("failed %v (%s), incomplete %d, problems %q; want one watcher failed with EOF", res.Failed, res.Failure, res.Incomplete, res.Problems)
	}
}

func TestRunWatchRefusals(t *testing.T) {
	// A watch refused with an HTTP error: no run, the status in the error.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"too many watchers","code":"too_many_watchers"}`, http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	cfg := DefaultWatchConfig()
	cfg.Targets, cfg.Watchers, cfg.Timeout = []string{srv.URL}, 3, 2*time.Second
	if _, err := RunWatch(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "HTTP 503") {
		t.Errorf("refused watch: %v", err)
	}
	bad := cfg
	bad.Watchers, bad.Prefix, bad.Pids = 0, "", []int{-1}
	if _, err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "watchers 0") ||
		!strings.Contains(err.Error(), "empty prefix") || !strings.Contains(err.Error(), "pid -1") {
		t.Errorf("bad config: %v", err)
	}
}

// TestPacer: slot k is due at k/rate after the start; over a window the
// writers together get at most ceil(rate × window) slots, however many
// ask, and none once the window is over.
func TestPacer(t *testing.T) {
	start := time.Unix(1000, 0)
	p := newPacer(start, start.Add(time.Second), 20)
	for k, want := range map[int64]time.Duration{0: 0, 1: 50 * time.Millisecond, 19: 950 * time.Millisecond, 40: 2 * time.Second} {
		if got := p.due(k).Sub(start); got != want {
			t.Errorf("slot %d due %s after the start, want %s", k, got, want)
		}
	}
	if newPacer(start, start, 0) != nil || !(*pacer)(nil).wait(context.Background()) {
		t.Error("rate 0: want no pacer, and a nil pacer that never waits")
	}

	// 8 writers asking as fast as they can for a 200 ms window at
	// 100/s: 20 slots at most (not timing-sensitive: a slow machine
	// gives fewer).
	now := time.Now()
	p = newPacer(now, now.Add(200*time.Millisecond), 100)
	var got atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 { // bounded; the window ends it far sooner
				if !p.wait(context.Background()) {
					return
				}
				got.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := got.Load(); n < 1 || n > 20 {
		t.Errorf("%d slots in a 200 ms window at 100/s; want 1..20", n)
	}
	if took := time.Since(now); took < 150*time.Millisecond {
		t.Errorf("20 slots at 100/s handed out in %s; the last is due at 190 ms", took)
	}
	if p.wait(context.Background()) {
		t.Error("a slot after the window's end")
	}

	// A cancelled wait returns false at once.
	now = time.Now()
	p = newPacer(now, now.Add(time.Hour), 0.001) // slot 1 due in 1,000 s
	ctx, cancel := context.WithCancel(context.Background())
	if !p.wait(ctx) {
		t.Fatal("slot 0 is due at once")
	}
	cancel()
	if p.wait(ctx) {
		t.Error("cancelled wait: true")
	}
}

// TestRunWatchRate: a paced run against the fake feed makes no more than
// rate × duration + writers puts (the fake answers thousands a second
// unpaced), and still checks every event at every watcher.
func TestRunWatchRate(t *testing.T) {
	f := &fakeFeed{kind: KindRaftkv, dropWatcher: -1}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cfg := DefaultWatchConfig()
	cfg.Targets, cfg.Watchers, cfg.Writers, cfg.Prefix, cfg.Rate = []string{srv.URL}, 4, 3, "p/", 40
	cfg.Duration, cfg.Drain, cfg.Timeout, cfg.MaxWrites = 300*time.Millisecond, 5*time.Second, 5*time.Second, 10000
	res, err := RunWatch(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	limit := int64(cfg.Rate*cfg.Duration.Seconds()) + int64(cfg.Writers)
	if res.Writes < 1 || res.Writes > limit || res.Rate != 40 {
		t.Errorf("paced at 40/s for 300 ms: %d writes (want 1..%d), rate %v", res.Writes, limit, res.Rate)
	}
	if res.Failed || !res.Complete || res.Events != res.Writes*int64(cfg.Watchers) {
		t.Errorf("failed %v (%s), complete %v: %d events for %d writes × %d watchers", res.Failed, res.Failure, res.Complete, res.Events, res.Writes, cfg.Watchers)
	}
	var b strings.Builder
	if err := res.WriteText(&b); err != nil || !strings.Contains(b.String(), "paced at 40 puts/s") {
		t.Errorf("text output without the pacing: %v\n%s", err, b.String())
	}

	bad := cfg
	bad.Rate = -1
	if _, err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "rate -1") {
		t.Errorf("negative rate: %v", err)
	}
}
