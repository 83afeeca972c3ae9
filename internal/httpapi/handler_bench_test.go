package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
)

// BenchmarkHandler measures the HTTP handler path without Raft's network
// or disk: routing, parameter checks, the FSM read and the JSON answer,
// through Service.ServeHTTP with a recorder (no sockets). The node is a
// real one-node cluster, used only as the FSM holder; the write case is
// refused before anything is proposed.
func BenchmarkHandler(b *testing.B) {
	n := testNode(b, "127.0.0.1:1")
	s := New(n, Options{MaxKeyBytes: 1024, MaxValueBytes: 1 << 20, RequestTimeout: 5 * time.Second})
	defer s.Close()
	const keys = 1000
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range keys {
		cmd := &fsm.Command{Op: fsm.OpSet, Key: fmt.Sprintf("key-%04d", i), Value: strings.Repeat("v", 100)}
		if _, err := n.Apply(ctx, cmd); err != nil {
			b.Fatalf("preload: %v", err)
		}
	}
	long := strings.Repeat("k", 2000)
	for _, bc := range []struct {
		name, method, target string
		want                 int
	}{
		{"get_stale", http.MethodGet, "/get?key=key-0042&consistency=stale", http.StatusOK},
		{"kv_get_stale", http.MethodGet, "/kv/key-0042?consistency=stale", http.StatusOK},
		{"get_missing_stale", http.MethodGet, "/get?key=nope&consistency=stale", http.StatusNotFound},
		{"set_refused_key_too_long", http.MethodGet, "/set?key=" + long + "&value=v", http.StatusBadRequest},
		{"status", http.MethodGet, "/status", http.StatusOK},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(bc.method, bc.target, nil)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, req)
				if rec.Code != bc.want {
					b.Fatalf("%s: %d %s, want %d", bc.target, rec.Code, rec.Body, bc.want)
				}
			}
		})
	}
}
