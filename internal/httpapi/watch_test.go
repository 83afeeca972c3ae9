package httpapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/watch"
)

// watchServer serves svc; at the end its watches are closed first, so the
// server's Close does not wait for open streams.
func watchServer(t *testing.T, svc *Service) *httptest.Server {
	srv := httptest.NewServer(svc)
	t.Cleanup(srv.Close)
	t.Cleanup(svc.CloseWatches)
	return srv
}

// lastEventID is a request header with Last-Event-ID, as a client sends it.
func lastEventID(id string) http.Header {
	h := http.Header{}
	h.Set(HeaderLastEventID, id)
	return h
}

// sseEvent is one Server-Sent Event as a client parses it.
type sseEvent struct {
	id, event string
	data      map[string]any
}

// sseStream reads events from a watch response, skipping comments.
type sseStream struct {
	t    *testing.T
	resp *http.Response
	sc   *bufio.Scanner
	evs  chan sseEvent
}

func openStream(t *testing.T, url string, header http.Header) *sseStream {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("watch answered %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sseStream{t: t, resp: resp, sc: bufio.NewScanner(resp.Body), evs: make(chan sseEvent, 1024)}
	go func() {
		defer close(s.evs)
		var e sseEvent
		for s.sc.Scan() {
			line := s.sc.Text()
			switch {
			case line == "":
				if e.event != "" {
					s.evs <- e
				}
				e = sseEvent{}
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "id: "):
				e.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				e.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(line[6:]), &e.data); err != nil {
					e.event = "bad data " + line
				}
			}
		}
	}()
	return s
}

// next is the next event that is not a progress event (unless
// progress), within 5 s.
func (s *sseStream) next(progress bool) sseEvent {
	s.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e, ok := <-s.evs:
			if !ok {
				s.t.Fatal("the stream ended")
			}
			if e.event == "progress" && !progress {
				continue
			}
			return e
		case <-deadline:
			s.t.Fatal("no event within 5 s")
		}
	}
}

func (e sseEvent) String() string {
	return fmt.Sprintf("%s %s %v", e.id, e.event, e.data)
}

func requireEvent(t *testing.T, got sseEvent, id, event, key string, fields map[string]any) {
	t.Helper()
	if got.id != id || got.event != event || got.data["key"] != key {
		t.Fatalf("event %v, want %s %s %s", got, id, event, key)
	}
	for k, v := range fields {
		if got.data[k] != v {
			t.Fatalf("event %v: %s = %v, want %v", got, k, got.data[k], v)
		}
	}
}

// TestWatchStream: the events under the prefix after the index, each with
// its position, type and data; live ones as they are applied; a prefix
// delete's changes one after the other with their sequence numbers.
func TestWatchStream(t *testing.T) {
	svc, st, _ := newFakeService(t, Options{})
	srv := watchServer(t, svc)
	st.set("a/1", "one")   // 1
	st.set("b/1", "other") // 2
	st.set("a/2", "\xff")  // 3
	s := openStream(t, srv.URL+"/watch/a/?index=1", nil)
	requireEvent(t, s.next(false), "3.0", "put", "a/2", map[string]any{"value_base64": "/w==", "create_index": 3.0, "mod_index": 3.0, "prev_mod_index": 0.0})
	st.set("a/1", "uno")                                      // 4
	st.apply(&fsm.Command{Op: fsm.OpDelete, Key: "b/1"})      // 5: not under a/
	st.apply(&fsm.Command{Op: fsm.OpDeletePrefix, Key: "a/"}) // 6
	requireEvent(t, s.next(false), "4.0", "put", "a/1", map[string]any{"value": "uno", "create_index": 1.0, "mod_index": 4.0, "prev_mod_index": 1.0})
	requireEvent(t, s.next(false), "6.0", "delete", "a/1", map[string]any{"create_index": 1.0, "mod_index": 6.0, "prev_mod_index": 4.0})
	e := s.next(false)
	requireEvent(t, e, "6.1", "delete", "a/2", map[string]any{"mod_index": 6.0, "prev_mod_index": 3.0})
	if _, ok := e.data["value"]; ok {
		t.Fatalf("a delete carries a value: %v", e)
	}

	// Last-Event-ID (an EventSource's reconnect) wins over the URL's index.
	r := openStream(t, srv.URL+"/watch/a/?index=1", lastEventID("6.0"))
	requireEvent(t, r.next(false), "6.1", "delete", "a/2", nil)
	// An empty prefix watches everything; no index starts after now.
	all := openStream(t, srv.URL+"/watch/", nil)
	st.set("z", "last") // 7
	requireEvent(t, all.next(false), "7.0", "put", "z", map[string]any{"value": "last"})
}

