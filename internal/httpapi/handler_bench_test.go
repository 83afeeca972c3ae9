package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// BenchmarkHandler measures the HTTP handler path without Raft's network
// or disk: routing, parameter checks, the FSM read and the JSON answer,
// through Service.ServeHTTP with a recorder (no sockets). The store and
// the cluster are fakes over a real FSM: no Raft at all. The write case is
// refused before anything is proposed.
func BenchmarkHandler(b *testing.B) {
	s, st, _ := newFakeService(b, Options{RequestTimeout: 5 * time.Second})
	const keys = 1000
	for i := range keys {
		if res := st.set(fmt.Sprintf("key-%04d", i), strings.Repeat("v", 100)); res.Err != nil {
			b.Fatalf("preload: %v", res.Err)
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
