package integration

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testcluster"
)

// TestBadInput: malformed requests get the documented status and code,
// validation failures are answered by the node that received them (never
// forwarded), and none of them writes anything.
func TestBadInput(t *testing.T) {
	const maxValue = 1024
	c := testcluster.Start(t, 3, testcluster.WithMaxValueBytes(maxValue))
	l := c.Leader(t)
	f := others(c, l)[0]
	c.MustSet(t, l, "existing", "v")
	waitStale(t, c, f, "existing", "v")

	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	longKey := strings.Repeat("k", c.MaxKeyBytes()+1)
	bigValue := strings.Repeat("v", maxValue+1)

	type where int
	const (
		leaderOnly where = iota
		both             // validation: must be answered locally by a follower too
	)
	tests := []struct {
		name   string
		method string
		target string
		body   []byte
		header http.Header
		raw    bool // send with a hand-written request (lying Content-Length)
		status int
		code   string // "" when net/http itself answers (not JSON)
		allow  string // expected Allow header for 405
		on     where
	}{
		{name: "set missing key", method: "GET", target: "/set?value=1", status: 400, code: "bad_request", on: both},
		{name: "set empty key", method: "GET", target: "/set?key=&value=1", status: 400, code: "bad_request", on: both},
		{name: "set missing value", method: "GET", target: "/set?key=nv", status: 400, code: "bad_request", on: both},
		{name: "set oversize key", method: "GET", target: "/set?key=" + longKey + "&value=1", status: 400, code: "bad_request", on: both},
		{name: "get oversize key", method: "GET", target: "/get?key=" + longKey, status: 400, code: "bad_request", on: both},
		{name: "PUT /kv oversize value", method: "PUT", target: "/kv/big", body: []byte(bigValue), status: 413, code: "too_large", on: both},
		{
			name: "form POST oversize value", method: "POST", target: "/set",
			body: []byte(url.Values{"key": {"big"}, "value": {bigValue}}.Encode()), header: form,
			status: 413, code: "too_large", on: both,
		},
		{name: "Content-Length over limit, no body", method: "PUT", target: "/kv/cl", raw: true, status: 413, code: "too_large", on: both},
		{name: "PUT /kv empty key", method: "PUT", target: "/kv/", body: []byte("x"), status: 400, code: "bad_request", on: both},
		{name: "invalid UTF-8 key", method: "GET", target: "/set?key=%ff&value=1", status: 400, code: "bad_request", on: both},
		{name: "invalid UTF-8 in form", method: "POST", target: "/set", body: []byte("key=%ff&value=1"), header: form, status: 400, code: "bad_request", on: both},
		{name: "malformed escape", method: "GET", target: "/set?key=%zz&value=1", status: 400, code: "bad_request", on: both},
		{name: "duplicate parameter", method: "GET", target: "/set?key=a&key=b&value=1", status: 400, code: "bad_request", on: both},
		{name: "duplicate across query and form", method: "POST", target: "/set?key=a", body: []byte("key=b&value=1"), header: form, status: 400, code: "bad_request", on: both},
		{name: "set with text/plain body", method: "POST", target: "/set", body: []byte("key=tp&value=1"), header: http.Header{"Content-Type": {"text/plain"}}, status: 400, code: "bad_request", on: both},
		{name: "get bogus consistency", method: "GET", target: "/get?key=existing&consistency=bogus", status: 400, code: "bad_request", on: both},
		{name: "set non-numeric cas", method: "GET", target: "/set?key=c&value=1&cas=abc", status: 400, code: "bad_request", on: both},
		{name: "get non-numeric min_index", method: "GET", target: "/get?key=existing&min_index=x", status: 400, code: "bad_request", on: both},
		{name: "get non-numeric minIndex", method: "GET", target: "/get?key=existing&minIndex=x", status: 400, code: "bad_request", on: both},
		{
			name: "requestId disagrees with Idempotency-Key", method: "GET", target: "/set?key=c&value=1&requestId=a",
			header: http.Header{"Idempotency-Key": {"b"}}, status: 400, code: "bad_request", on: both,
		},
		{name: "set unknown ttl", method: "GET", target: "/set?key=a&value=1&ttl=2", status: 400, code: "bad_request", on: both},
		{name: "set typo cass", method: "GET", target: "/set?key=existing&value=2&cass=0", status: 400, code: "bad_request", on: both},
		{name: "set unknown in form", method: "POST", target: "/set", body: []byte("key=a&value=1&ttl=2"), header: form, status: 400, code: "bad_request", on: both},
		{name: "DELETE /kv recurse with cas", method: "DELETE", target: "/kv/existing?recurse=true&cas=1", status: 400, code: "bad_request", on: both},
		{name: "DELETE /kv/ recurse empty prefix", method: "DELETE", target: "/kv/?recurse", status: 400, code: "bad_request", on: both},
		{name: "listing limit without recurse", method: "GET", target: "/kv/existing?limit=5", status: 400, code: "bad_request", on: both},
		{name: "listing negative limit", method: "GET", target: "/kv/?recurse&limit=-1", status: 400, code: "bad_request", on: both},
		{name: "listing malformed cursor", method: "GET", target: "/kv/?recurse&after=zz", status: 400, code: "bad_cursor", on: both},
		{name: "txn malformed JSON", method: "POST", target: "/txn", body: []byte(`{"compare": [`), status: 400, code: "bad_request", on: both},
		{name: "txn unknown op", method: "POST", target: "/txn", body: []byte(`{"success": [{"op": "rename", "key": "existing"}]}`), status: 400, code: "bad_request", on: both},
		{name: "get index and wait", method: "GET", target: "/get?key=existing&index=5&wait=10s", status: 400, code: "bad_request", on: both},
		{
			name: "browser cross-site GET /set", method: "GET", target: "/set?key=a&value=1",
			header: http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"http://evil.example"}}, status: 403, code: "cross_site_refused", on: both,
		},
		{name: "leave unknown node", method: "POST", target: "/leave?nodeId=ghost", status: 404, code: "node_not_found", on: leaderOnly},
		{name: "leave without nodeId", method: "POST", target: "/leave", status: 400, code: "bad_request", on: both},
		{name: "leave bad nodeId", method: "POST", target: "/leave?nodeId=a%20b", status: 400, code: "bad_request", on: both},
		{name: "join raftPort=0", method: "GET", target: "/join?nodeId=x1&raftPort=0", status: 400, code: "bad_request", on: both},
		{name: "join raftPort=70000", method: "GET", target: "/join?nodeId=x1&raftPort=70000", status: 400, code: "bad_request", on: both},
		{name: "join raftPort=abc", method: "GET", target: "/join?nodeId=x1&raftPort=abc", status: 400, code: "bad_request", on: both},
		{name: "join without port", method: "GET", target: "/join?nodeId=x1", status: 400, code: "bad_request", on: both},
		{name: "join unspecified raftAddr", method: "GET", target: "/join?nodeId=x1&raftAddr=0.0.0.0:7000", status: 400, code: "bad_request", on: both},
		{name: "join URL as raftAddr", method: "GET", target: "/join?nodeId=x1&raftAddr=http://h:1", status: 400, code: "bad_request", on: both},
		{name: "join nodeId with space", method: "GET", target: "/join?nodeId=a%20b&raftPort=7000", status: 400, code: "bad_request", on: both},
		{name: "join without nodeId", method: "GET", target: "/join?raftPort=7000", status: 400, code: "bad_request", on: both},
		{name: "DELETE /set", method: "DELETE", target: "/set?key=existing", status: 405, code: "method_not_allowed", allow: "GET, POST", on: both},
		{name: "GET /leave", method: "GET", target: "/leave?nodeId=n1", status: 405, code: "method_not_allowed", allow: "POST", on: both},
		{name: "PUT /get", method: "PUT", target: "/get?key=existing", status: 405, code: "method_not_allowed", allow: "GET, HEAD, POST", on: both},
		{name: "POST /nodes", method: "POST", target: "/nodes", status: 405, code: "method_not_allowed", allow: "GET, HEAD", on: both},
		{name: "PATCH /kv", method: "PATCH", target: "/kv/existing", status: 405, code: "method_not_allowed", allow: "GET, HEAD, PUT, DELETE, POST", on: both},
		{name: "POST /kv without touch", method: "POST", target: "/kv/existing", status: 400, code: "bad_request", on: both},
		{name: "ttl too short", method: "PUT", target: "/kv/existing?ttl=10ms", body: []byte("v"), status: 400, code: "bad_request", on: both},
		{name: "ttl and lease", method: "PUT", target: "/kv/existing?ttl=10s&lease=5", body: []byte("v"), status: 400, code: "bad_request", on: both},
		{name: "grant without ttl", method: "POST", target: "/leases", status: 400, code: "bad_request", on: both},
		{name: "lock without lease", method: "POST", target: "/locks/a", status: 400, code: "bad_request", on: both},
		{name: "unknown path", method: "GET", target: "/nope", status: 404, code: "not_found", on: both},
		{name: "100 KiB query string", method: "GET", target: "/set?key=q&value=" + strings.Repeat("x", 100<<10), status: 431, on: both},
	}

	appliedBefore := c.Node(l).FSM().AppliedIndex()
	statusBefore := c.Status(t, l).Uint("applied_index")
	keysBefore := c.Node(l).FSM().Stats().Keys

	for _, tc := range tests {
		targets := []int{l}
		if tc.on == both {
			targets = append(targets, f)
		}
		for _, i := range targets {
			t.Run(fmt.Sprintf("%s via %s", tc.name, c.ID(i)), func(t *testing.T) {
				var r testcluster.Response
				if tc.raw {
					r = rawContentLengthLie(t, c.HTTPAddr(i), tc.method, tc.target, maxValue+1)
				} else {
					r = c.MustDo(t, i, tc.method, tc.target, tc.body, tc.header)
				}
				if r.Status != tc.status || r.Code() != tc.code {
					t.Fatalf("%s %.60s: got %d code %q (%.200s), want %d code %q", tc.method, tc.target, r.Status, r.Code(), r.Body, tc.status, tc.code)
				}
				if tc.code != "" && r.String("error") == "" {
					t.Errorf("no error message in %s", r.Body)
				}
				if tc.allow != "" && r.Header.Get("Allow") != tc.allow {
					t.Errorf("Allow %q, want %q", r.Header.Get("Allow"), tc.allow)
				}
				// net/http's own 431 never reaches the API handler.
				if tc.code != "" && tc.on == both && r.ServedBy() != c.ID(i) {
					t.Errorf("answered by %q, want %q locally (validation must not be forwarded)", r.ServedBy(), c.ID(i))
				}
			})
		}
	}

	if got := c.Node(l).FSM().AppliedIndex(); got != appliedBefore {
		t.Errorf("leader applied index moved from %d to %d", appliedBefore, got)
	}
	if got := c.Status(t, l).Uint("applied_index"); got != statusBefore {
		t.Errorf("status applied_index moved from %d to %d", statusBefore, got)
	}
	if got := c.Node(l).FSM().Stats().Keys; got != keysBefore {
		t.Errorf("key count moved from %d to %d", keysBefore, got)
	}
	if e, ok := c.Node(l).FSM().Get("existing"); !ok || e.Value != "v" {
		t.Errorf("key existing changed: %+v (present %v)", e, ok)
	}
	for _, k := range []string{"a", "b", "c", "big", "cl", "nv", "q", "tp", "\xff", longKey} {
		if e, ok := c.Node(l).FSM().Get(k); ok {
			t.Errorf("key %.20q was created: %+v", k, e)
		}
	}
	for _, id := range []string{"x1", "ghost", "a b"} {
		if found, _ := hasMember(members(t, c, l), id); found {
			t.Errorf("%q joined the cluster", id)
		}
	}
}

// rawContentLengthLie sends a request that declares length bytes of body
// but sends none, and reads the answer: the server must refuse on the
// header alone rather than wait for the body.
func rawContentLengthLie(t *testing.T, addr, method, target string, length int) testcluster.Response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", method, target, addr, length)
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatalf("write request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response (the server waited for a body it should refuse?): %v", err)
	}
	defer resp.Body.Close()
	r, err := testcluster.ReadResponse(resp)
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return r
}