// TestWatchRefusals: bad input and refusals are JSON errors before any
// stream starts.
func TestWatchRefusals(t *testing.T) {
	svc, st, _ := newFakeService(t, Options{RequestTimeout: 50 * time.Millisecond, Watch: watch.Limits{MaxWatchers: 1}})
	st.f.SetHistoryLimits(fsm.HistoryLimits{Events: 2, Bytes: 1 << 20})
	for i := range 5 {
		st.set(fmt.Sprint("k", i), "v")
	}
	tests := []struct {
		name, target string
		header       http.Header
		status       int
		code         string
	}{
		{"garbage Last-Event-ID", "/watch/k", lastEventID("abc"), 400, "bad_request"},
		{"garbage index", "/watch/k?index=-1", nil, 400, "bad_request"},
		{"index with a bad sequence", "/watch/k?index=3.x", nil, 400, "bad_request"},
		{"unknown parameter", "/watch/k?recurse", nil, 400, "bad_request"},
		{"future index", "/watch/k?index=6", nil, 400, "future_index"},
		{"future position", "/watch/k", lastEventID("9.0"), 400, "future_index"},
		{"compacted", "/watch/k?index=2", nil, 410, "history_compacted"},
		{"not GET", "/watch/k", nil, 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := http.MethodGet
			if tt.status == 405 {
				method = http.MethodPost
			}
			rec := callWithin(svc, time.Second, method, tt.target, "", tt.header)
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), `"code":"`+tt.code+`"`) {
				t.Fatalf("%s = %d %s, want %d %s", tt.target, rec.Code, rec.Body, tt.status, tt.code)
			}
		})
	}
	// The 410 names the oldest index a resume is served from, and that
	// index is served.
	rec := call(svc, http.MethodGet, "/watch/k?index=2", "", nil)
	var body errorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Index == nil || *body.Index != 3 {
		t.Fatalf("410 body %s, want index 3", rec.Body)
	}
	srv := watchServer(t, svc)
	s := openStream(t, srv.URL+"/watch/k?index=3", nil)
	requireEvent(t, s.next(false), "4.0", "put", "k3", nil)
	// One watcher is the limit here.
	if rec := call(svc, http.MethodGet, "/watch/k", "", nil); rec.Code != 503 || !strings.Contains(rec.Body.String(), "too_many_watchers") {
		t.Fatalf("second watcher = %d %s, want 503 too_many_watchers", rec.Code, rec.Body)
	}
	m := call(svc, http.MethodGet, "/metrics", "", nil).Body.String()
	for _, line := range []string{"raftkv_watchers 1", "raftkv_watch_history_events 2", "raftkv_watch_history_floor_index 3"} {
		if !strings.Contains(m, "\n"+line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

// TestWatchOutlivesServerTimeouts: a stream lasts past the server's read
// and write timeouts, with progress events carrying the applied index.
func TestWatchOutlivesServerTimeouts(t *testing.T) {
	svc, st, _ := newFakeService(t, Options{WatchProgress: 100 * time.Millisecond})
	srv := httptest.NewUnstartedServer(svc)
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(svc.CloseWatches) // first: the streams end, so Close need not wait for them
	st.set("a", "1")
	s := openStream(t, srv.URL+"/watch/", nil)
	start := time.Now()
	for time.Since(start) < time.Second {
		e := s.next(true)
		if e.event != "progress" || e.id != "1" || e.data["index"] != 1.0 {
			t.Fatalf("idle stream sent %v, want progress 1", e)
		}
	}
	st.set("b", "2")
	requireEvent(t, s.next(false), "2.0", "put", "b", nil)
}

// TestWatchReset: a watcher whose next events the history dropped gets a
// final reset event and the stream ends.
func TestWatchReset(t *testing.T) {
	svc, st, _ := newFakeService(t, Options{})
	st.f.SetHistoryLimits(fsm.HistoryLimits{Events: 2, Bytes: 1 << 20})
	srv := watchServer(t, svc)
	s := openStream(t, srv.URL+"/watch/", nil)
	// Five changes in one batch: the watcher cannot have read them before
	// the history keeps only the last two.
	logs := make([]*raft.Log, 5)
	for i := range logs {
		logs[i] = &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: (&fsm.Command{Op: fsm.OpSet, Key: fmt.Sprint("k", i), Value: "v"}).Encode(nil)}
	}
	st.f.ApplyBatch(logs)
	e := s.next(false)
	if e.event != "reset" || e.id != "" || e.data["code"] != "history_compacted" || e.data["index"] != 3.0 {
		t.Fatalf("event %v, want a reset naming index 3", e)
	}
	select {
	case _, ok := <-s.evs:
		if ok {
			t.Fatal("the stream went on after its reset")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end after its reset")
	}
}

// TestWatchShutdown: CloseWatches ends open streams and refuses new ones.
func TestWatchShutdown(t *testing.T) {
	svc, _, _ := newFakeService(t, Options{})
	srv := watchServer(t, svc)
	s := openStream(t, srv.URL+"/watch/", nil)
	svc.CloseWatches()
	select {
	case _, ok := <-s.evs:
		if ok {
			t.Fatal("an event after CloseWatches")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end after CloseWatches")
	}
	if rec := call(svc, http.MethodGet, "/watch/", "", nil); rec.Code != 503 || !strings.Contains(rec.Body.String(), "shutting_down") {
		t.Fatalf("watch after CloseWatches = %d %s, want 503 shutting_down", rec.Code, rec.Body)
	}
}

// TestBlockingQuery: GET /kv/{key}?index=N&wait=D answers once the key
// changes after N, or when the wait ends, with X-Raft-Index to pass back.
func TestBlockingQuery(t *testing.T) {
	svc, st, _ := newFakeService(t, Options{})
	st.set("k", "1")     // 1
	st.set("other", "x") // 2
	// Not blocking: no index, or index 0.
	for _, target := range []string{"/kv/k", "/kv/k?index=0&wait=1h"} {
		if rec := call(svc, http.MethodGet, target, "", nil); rec.Code != 200 || rec.Body.String() != "1" || rec.Header().Get(HeaderRaftIndex) != "1" {
			t.Fatalf("%s = %d %q index %s", target, rec.Code, rec.Body, rec.Header().Get(HeaderRaftIndex))
		}
	}
	// A change to another key does not answer; one to k does.
	done := make(chan *httptest.ResponseRecorder, 1)
	start := time.Now()
	go func() { done <- call(svc, http.MethodGet, "/kv/k?index=1&wait=10s", "", nil) }()
	st.set("other", "y") // 3
	select {
	case rec := <-done:
		t.Fatalf("answered %d %q on another key's change", rec.Code, rec.Body)
	case <-time.After(100 * time.Millisecond):
	}
	st.set("k", "2") // 4
	select {
	case rec := <-done:
		if rec.Code != 200 || rec.Body.String() != "2" || rec.Header().Get(HeaderRaftIndex) != "4" {
			t.Fatalf("blocking query = %d %q index %s, want 2 at 4", rec.Code, rec.Body, rec.Header().Get(HeaderRaftIndex))
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the answer waited for the wait, not the change")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer 5 s after k changed")
	}
	// Nothing changes: the answer comes when the wait ends.
	start = time.Now()
	rec := call(svc, http.MethodGet, "/kv/k?index=4&wait=200ms", "", nil)
	if took := time.Since(start); rec.Code != 200 || rec.Body.String() != "2" || took < 200*time.Millisecond || took > 5*time.Second {
		t.Fatalf("timed-out blocking query = %d %q after %v", rec.Code, rec.Body, took)
	}
	// Waiting for an absent key: its 404 gives the index to pass back,
	// and a creation after it answers.
	rec = call(svc, http.MethodGet, "/kv/new", "", nil)
	if rec.Code != 404 || rec.Header().Get(HeaderRaftIndex) != "4" {
		t.Fatalf("absent key = %d index %q, want 404 at 4", rec.Code, rec.Header().Get(HeaderRaftIndex))
	}
	go func() { done <- call(svc, http.MethodGet, "/kv/new?index=4&wait=10s", "", nil) }()
	st.set("new", "n")
	select {
	case rec := <-done:
		if rec.Code != 200 || rec.Body.String() != "n" {
			t.Fatalf("blocking query on a created key = %d %q", rec.Code, rec.Body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer 5 s after the key was created")
	}
	// Bad input.
	for target, code := range map[string]string{
		"/kv/k?wait=1s":                    "bad_request",
		"/kv/k?index=1&wait=soon":          "bad_request",
		"/kv/k?index=1&wait=-1s":           "bad_request",
		"/kv/k?index=x":                    "bad_request",
		"/kv/k?index=99&wait=1s":           "future_index",
		"/kv/k?index=1&consistency=leader": "bad_request",
	} {
		if rec := call(svc, http.MethodGet, target, "", nil); rec.Code != 400 || !strings.Contains(rec.Body.String(), code) {
			t.Errorf("%s = %d %s, want 400 %s", target, rec.Code, rec.Body, code)
		}
	}
}

// TestEventJSON: an event's data is what encoding/json writes for
// eventJSON, for every kind of key and value.
func TestEventJSON(t *testing.T) {
	for _, e := range []fsm.Event{
		{Type: fsm.EventPut, Key: "a", Value: "1", CreateIndex: 1, ModIndex: 2, PrevModIndex: 1},
		{Type: fsm.EventPut, Key: "k<\"\n>&\u2028", Value: "\xff\xfe", CreateIndex: 3, ModIndex: 3},
		{Type: fsm.EventPut, Key: "e", Value: "", CreateIndex: 4, ModIndex: 4},
		{Type: fsm.EventDelete, Key: "d", Value: "gone", CreateIndex: 1, ModIndex: 9, PrevModIndex: 5},
		{Type: fsm.EventExpire, Key: "x\xff", CreateIndex: 1, ModIndex: 9, PrevModIndex: 5},
	} {
		d := eventJSON{Key: e.Key, CreateIndex: e.CreateIndex, ModIndex: e.ModIndex, PrevModIndex: e.PrevModIndex}
		if e.Type == fsm.EventPut {
			d.jsonValue = valueOf(e.Value)
		}
		want, _ := json.Marshal(d)
		if got := appendEventJSON(nil, &e); string(got) != string(want) {
			t.Errorf("appendEventJSON(%+v) =\n  %s\nwant\n  %s", e, got, want)
		}
	}
}

// TestBlockingListing: GET /kv/{prefix}?recurse&index=N answers its first
// page once something under the prefix changes after N; with a cursor or
// at leader consistency it is refused.
func TestBlockingListing(t *testing.T) {
	svc, st, _ := newFakeService(t, Options{})
	st.set("p/a", "1") // 1
	st.set("q", "x")   // 2
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- call(svc, http.MethodGet, "/kv/p/?recurse&index=1&wait=10s", "", nil) }()
	st.set("q", "y") // 3: not under p/
	select {
	case rec := <-done:
		t.Fatalf("answered %d %s on a change outside the prefix", rec.Code, rec.Body)
	case <-time.After(100 * time.Millisecond):
	}
	st.set("p/b", "2") // 4
	select {
	case rec := <-done:
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"p/b"`) || rec.Header().Get(HeaderRaftIndex) != "4" {
			t.Fatalf("blocking listing = %d %s index %s", rec.Code, rec.Body, rec.Header().Get(HeaderRaftIndex))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no listing 5 s after a change under the prefix")
	}
	for _, target := range []string{
		"/kv/p/?recurse&index=1&after=x",
		"/kv/p/?recurse&index=1&consistency=leader",
		"/kv/p/?recurse&wait=1s",
	} {
		if rec := call(svc, http.MethodGet, target, "", nil); rec.Code != 400 {
			t.Errorf("%s = %d %s, want 400", target, rec.Code, rec.Body)
		}
	}
}

// TestFrameCache: every stream sends an event's frame as the per-stream
// encoding would write it; the second stream to send it gets the stored
// frame; an event at a position whose slot holds another event, or one
// too large to keep, is encoded afresh.
func TestFrameCache(t *testing.T) {
	var c frameCache
	evs := []fsm.Event{
		{Pos: fsm.Pos{Index: 42}, Type: fsm.EventPut, Key: "app/a", Value: "1", CreateIndex: 42, ModIndex: 42},
		{Pos: fsm.Pos{Index: 57, Seq: 3}, Type: fsm.EventDelete, Key: "app/\xff", CreateIndex: 1, ModIndex: 57, PrevModIndex: 9},
		{Pos: fsm.Pos{Index: 58}, Type: fsm.EventExpire, Key: "t", CreateIndex: 2, ModIndex: 58, PrevModIndex: 2},
	}
	for i := range evs {
		e := &evs[i]
		want := fmt.Sprintf("id: %s\nevent: %s\ndata: %s\n\n", e.Pos, e.Type, appendEventJSON(nil, e))
		first := c.frame(e)
		copyEv := *e
		second := c.frame(&copyEv)
		if string(first) != want || string(second) != want {
			t.Fatalf("frame of %+v:\n%q\n%q\nwant %q", e, first, second, want)
		}
		if &first[0] != &second[0] {
			t.Errorf("%s: the second stream encoded the frame again", e.Pos)
		}
	}
	// The same position, another event (never in one process's life, but
	// a hit must match the whole event): its own frame, and it replaces
	// the slot.
	other := evs[0]
	other.Key, other.Value = "app/b", "2"
	if got := string(c.frame(&other)); !strings.Contains(got, `"key":"app/b","value":"2"`) {
		t.Errorf("another event at 42.0: %q", got)
	}
	if got := string(c.frame(&evs[0])); !strings.Contains(got, `"key":"app/a","value":"1"`) {
		t.Errorf("the first event at 42.0 again: %q", got)
	}
	big := fsm.Event{Pos: fsm.Pos{Index: 99}, Type: fsm.EventPut, Key: "big", Value: strings.Repeat("v", frameCacheMaxBytes), ModIndex: 99}
	a, b := c.frame(&big), c.frame(&big)
	if string(a) != string(b) || !strings.HasSuffix(string(a), "\n\n") || &a[0] == &b[0] {
		t.Errorf("a frame over %d bytes: kept (%v) or wrong", frameCacheMaxBytes, &a[0] == &b[0])
	}
	if c.slots[(99*16)%frameCacheSlots].Load() != nil {
		t.Error("a frame over the size bound is stored")
	}
}

// deadlineRecorder records the write deadlines a stream sets.
type deadlineRecorder struct {
	httptest.ResponseRecorder
	deadlines []time.Time
}

func (d *deadlineRecorder) SetWriteDeadline(t time.Time) error {
	d.deadlines = append(d.deadlines, t)
	return nil
}

// TestStreamWriteDeadline: a stream's sends push the write deadline
// forward only when less than streamWriteTimeout of it is left, so every
// send has 30 to 31 s, and a thousand quick sends set it once.
func TestStreamWriteDeadline(t *testing.T) {
	d := &deadlineRecorder{ResponseRecorder: *httptest.NewRecorder()}
	st := sseWriter{w: d, rc: http.NewResponseController(d)}
	start := time.Now()
	for range 1000 {
		st.comment("keep-alive")
		if !st.flush() {
			t.Fatal("flush failed")
		}
	}
	if len(d.deadlines) != 1 || d.deadlines[0].Before(start.Add(streamWriteTimeout+deadlineSlack)) {
		t.Fatalf("deadlines set by 1,000 quick sends: %v, want one, ≥ %s from the start", d.deadlines, streamWriteTimeout+deadlineSlack)
	}
	// Once less than streamWriteTimeout is left (as if 1.5 s passed), the
	// next send re-arms it.
	st.deadline = time.Now().Add(streamWriteTimeout - 500*time.Millisecond)
	before := time.Now()
	st.comment("keep-alive")
	st.flush()
	if len(d.deadlines) != 2 || d.deadlines[1].Before(before.Add(streamWriteTimeout+deadlineSlack)) {
		t.Fatalf("deadlines: %v, want a second one ≥ %s after the send", d.deadlines, streamWriteTimeout+deadlineSlack)
	}
	if got := strings.Count(d.Body.String(), ": keep-alive\n\n"); got != 1001 {
		t.Errorf("%d comments sent, want 1001", got)
	}
}
