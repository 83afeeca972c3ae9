package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/node"
)

// call serves one request through the whole Service.
func call(s *Service, method, target, body string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.RemoteAddr = "127.0.0.1:40000"
	for k, vs := range header {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

// callWithin is call with a request context that ends after d.
func callWithin(s *Service, d time.Duration, method, target, body string, header http.Header) *httptest.ResponseRecorder {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, method, target, strings.NewReader(body))
	req.RemoteAddr = "127.0.0.1:40000"
	for k, vs := range header {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

var form = http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}

// TestHandlers drives the handlers over a fake store and cluster (this
// node leads): parameters, status codes, error codes and headers.
func TestHandlers(t *testing.T) {
	tests := []struct {
		name, method, target, body string
		header                     http.Header
		status                     int
		code                       string            // error code, for error answers
		headers                    map[string]string // expected answer headers
		contains                   string            // a substring of the body
	}{
		{name: "set", method: "GET", target: "/set?key=a&value=1", status: 200, headers: map[string]string{HeaderRaftIndex: "2", HeaderServedBy: "n1"}, contains: `"value":"1"`},
		{name: "set by form", method: "POST", target: "/set", body: "key=b&value=2", header: form, status: 200, contains: `"key":"b"`},
		{name: "set without value", method: "GET", target: "/set?key=a", status: 400, code: "bad_request"},
		{name: "set empty value", method: "GET", target: "/set?key=e&value=", status: 200},
		{name: "set key too long", method: "GET", target: "/set?key=" + strings.Repeat("k", 1025) + "&value=v", status: 400, code: "bad_request"},
		{name: "set value too large", method: "PUT", target: "/kv/big", body: strings.Repeat("v", 1<<20+1), status: 413, code: "too_large"},
		{name: "set parameter twice", method: "GET", target: "/set?key=a&key=b&value=1", status: 400, code: "bad_request"},
		{name: "set form of another type", method: "POST", target: "/set", body: "{}", header: http.Header{"Content-Type": {"application/json"}}, status: 400, code: "bad_request"},
		{name: "cas match", method: "GET", target: "/set?key=a&value=2&cas=1", status: 200},
		{name: "cas conflict", method: "GET", target: "/set?key=a&value=2&cas=99", status: 409, code: "cas_failed", contains: `"index":1`},
		{name: "cas not a number", method: "GET", target: "/set?key=a&value=2&cas=x", status: 400, code: "bad_request"},
		{name: "idempotency keys disagree", method: "GET", target: "/set?key=a&value=2&requestId=r1", header: http.Header{HeaderIdempotencyKey: {"r2"}}, status: 400, code: "bad_request"},
		{name: "get", method: "GET", target: "/get?key=a", status: 200, headers: map[string]string{HeaderRaftIndex: "1"}, contains: `"mod_index":1`},
		{name: "get missing", method: "GET", target: "/get?key=nope", status: 404, code: "key_not_found"},
		{name: "get stale", method: "GET", target: "/get?key=a&consistency=stale", status: 200, headers: map[string]string{HeaderAppliedIndex: "1", HeaderLastContact: "3"}},
		{name: "get bad consistency", method: "GET", target: "/get?key=a&consistency=eventual", status: 400, code: "bad_request"},
		{name: "get minIndex", method: "GET", target: "/get?key=a&minIndex=1", status: 200},
		{name: "get min_index alias", method: "GET", target: "/get?key=a&min_index=1", status: 200},
		{name: "get minIndex and min_index", method: "GET", target: "/get?key=a&minIndex=1&min_index=1", status: 400, code: "bad_request"},
		{name: "get minIndex not a number", method: "GET", target: "/get?key=a&minIndex=x", status: 400, code: "bad_request"},
		{name: "kv get", method: "GET", target: "/kv/a", status: 200, headers: map[string]string{HeaderCreateIndex: "1", "Content-Type": "application/octet-stream"}, contains: "0"},
		{name: "kv get escaped slash", method: "GET", target: "/kv/x%2Fy", status: 404, code: "key_not_found", contains: `x/y`},
		{name: "kv delete", method: "DELETE", target: "/kv/a", status: 200},
		{name: "remove missing", method: "GET", target: "/remove?key=nope", status: 404, code: "key_not_found"},
		{name: "join", method: "GET", target: "/join?nodeId=n2&raftPort=9002", status: 200, contains: `"raft_addr":"127.0.0.1:9002"`},
		{name: "join learner, bare voter flag is true", method: "GET", target: "/join?nodeId=n2&raftAddr=h:1&voter", status: 200, contains: `"voter":true`},
		{name: "join learner", method: "GET", target: "/join?nodeId=n2&raftAddr=h:1&voter=0", status: 200, contains: `"voter":false`},
		{name: "join bad voter", method: "GET", target: "/join?nodeId=n2&raftAddr=h:1&voter=maybe", status: 400, code: "bad_request"},
		{name: "join without port", method: "GET", target: "/join?nodeId=n2", status: 400, code: "bad_request"},
		{name: "join unspecified address", method: "GET", target: "/join?nodeId=n2&raftAddr=0.0.0.0:1", status: 400, code: "bad_request"},
		{name: "join bad node id", method: "GET", target: "/join?nodeId=a%20b&raftPort=1", status: 400, code: "bad_request"},
		{name: "leave", method: "POST", target: "/leave?nodeId=n2", status: 200, contains: `"index":8`},
		{name: "leave without id", method: "POST", target: "/leave", status: 400, code: "bad_request"},
		{name: "promote", method: "POST", target: "/promote?nodeId=n2", status: 200, contains: `"change":"promoted"`},
		{name: "transfer", method: "POST", target: "/transfer-leadership", status: 200, contains: `"leader":"n2"`},
		{name: "nodes", method: "GET", target: "/nodes", status: 200, contains: `"reachable":true`},
		{name: "nodes stale bare", method: "GET", target: "/nodes?stale", status: 200},
		{name: "nodes stale=1", method: "GET", target: "/nodes?stale=1", status: 200},
		{name: "nodes bad stale", method: "GET", target: "/nodes?stale=yes", status: 400, code: "bad_request"},
		{name: "status", method: "GET", target: "/status", status: 200, contains: `"id":"n1"`},
		{name: "health", method: "GET", target: "/health", status: 200, contains: `"status":"ok"`},
		{name: "ready", method: "GET", target: "/ready", status: 200, contains: `"ready":true`},
		{name: "snapshot", method: "POST", target: "/snapshot", status: 200},
		{name: "metrics", method: "GET", target: "/metrics", status: 200, contains: "go_goroutines"},
		{name: "peer info", method: "GET", target: cluster.PathInfo, status: 200, contains: `"id":"n1"`},
		{name: "unknown route", method: "GET", target: "/nope", status: 404, code: "not_found"},
		{name: "wrong method", method: "DELETE", target: "/set", status: 405, code: "method_not_allowed", headers: map[string]string{"Allow": "GET, POST"}},
		{name: "wrong method on kv", method: "PATCH", target: "/kv/a", status: 405, code: "method_not_allowed", headers: map[string]string{"Allow": "GET, HEAD, PUT, DELETE, POST"}},
		{name: "wrong method on leave", method: "GET", target: "/leave", status: 405, code: "method_not_allowed", headers: map[string]string{"Allow": "POST"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, st, _ := newFakeService(t, Options{})
			st.set("a", "0") // index 1
			rec := call(s, tt.method, tt.target, tt.body, tt.header)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if tt.code != "" {
				if got := errorOf(t, rec).Code; got != tt.code {
					t.Fatalf("code %q, want %q: %s", got, tt.code, rec.Body)
				}
			}
			for h, want := range tt.headers {
				if got := rec.Header().Get(h); got != want {
					t.Errorf("%s: %q, want %q", h, got, want)
				}
			}
			if !strings.Contains(rec.Body.String(), tt.contains) {
				t.Errorf("body %q does not contain %q", rec.Body, tt.contains)
			}
		})
	}
}

// TestIdempotentReplay: a repeated Idempotency-Key with the same request
// (by either API form) answers the first outcome, marked as replayed;
// with a different request it is a 422 idempotency_key_reused that names
// the key and changes nothing.
func TestIdempotentReplay(t *testing.T) {
	s, st, _ := newFakeService(t, Options{})
	h := http.Header{HeaderIdempotencyKey: {"k1"}}
	first := call(s, "PUT", "/kv/a", "1", h)
	for _, target := range []string{"/kv/a", "/set?key=a&value=1&requestId=k1"} {
		method, body := "PUT", "1"
		if target != "/kv/a" {
			method, body = "GET", ""
		}
		again := call(s, method, target, body, h)
		if first.Code != 200 || again.Code != 200 || again.Header().Get(HeaderReplayed) != "true" ||
			again.Header().Get(HeaderRaftIndex) != first.Header().Get(HeaderRaftIndex) {
			t.Fatalf("%s: first %d %v, again %d %v", target, first.Code, first.Header(), again.Code, again.Header())
		}
	}
	applied := st.f.AppliedIndex()
	other := call(s, "PUT", "/kv/a", "2", h)
	if other.Code != http.StatusUnprocessableEntity || other.Header().Get(HeaderReplayed) != "" {
		t.Fatalf("reuse for another value: %d %v %s, want 422 not replayed", other.Code, other.Header(), other.Body)
	}
	if b := errorOf(t, other); b.Code != "idempotency_key_reused" || !strings.Contains(b.Error, `"k1"`) || strings.Contains(b.Error, `"2"`) {
		t.Fatalf("reuse for another value: %+v", b)
	}
	if e, _ := st.f.Get("a"); e.Value != "1" || st.f.AppliedIndex() != applied+1 {
		t.Fatalf("after the refused reuse: a=%q, applied %d→%d (one no-op entry)", e.Value, applied, st.f.AppliedIndex())
	}
}

// TestClusterErrors: the cluster's errors reach the client through the
// error table, 503s with Retry-After.
func TestClusterErrors(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{errors.Join(cluster.ErrLeaderUnreachable, errors.New("dial")), 503, "leader_unreachable"},
		{cluster.ErrHopLimit, 503, "hop_limit"},
		{node.ErrNoLeader, 503, "no_leader"},
		{errors.Join(cluster.ErrForwardUnknown, errors.New("reset")), 504, "forward_unknown"},
		{cluster.ErrRejected, 400, "bad_request"},
	}
	for _, tt := range tests {
		s, _, cl := newFakeService(t, Options{})
		cl.err = tt.err
		for _, target := range []string{"/set?key=a&value=1", "/get?key=a"} {
			rec := call(s, "GET", target, "", nil)
			if rec.Code != tt.status || errorOf(t, rec).Code != tt.code {
				t.Errorf("%v on %s: %d %s, want %d %s", tt.err, target, rec.Code, rec.Body, tt.status, tt.code)
			}
			if tt.status == 503 && rec.Header().Get("Retry-After") != "1" {
				t.Errorf("%v on %s: no Retry-After", tt.err, target)
			}
		}
	}
}

// TestForwarding: on a follower, the requests that must run on the leader
// go to it with the right forward: the route's write class, the form body,
// the canonical /join and the extra hop a leave may take; reads and writes
// through the peer protocol name the leader that served them.
func TestForwarding(t *testing.T) {
	tests := []struct {
		method, target, body string
		header               http.Header
		write, reforward     bool
		uri                  string // Forward.URI; "" for the request's own
		sentBody             string
	}{
		{method: "GET", target: "/get?key=a&consistency=leader"},
		{method: "GET", target: "/kv/a?consistency=leader"},
		{method: "GET", target: "/nodes"},
		{method: "GET", target: "/join?nodeId=n2&raftPort=9002", write: true,
			uri: "/join?" + url.Values{"nodeId": {"n2"}, "raftAddr": {"127.0.0.1:9002"}}.Encode()},
		{method: "POST", target: "/leave", body: "nodeId=n2", header: form, write: true, reforward: true, sentBody: "nodeId=n2"},
		{method: "POST", target: "/promote?nodeId=n2", write: true},
		{method: "POST", target: "/transfer-leadership", write: true},
	}
	for _, tt := range tests {
		s, st, cl := newFakeService(t, Options{})
		cl.follower = true
		rec := call(s, tt.method, tt.target, tt.body, tt.header)
		if rec.Code != statusForwarded || rec.Header().Get(HeaderServedBy) != "n2" {
			t.Fatalf("%s %s: %d %v %s, want the leader's answer", tt.method, tt.target, rec.Code, rec.Header(), rec.Body)
		}
		if len(cl.forwarded) != 1 || len(st.calls) != 0 {
			t.Fatalf("%s %s: forwarded %d times, served here %v", tt.method, tt.target, len(cl.forwarded), st.calls)
		}
		f := cl.forwarded[0]
		var sent string
		if f.Body != nil {
			b := make([]byte, f.Size)
			_, _ = f.Body.ReadAt(b, 0)
			sent = string(b)
		}
		if f.Write != tt.write || f.Reforward != tt.reforward || f.URI != tt.uri || sent != tt.sentBody || f.RequestID == "" {
			t.Errorf("%s %s: forward %+v (body %q), want write %v reforward %v uri %q body %q and a request id",
				tt.method, tt.target, f, sent, tt.write, tt.reforward, tt.uri, tt.sentBody)
		}
	}

	// Stale reads and writes do not use the HTTP forward: a write goes
	// through the peer protocol and names the leader that applied it.
	s, st, cl := newFakeService(t, Options{})
	cl.follower = true
	st.set("a", "0")
	for _, target := range []string{"/get?key=a&consistency=stale", "/nodes?stale", "/set?key=a&value=1"} {
		if rec := call(s, "GET", target, "", nil); rec.Code != 200 {
			t.Fatalf("%s: %d %s", target, rec.Code, rec.Body)
		}
	}
	if len(cl.forwarded) != 0 {
		t.Fatalf("forwarded %d requests", len(cl.forwarded))
	}
	if rec := call(s, "GET", "/set?key=a&value=2", "", nil); rec.Header().Get(HeaderServedBy) != "n2" {
		t.Fatalf("a write applied by the leader says %s=%q", HeaderServedBy, rec.Header().Get(HeaderServedBy))
	}
}

// TestNodesProbes: /nodes shows each member as its probe found it.
func TestNodesProbes(t *testing.T) {
	s, st, cl := newFakeService(t, Options{})
	st.members = append(st.members,
		node.Member{ID: "n2", RaftAddr: "h2:9000", HTTPAddr: "h2:8000", Suffrage: node.SuffrageVoter},
		node.Member{ID: "n3", RaftAddr: "h3:9000", HTTPAddr: "h3:8000", Suffrage: node.SuffrageLearner},
		node.Member{ID: "n4", RaftAddr: "h4:9000"})
	contact := 1.5
	cl.probes = map[string]cluster.Probe{
		"h2:8000": {Reachable: true, Status: &node.Status{State: "Follower", LastContactMs: &contact, Term: 3, CommitIndex: 20, AppliedIndex: 18, LastLogIndex: 19}},
		"h3:8000": {Reachable: true}, // /health only
	}
	rec := call(s, "GET", "/nodes", "", nil)
	var views []nodeView
	if err := json.Unmarshal(rec.Body.Bytes(), &views); err != nil || len(views) != 4 {
		t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
	}
	if v := views[1]; !v.Reachable || v.State != "Follower" || v.LastContactMs == nil || *v.LastContactMs != 1.5 {
		t.Errorf("n2: %+v", v)
	}
	// The member's own term, commit and applied index, and its lag behind
	// the serving node's last log index (the fake's applied index).
	for i := range 25 {
		st.set("k"+strconv.Itoa(i), "v")
	}
	ref := st.f.AppliedIndex()
	rec = call(s, "GET", "/nodes", "", nil)
	if err := json.Unmarshal(rec.Body.Bytes(), &views); err != nil {
		t.Fatal(err)
	}
	if v := views[1]; v.Term == nil || *v.Term != 3 || v.CommitIndex == nil || *v.CommitIndex != 20 || *v.AppliedIndex != 18 || *v.Lag != ref-19 {
		t.Errorf("n2's term, commit, applied, lag: %+v", v)
	}
	for _, field := range []string{`"term":3`, `"commit_index":20`, `"applied_index":18`, `"lag":` + strconv.FormatUint(ref-19, 10)} {
		if !strings.Contains(rec.Body.String(), field) {
			t.Errorf("/nodes has no %s: %s", field, rec.Body)
		}
	}
	if v := views[2]; v.Term != nil || v.CommitIndex != nil {
		t.Errorf("n3 answered /health only, yet has a term or commit index: %+v", v)
	}
	if v := views[2]; !v.Reachable || v.State != "" || v.MatchIndex != nil || v.Suffrage != "learner" {
		t.Errorf("n3: %+v", v)
	}
	if v := views[3]; v.Reachable {
		t.Errorf("n4 (no HTTP address) is reachable: %+v", v)
	}
}
