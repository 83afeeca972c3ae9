package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testcluster"
)

// feedEvent is one change event as a watch stream delivers it.
type feedEvent struct {
	ID    string
	Type  string
	Key   string
	Value string
	Mod   uint64
}

func (e feedEvent) String() string { return fmt.Sprintf("%s %s %s=%q", e.ID, e.Type, e.Key, e.Value) }

// watchStream is an open GET /watch/ on one member.
type watchStream struct {
	resp   *http.Response
	events chan feedEvent // changes and resets; progress events are dropped
	cancel context.CancelFunc
}

func openWatch(t *testing.T, c *testcluster.Cluster, i int, prefix string, header http.Header) *watchStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL(i)+"/watch/"+prefix, nil)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("watch on %s answered %d", c.ID(i), resp.StatusCode)
	}
	w := &watchStream{resp: resp, events: make(chan feedEvent, 4096), cancel: cancel}
	t.Cleanup(w.close)
	go func() {
		defer close(w.events)
		sc := bufio.NewScanner(resp.Body)
		var e feedEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if e.Type != "" && e.Type != "progress" {
					w.events <- e
				}
				e = feedEvent{}
			case strings.HasPrefix(line, "id: "):
				e.ID = line[4:]
			case strings.HasPrefix(line, "event: "):
				e.Type = line[7:]
			case strings.HasPrefix(line, "data: "):
				var d struct {
					Key      string `json:"key"`
					Value    string `json:"value"`
					ModIndex uint64 `json:"mod_index"`
				}
				_ = json.Unmarshal([]byte(line[6:]), &d)
				e.Key, e.Value, e.Mod = d.Key, d.Value, d.ModIndex
			}
		}
	}()
	return w
}

func (w *watchStream) close() {
	w.cancel()
	w.resp.Body.Close()
}

// take reads n events, failing after catchUp.
func (w *watchStream) take(t *testing.T, n int) []feedEvent {
	t.Helper()
	var got []feedEvent
	deadline := time.After(catchUp)
	for len(got) < n {
		select {
		case e, ok := <-w.events:
			if !ok {
				t.Fatalf("the stream ended after %d of %d events: %v", len(got), n, got)
			}
			got = append(got, e)
		case <-deadline:
			t.Fatalf("%d of %d events after %v: %v", len(got), n, catchUp, got)
		}
	}
	return got
}

// writeMix writes, through member i, puts, a delete, a transaction and a
// prefix delete under w/ (and a key outside it), and returns the events
// a watcher of w/ must see, in log order.
func writeMix(t *testing.T, c *testcluster.Cluster, i int, round int) []feedEvent {
	t.Helper()
	var want []feedEvent
	put := func(key, value string) {
		idx := c.MustSet(t, i, key, value)
		if strings.HasPrefix(key, "w/") {
			want = append(want, feedEvent{ID: fmt.Sprintf("%d.0", idx), Type: "put", Key: key, Value: value, Mod: idx})
		}
	}
	put(fmt.Sprintf("w/a%d", round), "1")
	put("other", "x")
	put(fmt.Sprintf("w/b%d", round), "2")
	put(fmt.Sprintf("w/a%d", round), "3")
	r := c.MustDo(t, i, http.MethodDelete, fmt.Sprintf("/kv/w/b%d", round), nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("delete: %s", r.Summary())
	}
	want = append(want, feedEvent{ID: fmt.Sprintf("%d.0", r.RaftIndex()), Type: "delete", Key: fmt.Sprintf("w/b%d", round), Mod: r.RaftIndex()})
	body := fmt.Sprintf(`{"success": [{"op": "put", "key": "w/t%d/x", "value": "tx"}, {"op": "put", "key": "w/t%d/y", "value": "ty"}]}`, round, round)
	r = c.MustDo(t, i, http.MethodPost, "/txn", []byte(body), nil)
	if r.Status != http.StatusOK {
		t.Fatalf("txn: %s", r.Summary())
	}
	ti := r.RaftIndex()
	want = append(want,
		feedEvent{ID: fmt.Sprintf("%d.0", ti), Type: "put", Key: fmt.Sprintf("w/t%d/x", round), Value: "tx", Mod: ti},
		feedEvent{ID: fmt.Sprintf("%d.1", ti), Type: "put", Key: fmt.Sprintf("w/t%d/y", round), Value: "ty", Mod: ti})
	r = c.MustDo(t, i, http.MethodDelete, fmt.Sprintf("/kv/w/t%d/?recurse", round), nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("prefix delete: %s", r.Summary())
	}
	di := r.RaftIndex()
	want = append(want,
		feedEvent{ID: fmt.Sprintf("%d.0", di), Type: "delete", Key: fmt.Sprintf("w/t%d/x", round), Mod: di},
		feedEvent{ID: fmt.Sprintf("%d.1", di), Type: "delete", Key: fmt.Sprintf("w/t%d/y", round), Mod: di})
	return want
}

func requireFeed(t *testing.T, got, want []feedEvent) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d events %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("event %d = %v, want %v\n got %v\nwant %v", i, got[i], want[i], got, want)
		}
	}
}

