package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
)

func leaseJSON(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("answer %q: %v", body, err)
	}
}

// Bad input is a 400 (or the table's 404/409) and changes nothing.
func TestLeaseBadInput(t *testing.T) {
	s, st, _ := newFakeService(t, Options{})
	st.set("plain", "v")
	for _, tt := range []struct {
		method, target, body string
		status               int
		code                 string
	}{
		{"PUT", "/kv/k?ttl=abc", "v", 400, "bad_request"},
		{"PUT", "/kv/k?ttl=500ms", "v", 400, "bad_request"},
		{"PUT", "/kv/k?ttl=25h", "v", 400, "bad_request"},
		{"PUT", "/kv/k?ttl=1.5ms", "v", 400, "bad_request"},
		{"PUT", "/kv/k?ttl=10s&lease=3", "v", 400, "bad_request"},
		{"PUT", "/kv/k?lease=0", "v", 400, "bad_request"},
		{"PUT", "/kv/k?lease=99", "v", 404, "lease_not_found"},
		{"DELETE", "/kv/plain?ttl=10s", "", 400, "bad_request"},
		{"POST", "/kv/plain", "", 400, "bad_request"},
		{"POST", "/kv/plain?touch", "", 409, "no_ttl"},
		{"POST", "/kv/absent?touch", "", 404, "key_not_found"},
		{"POST", "/leases", "", 400, "bad_request"},
		{"POST", "/leases?ttl=0", "", 400, "bad_request"},
		{"POST", "/leases/99/keepalive", "", 404, "lease_not_found"},
		{"POST", "/leases/99", "", 400, "bad_request"},
		{"GET", "/leases/99", "", 404, "lease_not_found"},
		{"GET", "/leases/abc", "", 400, "bad_request"},
		{"GET", "/leases/99/keepalive", "", 400, "bad_request"},
		{"DELETE", "/leases/99", "", 404, "lease_not_found"},
		{"POST", "/locks/a", "", 400, "bad_request"},
		{"POST", "/locks/a?lease=99", "", 404, "lease_not_found"},
		{"POST", "/locks/a?lease=1&wait=forever", "", 400, "bad_request"},
		{"DELETE", "/locks/a", "", 400, "bad_request"},
	} {
		applied := st.f.AppliedIndex()
		rec := call(s, tt.method, tt.target, tt.body, nil)
		if rec.Code != tt.status {
			t.Errorf("%s %s = %d, want %d: %s", tt.method, tt.target, rec.Code, tt.status, rec.Body)
			continue
		}
		if b := errorOf(t, rec); b.Code != tt.code {
			t.Errorf("%s %s: code %q, want %q", tt.method, tt.target, b.Code, tt.code)
		}
		// A refusal by Apply advances the index by its one entry, but
		// changes no key and no lease.
		if st.f.AppliedIndex() > applied+1 || st.f.LeaseCount() != 0 || st.f.Stats().Keys != 1 {
			t.Errorf("%s %s changed state", tt.method, tt.target)
		}
	}
}

