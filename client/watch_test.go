package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testwait"
)

// sseServer is a fake node whose /watch/ answers are scripted per
// connection: the n-th connection (from 0) is served by serve(n, w, r).
type sseServer struct {
	*httptest.Server
	mu      sync.Mutex
	conns   int
	lastIDs []string // each connection's Last-Event-ID
	serve   func(n int, w http.ResponseWriter, r *http.Request)
}

func newSSEServer(t *testing.T, serve func(n int, w http.ResponseWriter, r *http.Request)) *sseServer {
	s := &sseServer{serve: serve}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		n := s.conns
		s.conns++
		s.lastIDs = append(s.lastIDs, r.Header.Get("Last-Event-ID"))
		s.mu.Unlock()
		s.serve(n, w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sseServer) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lastIDs...)
}

func stream(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, text)
	w.(http.Flusher).Flush()
}

func fastClient(t *testing.T, eps ...string) *client.Client {
	cl, err := client.New(eps, client.WithRetryBackoff(5*time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// next reads one event, failing after a few seconds.
func next(t *testing.T, ch <-chan client.Event) (client.Event, bool) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		return ev, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return client.Event{}, false
}

// TestWatchResumes: a stream that ends is resumed after the last id it
// received, progress events included (they move the position but are not
// delivered by default); the first stream's start comes from its comment.
func TestWatchResumes(t *testing.T) {
	s := newSSEServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 0:
			stream(w, ": raftkv watch p/ after 41\n\nid: 42.0\nevent: put\ndata: {\"key\":\"p/a\",\"value\":\"1\",\"create_index\":42,\"mod_index\":42,\"prev_mod_index\":0}\n\n"+
				"id: 45\nevent: progress\ndata: {\"index\":45}\n\n")
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":"shutting down","code":"shutting_down"}`)
		case 2:
			// A repeat of an old event is not delivered again.
			stream(w, ": raftkv watch p/ after 45\n\nid: 42.0\nevent: put\ndata: {\"key\":\"p/a\"}\n\n"+
				"id: 46.1\nevent: delete\ndata: {\"key\":\"p/b\",\"create_index\":40,\"mod_index\":46,\"prev_mod_index\":40}\n\n")
			<-r.Context().Done()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := fastClient(t, s.URL).Watch(ctx, "p/")
	ev, _ := next(t, ch)
	if ev.Type != client.EventPut || ev.ID != "42.0" || ev.Index != 42 || ev.Key != "p/a" || string(ev.Value) != "1" || ev.ModIndex != 42 {
		t.Fatalf("first event %+v", ev)
	}
	ev, _ = next(t, ch)
	if ev.Type != client.EventDelete || ev.ID != "46.1" || ev.Key != "p/b" || ev.PrevModIndex != 40 || ev.Value != nil {
		t.Fatalf("second event %+v", ev)
	}
	if ids := s.ids(); fmt.Sprint(ids) != "[ 45 45]" {
		t.Fatalf("Last-Event-IDs %q, want none, then 45 twice", ids)
	}
	cancel()
	if _, ok := next(t, ch); ok {
		t.Fatal("channel not closed after cancel")
	}
}

// TestWatchProgressAndStart: WithStartIndex sends the position,
// WithProgressEvents delivers progress.
func TestWatchProgressAndStart(t *testing.T) {
	s := newSSEServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		stream(w, ": raftkv watch  after 7.2\n\nid: 9\nevent: progress\ndata: {\"index\":9}\n\n")
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := fastClient(t, s.URL).Watch(ctx, "", client.WithStartIndex("7.2"), client.WithProgressEvents())
	if ev, _ := next(t, ch); ev.Type != client.EventProgress || ev.Index != 9 || ev.ID != "9" {
		t.Fatalf("%+v", ev)
	}
	if ids := s.ids(); len(ids) != 1 || ids[0] != "7.2" {
		t.Fatalf("Last-Event-ID %q", ids)
	}
}

// TestWatchReset: a 410 at connect and a reset event in the stream each
// end the watch with EventReset matching ErrHistoryCompacted; a 4xx
// ends it with EventError.
func TestWatchReset(t *testing.T) {
	for name, tc := range map[string]struct {
		serve     func(w http.ResponseWriter)
		events    int // changes before the last event
		last      client.EventType
		index     uint64
		sentinels error
	}{
		"410": {func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusGone)
			fmt.Fprint(w, `{"error":"history compacted","code":"history_compacted","index":5012}`)
		}, 0, client.EventReset, 5012, client.ErrHistoryCompacted},
		"reset event": {func(w http.ResponseWriter) {
			stream(w, ": raftkv watch  after 1\n\nid: 2.0\nevent: put\ndata: {\"key\":\"a\",\"value\":\"\"}\n\n"+
				"event: reset\ndata: {\"error\":\"fell behind\",\"code\":\"history_compacted\",\"index\":77}\n\n")
		}, 1, client.EventReset, 77, client.ErrHistoryCompacted},
		"403": {func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"error":"forbidden","code":"forbidden"}`)
		}, 0, client.EventError, 0, client.ErrForbidden},
	} {
		t.Run(name, func(t *testing.T) {
			s := newSSEServer(t, func(n int, w http.ResponseWriter, r *http.Request) { tc.serve(w) })
			ch := fastClient(t, s.URL).Watch(context.Background(), "")
			for range tc.events {
				if ev, _ := next(t, ch); ev.Type != client.EventPut {
					t.Fatalf("%+v", ev)
				}
			}
			ev, _ := next(t, ch)
			if ev.Type != tc.last || ev.Index != tc.index || !errors.Is(ev.Err, tc.sentinels) {
				t.Fatalf("last event %+v (err %v)", ev, ev.Err)
			}
			if _, ok := next(t, ch); ok {
				t.Fatal("channel not closed")
			}
		})
	}
}

// TestWatchNoLeak: when ctx ends, the watch's goroutine and connection
// end, whether it is streaming or retrying a node that refuses it.
func TestWatchNoLeak(t *testing.T) {
	for name, serve := range map[string]func(n int, w http.ResponseWriter, r *http.Request){
		"streaming": func(n int, w http.ResponseWriter, r *http.Request) {
			stream(w, ": raftkv watch  after 1\n\n")
			<-r.Context().Done()
		},
		"retrying": func(n int, w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":"no leader","code":"no_leader"}`)
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := newSSEServer(t, serve)
			cl := fastClient(t, s.URL)
			before := runtime.NumGoroutine()
			ctx, cancel := context.WithCancel(context.Background())
			ch := cl.Watch(ctx, "")
			testwait.For(t, 5*time.Second, "the watch to connect", func() error {
				if len(s.ids()) < 2 && name == "retrying" || len(s.ids()) < 1 {
					return errors.New("not yet")
				}
				return nil
			})
			cancel()
			if _, ok := next(t, ch); ok {
				t.Fatal("an event after cancel")
			}
			_ = cl.Close()
			s.CloseClientConnections()
			testwait.For(t, 5*time.Second, "goroutines back to where they were", func() error {
				if n := runtime.NumGoroutine(); n > before {
					return fmt.Errorf("%d goroutines, %d before the watch", n, before)
				}
				return nil
			})
		})
	}
}
