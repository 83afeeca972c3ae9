package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testcluster"
)

// recorder is a RoundTripper that counts requests per host and path
// prefix, and can drop the answer of one matching request after the
// server handled it (as a connection that breaks after sending would).
type recorder struct {
	rt http.RoundTripper

	mu    sync.Mutex
	hits  map[string]int // "host path-prefix" → requests
	hosts []string       // the host of every /watch/ request, in order
	drop  func(*http.Request) bool
	// dropped gets the dropped answer; the RoundTrip then waits for
	// resume before failing.
	dropped chan lostAnswer
	resume  chan struct{}
}

type lostAnswer struct {
	status   int
	servedBy string
	body     []byte
}

func newRecorder() *recorder {
	return &recorder{rt: &http.Transport{}, hits: map[string]int{}, dropped: make(chan lostAnswer, 1), resume: make(chan struct{})}
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.hits[req.Method+" "+req.URL.Host+" "+req.URL.Path]++
	if strings.HasPrefix(req.URL.Path, "/watch/") {
		r.hosts = append(r.hosts, req.URL.Host)
	}
	drop := r.drop != nil && r.drop(req)
	if drop {
		r.drop = nil
	}
	r.mu.Unlock()
	resp, err := r.rt.RoundTrip(req)
	if err != nil || !drop {
		return resp, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r.dropped <- lostAnswer{resp.StatusCode, resp.Header.Get("X-Raft-Served-By"), body}
	<-r.resume
	return nil, errors.New("test: the connection broke after the request was sent; the answer is lost")
}

func (r *recorder) count(method, host, path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits[method+" "+host+" "+path]
}

func (r *recorder) watchHosts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.hosts...)
}

