package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/cluster"
)

// jsonOf decodes a JSON object answer.
func jsonOf(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("answer %q is not a JSON object: %v", body, err)
	}
	return m
}

// TestValuesNeverAltered: a value that is not valid UTF-8 comes back in
// JSON as value_base64 (standard base64 of its bytes), never as a "value"
// with bytes replaced; a valid UTF-8 value comes back as "value",
// unchanged. Both in the write's echo and in /get.
func TestValuesNeverAltered(t *testing.T) {
	s, _, _ := newFakeService(t, Options{})
	tests := []struct {
		name, value string
		utf8        bool
	}{
		{"bytes ff fe", "\xff\xfe", false},
		{"valid then invalid", "ok\xc3", false},
		{"multi-byte UTF-8", "héllo ✓ 日本 🙂", true},
		{"empty", "", true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "v" + strconv.Itoa(i)
			put := call(s, http.MethodPut, "/kv/"+key, tt.value, nil)
			if put.Code != 200 {
				t.Fatalf("PUT: %d %s", put.Code, put.Body)
			}
			get := call(s, http.MethodGet, "/get?key="+key, "", nil)
			if get.Code != 200 {
				t.Fatalf("GET: %d %s", get.Code, get.Body)
			}
			for what, body := range map[string][]byte{"write echo": put.Body.Bytes(), "/get": get.Body.Bytes()} {
				m := jsonOf(t, body)
				v, hasV := m["value"]
				b, hasB := m["value_base64"]
				if tt.utf8 {
					if !hasV || hasB || v != tt.value {
						t.Errorf("%s: %s, want value %q and no value_base64", what, body, tt.value)
					}
					continue
				}
				if hasV || !hasB {
					t.Fatalf("%s: %s, want value_base64 only", what, body)
				}
				raw, err := base64.StdEncoding.DecodeString(b.(string))
				if err != nil || string(raw) != tt.value {
					t.Errorf("%s: value_base64 %q decodes to %q (%v), want %q", what, b, raw, err, tt.value)
				}
			}
			raw := call(s, http.MethodGet, "/kv/"+key, "", nil)
			if raw.Body.String() != tt.value {
				t.Errorf("GET /kv: %q, want %q", raw.Body.String(), tt.value)
			}
		})
	}
}

// TestHeadAnswersAsGet: HEAD on a read route answers the GET's status and
// headers (Content-Length included) with an empty body, not 405.
func TestHeadAnswersAsGet(t *testing.T) {
	s, st, _ := newFakeService(t, Options{})
	st.set("k", "some value")
	srv := httptest.NewServer(s)
	defer srv.Close()
	for _, target := range []string{"/get?key=k", "/kv/k", "/status", "/health", "/nodes?stale", "/get?key=absent"} {
		t.Run(target, func(t *testing.T) {
			do := func(method string) (*http.Response, []byte) {
				req, err := http.NewRequest(method, srv.URL+target, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				return resp, b
			}
			g, gb := do(http.MethodGet)
			h, hb := do(http.MethodHead)
			if h.StatusCode != g.StatusCode {
				t.Fatalf("HEAD %d, GET %d", h.StatusCode, g.StatusCode)
			}
			if len(hb) != 0 {
				t.Errorf("HEAD has a body: %q", hb)
			}
			if h.ContentLength != int64(len(gb)) || h.ContentLength != g.ContentLength {
				t.Errorf("HEAD Content-Length %d, GET's %d with a %d-byte body", h.ContentLength, g.ContentLength, len(gb))
			}
			for _, name := range []string{"Content-Type", HeaderServedBy, HeaderRaftIndex, HeaderCreateIndex, "Retry-After"} {
				if h.Header.Get(name) != g.Header.Get(name) {
					t.Errorf("%s: HEAD %q, GET %q", name, h.Header.Get(name), g.Header.Get(name))
				}
			}
		})
	}
}

// TestCrossSiteWritesRefused: a request a browser marks as cross-site (or
// same-site: another origin) to any state-changing route is refused with
// 403 cross_site_refused whatever its method, and applies nothing;
// same-origin and direct navigation pass, as do requests with neither
// Sec-Fetch-Site nor Origin (curl, scripts, other nodes). Reads are not
// affected.
func TestCrossSiteWritesRefused(t *testing.T) {
	s, st, _ := newFakeService(t, Options{})
	refused := []struct {
		name   string
		header http.Header
	}{
		{"cross-site", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}},
		{"same-site", http.Header{"Sec-Fetch-Site": {"same-site"}}},
		{"foreign Origin only", http.Header{"Origin": {"https://evil.example"}}},
		{"Origin on another port", http.Header{"Origin": {"http://example.com:8080"}}},
	}
	for _, rt := range s.Routes() {
		if !rt.Write {
			continue
		}
		for _, m := range rt.Methods {
			for _, tt := range refused {
				t.Run(m+" "+rt.Path+" "+tt.name, func(t *testing.T) {
					applied, calls := st.f.AppliedIndex(), len(st.calls)
					rec := call(s, m, concrete(rt)+"?key=x&value=1&nodeId=n9&raftPort=9", "", tt.header)
					if rec.Code != http.StatusForbidden || errorOf(t, rec).Code != "cross_site_refused" {
						t.Fatalf("%d %s, want 403 cross_site_refused", rec.Code, rec.Body)
					}
					if st.f.AppliedIndex() != applied || len(st.calls) != calls {
						t.Fatalf("refused request changed something: calls %v", st.calls[calls:])
					}
				})
			}
		}
	}
	allowed := []struct {
		name   string
		header http.Header
	}{
		{"curl", nil},
		{"same-origin", http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {"http://example.com"}}},
		{"typed into the address bar", http.Header{"Sec-Fetch-Site": {"none"}}},
		{"Origin matching Host", http.Header{"Origin": {"http://example.com"}}},
	}
	for i, tt := range allowed {
		t.Run("GET /set "+tt.name, func(t *testing.T) {
			key := "ok" + strconv.Itoa(i)
			rec := call(s, http.MethodGet, "/set?key="+key+"&value=1", "", tt.header)
			if rec.Code != 200 {
				t.Fatalf("%d %s, want 200", rec.Code, rec.Body)
			}
			if _, ok := st.f.Get(key); !ok {
				t.Fatal("not applied")
			}
		})
	}
	rec := call(s, http.MethodGet, "/get?key=ok0", "", refused[0].header)
	if rec.Code != 200 {
		t.Fatalf("cross-site read: %d %s, want 200", rec.Code, rec.Body)
	}
}