func TestLeaseEndpoints(t *testing.T) {
	s, st, _ := newFakeService(t, Options{})
	rec := call(s, "POST", "/leases?ttl=10s", "", nil)
	var g leaseAnswer
	leaseJSON(t, rec.Body.String(), &g)
	if rec.Code != 200 || g.ID == 0 || g.TTL != 10_000 {
		t.Fatalf("grant = %d %s", rec.Code, rec.Body)
	}
	id := itoa(g.ID)
	for _, k := range []string{"svc/a", "svc/b"} {
		if rec := call(s, "PUT", "/kv/"+k+"?lease="+id, "x", nil); rec.Code != 200 {
			t.Fatalf("put on lease: %d %s", rec.Code, rec.Body)
		}
	}
	rec = call(s, "GET", "/kv/svc/a", "", nil)
	if rec.Header().Get(HeaderLease) != id || rec.Header().Get(HeaderTTL) != "10000" {
		t.Fatalf("GET headers = %v", rec.Header())
	}
	rec = call(s, "GET", "/leases/"+id, "", nil)
	var info struct {
		ID       uint64   `json:"id"`
		TTL      int64    `json:"ttl"`
		Keys     []string `json:"keys"`
		KeyCount int      `json:"key_count"`
	}
	leaseJSON(t, rec.Body.String(), &info)
	if info.KeyCount != 2 || strings.Join(info.Keys, ",") != "svc/a,svc/b" || info.TTL != 10_000 {
		t.Fatalf("lease info = %s", rec.Body)
	}
	if rec := call(s, "POST", "/leases/"+id+"/keepalive", "", nil); rec.Code != 200 {
		t.Fatalf("keepalive: %d %s", rec.Code, rec.Body)
	}
	// Lock: taken, held for another, released only with the token.
	rec = call(s, "POST", "/locks/job?lease="+id, "", nil)
	var lk struct {
		Token uint64 `json:"token"`
	}
	leaseJSON(t, rec.Body.String(), &lk)
	e, _ := st.f.Get(LockPrefix + "job")
	if rec.Code != 200 || lk.Token == 0 || e.CreateIndex != lk.Token {
		t.Fatalf("lock = %d %s (key %+v)", rec.Code, rec.Body, e)
	}
	// The holding lease asking again (a retry whose answer was lost) gets
	// its token back and changes nothing; another lease is refused.
	applied := st.f.AppliedIndex()
	rec = call(s, "POST", "/locks/job?lease="+id, "", nil)
	var again struct {
		Token uint64 `json:"token"`
	}
	leaseJSON(t, rec.Body.String(), &again)
	if e2, _ := st.f.Get(LockPrefix + "job"); rec.Code != 200 || again.Token != lk.Token || e2 != e {
		t.Fatalf("lock again by its holder = %d %s (key %+v)", rec.Code, rec.Body, e2)
	}
	if st.f.AppliedIndex() > applied+1 {
		t.Fatalf("lock again applied %d entries", st.f.AppliedIndex()-applied)
	}
	other := call(s, "POST", "/leases?ttl=10s", "", nil)
	var g2 leaseAnswer
	leaseJSON(t, other.Body.String(), &g2)
	rec = call(s, "POST", "/locks/job?lease="+itoa(g2.ID), "", nil)
	if b := errorOf(t, rec); rec.Code != 409 || b.Code != "lock_held" || b.Index == nil || *b.Index != lk.Token {
		t.Fatalf("lock by another lease = %d %s", rec.Code, rec.Body)
	}
	// A stale token is told in tokens: the holder's is the 409's index.
	rec = call(s, "DELETE", "/locks/job?token="+itoa(lk.Token+100), "", nil)
	if b := errorOf(t, rec); rec.Code != 409 || b.Code != "cas_failed" || b.Index == nil || *b.Index != lk.Token ||
		!strings.Contains(b.Error, "held with token "+itoa(lk.Token)+", not "+itoa(lk.Token+100)) {
		t.Fatalf("release with a wrong token = %d %s", rec.Code, rec.Body)
	}
	if rec := call(s, "DELETE", "/locks/job?token="+itoa(lk.Token), "", nil); rec.Code != 200 {
		t.Fatalf("release = %d %s", rec.Code, rec.Body)
	}
	rec = call(s, "DELETE", "/locks/job?token="+itoa(lk.Token), "", nil)
	if b := errorOf(t, rec); rec.Code != 409 || b.Code != "cas_failed" || !strings.Contains(b.Error, "is not held") {
		t.Fatalf("release of a free lock = %d %s", rec.Code, rec.Body)
	}
	rec = call(s, "DELETE", "/leases/"+id, "", nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"deleted":2`) {
		t.Fatalf("revoke = %d %s", rec.Code, rec.Body)
	}
	if st.f.Stats().Keys != 0 {
		t.Fatal("keys left after revoke")
	}
	// A TTL key: touch answers its TTL; /get shows ttl and lease.
	call(s, "PUT", "/kv/t?ttl=30s", "v", nil)
	rec = call(s, "POST", "/kv/t?touch", "", nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"ttl":30000`) {
		t.Fatalf("touch = %d %s", rec.Code, rec.Body)
	}
	rec = call(s, "GET", "/get?key=t", "", nil)
	if !strings.Contains(rec.Body.String(), `"ttl":30000`) || !strings.Contains(rec.Body.String(), `"lease":`) {
		t.Fatalf("/get of a ttl key = %s", rec.Body)
	}
}

func itoa(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// Listings show ttl and lease for keys that have them, and only for them.
func TestListingShowsTTL(t *testing.T) {
	s, st, _ := newFakeService(t, Options{})
	st.set("l/plain", "v")
	if rec := call(s, "PUT", "/kv/l/ttl?ttl=30s", "v", nil); rec.Code != 200 {
		t.Fatalf("put: %d %s", rec.Code, rec.Body)
	}
	rec := call(s, "GET", "/kv/l/?recurse", "", nil)
	var page struct {
		Items []map[string]any `json:"items"`
	}
	leaseJSON(t, rec.Body.String(), &page)
	if len(page.Items) != 2 {
		t.Fatalf("listing = %s", rec.Body)
	}
	if _, ok := page.Items[0]["ttl"]; ok {
		t.Fatalf("plain key listed with a ttl: %s", rec.Body)
	}
	if page.Items[1]["ttl"] != float64(30000) || page.Items[1]["lease"] == nil {
		t.Fatalf("ttl key listed without its ttl: %s", rec.Body)
	}
}