// TestWatchFollowerAndResume: a watcher on a follower sees exactly the
// committed changes under its prefix, in log order (puts, a delete, a
// transaction's two puts at one index, a prefix delete's two deletes);
// one that reconnects to another node with Last-Event-ID gets exactly the
// changes it missed, and a restarted node serves resumes from the history
// it kept in its snapshot.
func TestWatchFollowerAndResume(t *testing.T) {
	c := testcluster.Start(t, 3)
	l := c.Leader(t)
	fs := c.Followers(t)
	w := openWatch(t, c, fs[0], "w/", nil)
	want := writeMix(t, c, l, 1)
	got := w.take(t, len(want))
	requireFeed(t, got, want)

	// The watcher goes away after its third event; writes go on; it
	// comes back on the other follower with its last id.
	last := got[2].ID
	w.close()
	missed := append(want[3:], writeMix(t, c, fs[0], 2)...)
	h := http.Header{}
	h.Set("Last-Event-ID", last)
	r := openWatch(t, c, fs[1], "w/", h)
	requireFeed(t, r.take(t, len(missed)), missed)
	select {
	case e := <-r.events:
		t.Fatalf("an event beyond the missed ones: %v", e)
	case <-time.After(200 * time.Millisecond):
	}

	// A snapshot carries the history: restarted, the follower serves the
	// same resume from it.
	if s := c.Post(t, fs[1], "/snapshot"); s.Status != http.StatusOK {
		t.Fatalf("snapshot: %s", s.Summary())
	}
	r.close()
	c.Kill(t, fs[1])
	c.Restart(t, fs[1])
	ri := openWatch(t, c, fs[1], "w/?index="+last, nil)
	requireFeed(t, ri.take(t, len(missed)), missed)
}

// TestWatchCompacted: a resume from before what the history keeps is 410
// history_compacted with the oldest index served, on every node, and that
// index is served.
func TestWatchCompacted(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.WithWatchHistory(4))
	l := c.Leader(t)
	first := c.MustSet(t, l, "k", "0")
	var idx uint64
	for i := 1; i <= 6; i++ {
		idx = c.MustSet(t, l, "k", strconv.Itoa(i))
	}
	for _, i := range []int{l, c.Followers(t)[0]} {
		waitStale(t, c, i, "k", "6")
		r := c.Get(t, i, fmt.Sprintf("/watch/k?index=%d", first))
		// The history keeps the last 4 events: after idx-4.
		if r.Status != http.StatusGone || r.Code() != "history_compacted" || r.Uint("index") != idx-4 {
			t.Fatalf("resume from %d on %s: %s, want 410 with index %d", first, c.ID(i), r.Summary(), idx-4)
		}
		w := openWatch(t, c, i, fmt.Sprintf("k?index=%d", r.Uint("index")), nil)
		got := w.take(t, 4)
		if got[0].ID != fmt.Sprintf("%d.0", idx-3) || got[3].Value != "6" {
			t.Fatalf("resume from the oldest index served: %v", got)
		}
		w.close()
	}
}

// TestBlockingQueryThroughFollower: a blocking query on a follower answers
// when the key changes, and when its wait ends; a blocking listing
// answers when something under the prefix changes.
func TestBlockingQueryThroughFollower(t *testing.T) {
	c := testcluster.Start(t, 3)
	l, f := c.Leader(t), c.Followers(t)[0]
	idx := c.MustSet(t, l, "cfg/mode", "a")

	done := make(chan testcluster.Response, 1)
	go func() {
		r, _ := c.Do(f, http.MethodGet, fmt.Sprintf("/kv/cfg/mode?index=%d&wait=30s", idx), nil, nil)
		done <- r
	}()
	c.MustSet(t, l, "cfg/other", "x") // not this key
	select {
	case r := <-done:
		t.Fatalf("answered on another key's change: %s", r.Summary())
	case <-time.After(300 * time.Millisecond):
	}
	idx2 := c.MustSet(t, l, "cfg/mode", "b")
	select {
	case r := <-done:
		if r.Status != http.StatusOK || string(r.Body) != "b" || r.RaftIndex() != idx2 {
			t.Fatalf("blocking query: %s, want b at %d", r.Summary(), idx2)
		}
	case <-time.After(catchUp):
		t.Fatal("no answer after the key changed")
	}

	start := time.Now()
	r := c.MustDo(t, f, http.MethodGet, fmt.Sprintf("/kv/cfg/mode?index=%d&wait=300ms", idx2), nil, nil)
	if took := time.Since(start); r.Status != http.StatusOK || string(r.Body) != "b" || took < 300*time.Millisecond {
		t.Fatalf("timed-out blocking query after %v: %s", took, r.Summary())
	}

	go func() {
		r, _ := c.Do(f, http.MethodGet, fmt.Sprintf("/kv/cfg/?recurse&index=%d&wait=30s", idx2), nil, nil)
		done <- r
	}()
	idx3 := c.MustSet(t, l, "cfg/new", "n")
	select {
	case r := <-done:
		if r.Status != http.StatusOK || r.Uint("index") < idx3 || !strings.Contains(string(r.Body), `"cfg/new"`) {
			t.Fatalf("blocking listing: %s, want cfg/new at %d", r.Summary(), idx3)
		}
	case <-time.After(catchUp):
		t.Fatal("no listing after a change under the prefix")
	}
}