// TestErrorMessagesForUsers: the "error" field never carries Go internals
// (a dial error, a file path) or raw newlines: a 5xx says what happened in
// its class's words and names the request id, under which the log has the
// detail; a 4xx keeps what the user needs (the key, the parameter).
func TestErrorMessagesForUsers(t *testing.T) {
	s, st, cl := newFakeService(t, Options{})
	var logged bytes.Buffer
	s.opts.Logger.SetOutput(&logged)
	s.opts.Logger.SetLevel(logrus.DebugLevel)

	cl.err = fmt.Errorf("%w: dial tcp 10.0.0.9:8000: connect: connection refused\nsecond line", cluster.ErrLeaderUnreachable)
	rec := call(s, http.MethodGet, "/set?key=a&value=1", "", http.Header{HeaderRequestID: {"req-42"}})
	b := errorOf(t, rec)
	if rec.Code != 503 || b.Code != "leader_unreachable" {
		t.Fatalf("%d %+v", rec.Code, b)
	}
	for _, internal := range []string{"dial", "10.0.0.9", "connection refused", "\n", "second line"} {
		if strings.Contains(b.Error, internal) {
			t.Errorf("error %q carries %q", b.Error, internal)
		}
	}
	if !strings.HasPrefix(b.Error, cluster.ErrLeaderUnreachable.Error()) || !strings.Contains(b.Error, "req-42") {
		t.Errorf("error %q does not say what happened and name the request id", b.Error)
	}
	if !strings.Contains(logged.String(), "connection refused") || !strings.Contains(logged.String(), "req-42") {
		t.Errorf("the detail is not in the log with the request id: %s", logged.String())
	}
	cl.err = nil

	st.err = errors.New("open /var/lib/raftkv/n1/snap: permission denied")
	rec = call(s, http.MethodPost, "/snapshot", "", nil)
	b = errorOf(t, rec)
	if rec.Code != 500 || b.Code != "internal" || strings.Contains(b.Error, "/var/lib") || !strings.Contains(b.Error, "request id") {
		t.Errorf("internal error answered %d %+v", rec.Code, b)
	}
	st.err = nil

	rec = call(s, http.MethodGet, "/get?key=no%0Ahere", "", nil)
	b = errorOf(t, rec)
	if b.Code != "key_not_found" || !strings.Contains(b.Error, `no\nhere`) || strings.Contains(b.Error, "\n") {
		t.Errorf("404 must name the key on one line: %+v", b)
	}
	if msg, _ := publicMessage(fmt.Errorf("%w: first\nsecond\r\tthird", ErrBadRequest), 400); strings.ContainsAny(msg, "\n\r\t") || !strings.Contains(msg, "second") {
		t.Errorf("4xx message %q is not one line, or lost its text", msg)
	}
}

// TestLastContactOneFormat: /status and /nodes give "last contact" the
// same way, a number of milliseconds named last_contact_ms, as the stale
// read's X-Raft-Last-Contact header does.
func TestLastContactOneFormat(t *testing.T) {
	s, _, _ := newFakeService(t, Options{})
	status := jsonOf(t, call(s, http.MethodGet, "/status", "", nil).Body.Bytes())
	if _, old := status["last_contact"]; old {
		t.Errorf("/status still has last_contact: %v", status)
	}
	if v, ok := status["last_contact_ms"].(float64); !ok || v != 3 {
		t.Errorf("/status last_contact_ms = %#v, want the number 3", status["last_contact_ms"])
	}
	var nodes []map[string]any
	if err := json.Unmarshal(call(s, http.MethodGet, "/nodes", "", nil).Body.Bytes(), &nodes); err != nil || len(nodes) != 1 {
		t.Fatalf("/nodes: %v %v", nodes, err)
	}
	if v, ok := nodes[0]["last_contact_ms"].(float64); !ok || v != 3 {
		t.Errorf("/nodes last_contact_ms = %#v, want the number 3", nodes[0]["last_contact_ms"])
	}
	rec := call(s, http.MethodGet, "/get?key=x&consistency=stale", "", nil)
	if rec.Header().Get(HeaderLastContact) != "3" {
		t.Errorf("%s = %q, want 3", HeaderLastContact, rec.Header().Get(HeaderLastContact))
	}
}