func recordedClient(t *testing.T, r *recorder, eps []string) *client.Client {
	cl, err := client.New(eps, client.WithHTTPClient(&http.Client{Transport: r}), client.WithRetryBackoff(10*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func urls(c *testcluster.Cluster, members ...int) []string {
	var out []string
	for _, i := range members {
		out = append(out, c.URL(i))
	}
	return out
}

// TestFailover: with one member down, every call succeeds through the
// others, and the dead endpoint is skipped after its first refusals
// rather than tried by every call.
func TestFailover(t *testing.T) {
	c := testcluster.Start(t, 3)
	down := c.Followers(t)[0]
	c.Kill(t, down)
	rec := newRecorder()
	cl := recordedClient(t, rec, urls(c, 0, 1, 2))
	ctx := ctxT(t)
	const calls = 30
	for i := range calls {
		k := fmt.Sprintf("fo/%d", i)
		if _, err := cl.Put(ctx, k, []byte("v")); err != nil {
			t.Fatalf("Put %s with %s down: %v", k, c.ID(down), err)
		}
		if _, err := cl.Get(ctx, k); err != nil {
			t.Fatalf("Get %s with %s down: %v", k, c.ID(down), err)
		}
	}
	host := c.HTTPAddr(down)
	tried := 0
	for k := range calls {
		tried += rec.count(http.MethodPut, host, fmt.Sprintf("/kv/fo/%d", k)) + rec.count(http.MethodGet, host, fmt.Sprintf("/kv/fo/%d", k))
	}
	// The dead endpoint is skipped 250ms, then 500ms, 1s, … after each
	// refusal: 60 calls take about a second, so it is tried 1 to 4 times
	// (8 leaves room for a slow machine: 16 s of calls).
	if tried == 0 || tried > 8 {
		t.Fatalf("the dead endpoint was tried %d times by %d calls, want 1..8", tried, 2*calls)
	}
}

// TestWriteRetriedAcrossLeaderKill: the answer of a write is lost after
// the leader applied it, and the leader is killed before the client
// retries; the retry (same Idempotency-Key, through another node, after
// the election) answers the first outcome, and the write is applied
// exactly once: one put event in the change feed, the key's mod_index
// that of the first attempt.
func TestWriteRetriedAcrossLeaderKill(t *testing.T) {
	c := testcluster.Start(t, 3)
	leader := c.Leader(t)
	ctx := ctxT(t)
	plain := newClient(t, c)
	base, err := plain.Put(ctx, "once/start", []byte("-"))
	if err != nil {
		t.Fatal(err)
	}

	rec := newRecorder()
	rec.drop = func(r *http.Request) bool { return r.Method == http.MethodPut && r.URL.Path == "/kv/once/k" }
	cl := recordedClient(t, rec, urls(c, 0, 1, 2))
	type result struct {
		index uint64
		err   error
	}
	done := make(chan result, 1)
	go func() {
		idx, err := cl.Put(ctx, "once/k", []byte("v"))
		done <- result{idx, err}
	}()
	lost := <-rec.dropped
	var first struct {
		Index uint64 `json:"index"`
	}
	if err := json.Unmarshal(lost.body, &first); err != nil || lost.status != 200 || first.Index == 0 || lost.servedBy != c.ID(leader) {
		t.Fatalf("the first attempt: %d %s served by %s, want 200 applied by the leader %s", lost.status, lost.body, lost.servedBy, c.ID(leader))
	}
	c.Kill(t, leader)
	close(rec.resume)
	res := <-done
	if res.err != nil || res.index != first.Index {
		t.Fatalf("Put = %d, %v; want the first attempt's index %d", res.index, res.err, first.Index)
	}
	attempts := 0
	for _, i := range []int{0, 1, 2} {
		attempts += rec.count(http.MethodPut, c.HTTPAddr(i), "/kv/once/k")
	}
	if attempts < 2 {
		t.Fatalf("%d attempts: the write was not retried", attempts)
	}

	end, err := plain.Put(ctx, "once/end", []byte("-"))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := plain.Get(ctx, "once/k")
	if err != nil || kv.ModIndex != first.Index {
		t.Fatalf("once/k = %+v, %v; want mod_index %d", kv, err, first.Index)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var puts []string
	for ev := range plain.Watch(wctx, "once/", client.WithStartIndex(fmt.Sprint(base))) {
		if ev.Type == client.EventReset || ev.Type == client.EventError {
			t.Fatalf("watch: %+v", ev)
		}
		puts = append(puts, fmt.Sprintf("%s@%d", ev.Key, ev.ModIndex))
		if ev.Index >= end {
			break
		}
	}
	want := fmt.Sprintf("[once/k@%d once/end@%d]", first.Index, end)
	if fmt.Sprint(puts) != want {
		t.Fatalf("changes after %d: %v, want %s", base, puts, want)
	}

	// A transaction whose answer is lost: the retry answers the first
	// outcome, replayed, and its read is not kept.
	rec.mu.Lock()
	rec.drop = func(r *http.Request) bool { return r.URL.Path == "/txn" }
	rec.resume = make(chan struct{})
	close(rec.resume)
	rec.mu.Unlock()
	resp, err := cl.Txn(ctx, client.Txn{
		Compare: []client.Compare{client.CompareModIndex("once/k", "=", first.Index)},
		Success: []client.Op{client.OpPut("once/k", []byte("w")), client.OpGet("once/k")},
	})
	lost = <-rec.dropped
	var firstTxn struct {
		Succeeded bool   `json:"succeeded"`
		Index     uint64 `json:"index"`
	}
	if err := json.Unmarshal(lost.body, &firstTxn); err != nil || !firstTxn.Succeeded {
		t.Fatalf("the first attempt: %d %s", lost.status, lost.body)
	}
	if err != nil || !resp.Succeeded || !resp.Replayed || resp.Index != firstTxn.Index || !resp.Results[1].NotKept {
		t.Fatalf("Txn retried = %+v, %v; want the first outcome at %d, replayed", resp, err, firstTxn.Index)
	}
}

// TestWatchSurvivesNodeStop: a watch served by one node, which stops (as
// on SIGTERM) or is killed while N keys are written through the others,
// delivers exactly the N changes, in log order, none twice, having
// resumed on another node.
func TestWatchSurvivesNodeStop(t *testing.T) {
	for _, how := range []string{"stop", "kill"} {
		t.Run(how, func(t *testing.T) {
			c := testcluster.Start(t, 3)
			ctx := ctxT(t)
			rec := newRecorder()
			wcl := recordedClient(t, rec, urls(c, 0, 1, 2))
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ch := wcl.Watch(wctx, "wn/")

			// The first change proves the stream is up; then we know its node.
			setup := newClient(t, c)
			if _, err := setup.Put(ctx, "wn/0", []byte("-")); err != nil {
				t.Fatal(err)
			}
			if ev, _ := next(t, ch); ev.Key != "wn/0" {
				t.Fatalf("first event %+v", ev)
			}
			watched := -1
			for _, i := range c.Running() {
				if hs := rec.watchHosts(); len(hs) == 1 && hs[0] == c.HTTPAddr(i) {
					watched = i
				}
			}
			if watched < 0 {
				t.Fatalf("watch requests went to %v", rec.watchHosts())
			}
			var others []int
			for _, i := range c.Running() {
				if i != watched {
					others = append(others, i)
				}
			}
			writer := newClient(t, c, others...)

			const n = 40
			halfway := make(chan struct{})
			wrote := make(chan error, 1)
			go func() {
				for k := 1; k <= n; k++ {
					if k == n/2 {
						close(halfway)
					}
					if _, err := writer.Put(ctx, fmt.Sprintf("wn/%d", k), []byte("v")); err != nil {
						wrote <- err
						return
					}
				}
				wrote <- nil
			}()
			<-halfway
			if how == "stop" {
				c.Stop(t, watched, false, 5*time.Second)
			} else {
				c.Kill(t, watched)
			}
			if err := <-wrote; err != nil {
				t.Fatalf("writes with %s down: %v", c.ID(watched), err)
			}
			end, err := writer.Put(ctx, "wn/end", []byte("-"))
			if err != nil {
				t.Fatal(err)
			}

			var got []string
			var last uint64
			for {
				ev, ok := next(t, ch)
				if !ok || ev.Type != client.EventPut {
					t.Fatalf("after %v: %+v (open %v)", got, ev, ok)
				}
				if ev.Index <= last {
					t.Fatalf("event %s at %d after one at %d", ev.Key, ev.Index, last)
				}
				last = ev.Index
				if ev.Key == "wn/end" {
					if ev.Index != end {
						t.Fatalf("wn/end at %d, written at %d", ev.Index, end)
					}
					break
				}
				got = append(got, ev.Key)
			}
			var want []string
			for k := 1; k <= n; k++ {
				want = append(want, fmt.Sprintf("wn/%d", k))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("changes seen:\n%v\nwant\n%v", got, want)
			}
			hs := rec.watchHosts()
			if len(hs) < 2 || hs[len(hs)-1] == c.HTTPAddr(watched) {
				t.Fatalf("watch requests went to %v; want a resume on a node other than %s", hs, c.HTTPAddr(watched))
			}
		})
	}
}
