package client

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestWatchIdleReconnect: a stream that goes silent (a hung node, a cut
// network that leaves the connection open) is dropped after the idle
// timeout and resumed after the last event.
func TestWatchIdleReconnect(t *testing.T) {
	var mu sync.Mutex
	var ids []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n := len(ids)
		ids = append(ids, r.Header.Get("Last-Event-ID"))
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		if n == 0 {
			fmt.Fprint(w, ": raftkv watch  after 1\n\nid: 2.0\nevent: put\ndata: {\"key\":\"a\",\"value\":\"1\"}\n\n")
		} else {
			fmt.Fprint(w, ": raftkv watch  after 2.0\n\nid: 3.0\nevent: put\ndata: {\"key\":\"b\",\"value\":\"2\"}\n\n")
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done() // then silence
	}))
	defer srv.Close()
	c, err := New([]string{srv.URL}, WithRetryBackoff(5*time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.opts.watchIdle = 300 * time.Millisecond
	c.opts.attemptTimeout = 300 * time.Millisecond // bounds the wait for headers too
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch := c.Watch(ctx, "")
	var keys []string
	for ev := range ch {
		keys = append(keys, ev.Key)
		if len(keys) == 2 {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(keys) != "[a b]" || len(ids) < 2 || ids[1] != "2.0" {
		t.Fatalf("keys %v, Last-Event-IDs %q", keys, ids)
	}
}
