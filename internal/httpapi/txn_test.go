package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/fsm"
)

func txnCall(s *Service, body string, header http.Header) (*txnResponseJSON, int, string) {
	rec := call(s, http.MethodPost, "/txn", body, header)
	var out txnResponseJSON
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			return nil, rec.Code, rec.Body.String()
		}
	}
	return &out, rec.Code, rec.Body.String()
}

// txnResponseJSON reads an answer back generically, as a client would.
type txnResponseJSON struct {
	Succeeded bool             `json:"succeeded"`
	Index     uint64           `json:"index"`
	Results   []map[string]any `json:"results"`
}

func TestTxnHandler(t *testing.T) {
	s, st, _ := newFakeService(t, Options{})
	st.set("acct/a", "100") // index 1
	st.set("acct/b", "0")   // 2
	st.set("p/1", "x")      // 3
	st.set("bin", "\xff")   // 4

	body := `{"compare": [{"key": "acct/a", "target": "mod_index", "op": "=", "mod_index": 1}],
	  "success": [{"op": "put", "key": "acct/a", "value": "60"}, {"op": "put", "key": "acct/b", "value": "40"},
	              {"op": "get", "key": "acct/a"}, {"op": "get", "key": "nope"}, {"op": "get", "key": "bin"},
	              {"op": "list", "prefix": "p/", "limit": 5}, {"op": "delete", "key": "p/1"}, {"op": "delete", "key": "p/1"},
	              {"op": "delete_prefix", "prefix": "acct/"}],
	  "failure": [{"op": "get", "key": "acct/a"}]}`
	rec := call(s, http.MethodPost, "/txn", body, nil)
	if rec.Code != http.StatusOK || rec.Header().Get(HeaderRaftIndex) != "5" {
		t.Fatalf("status %d, index %q: %s", rec.Code, rec.Header().Get(HeaderRaftIndex), rec.Body)
	}
	want := `{"succeeded":true,"index":5,"results":[` +
		`{"op":"put","key":"acct/a","index":5},{"op":"put","key":"acct/b","index":5},` +
		`{"op":"get","key":"acct/a","found":true,"value":"60","create_index":1,"mod_index":5},` +
		`{"op":"get","key":"nope","found":false},` +
		`{"op":"get","key":"bin","found":true,"value_base64":"/w==","create_index":4,"mod_index":4},` +
		`{"op":"list","prefix":"p/","items":[{"key":"p/1","value":"x","create_index":3,"mod_index":3}],"more":false},` +
		`{"op":"delete","key":"p/1","deleted":true},{"op":"delete","key":"p/1","deleted":false},` +
		`{"op":"delete_prefix","prefix":"acct/","deleted":2}]}`
	if got := strings.TrimSpace(rec.Body.String()); got != want {
		t.Fatalf("answer\n got %s\nwant %s", got, want)
	}

	// A failed compare is a 200 with succeeded false and the failure
	// branch's results.
	st.set("acct/a", "1") // 6
	out, code, raw := txnCall(s, `{"compare": [{"key": "acct/a", "target": "value", "op": ">", "value": "5"}],
	  "success": [{"op": "delete", "key": "acct/a"}], "failure": [{"op": "get", "key": "acct/a"}]}`, nil)
	if code != 200 || out.Succeeded || out.Index != 7 || len(out.Results) != 1 || out.Results[0]["value"] != "1" {
		t.Fatalf("failure branch: %d %s", code, raw)
	}
	if _, ok := st.f.Get("acct/a"); !ok {
		t.Fatal("success branch applied")
	}
}

func TestTxnHandlerIdempotent(t *testing.T) {
	s, st, _ := newFakeService(t, Options{})
	st.set("k", "v")
	body := `{"success": [{"op": "put", "key": "k", "value": "w", "cas": 1}, {"op": "get", "key": "k"}, {"op": "delete", "key": "x"}]}`
	hdr := http.Header{HeaderIdempotencyKey: {"t-1"}}
	first := call(s, http.MethodPost, "/txn", body, hdr)
	again := call(s, http.MethodPost, "/txn?requestId=t-1", body, hdr)
	if first.Code != 200 || again.Code != 200 || again.Header().Get(HeaderReplayed) != "true" || first.Header().Get(HeaderReplayed) != "" {
		t.Fatalf("first %d %s, again %d %v %s", first.Code, first.Body, again.Code, again.Header(), again.Body)
	}
	want := `{"succeeded":true,"index":2,"results":[{"op":"put","key":"k","index":2},{"op":"get","key":"k","not_kept":true},{"op":"delete","key":"x","deleted":false}]}`
	if got := strings.TrimSpace(again.Body.String()); got != want {
		t.Fatalf("replay\n got %s\nwant %s", got, want)
	}
	if st.f.AppliedIndex() != 3 {
		t.Fatalf("applied %d", st.f.AppliedIndex())
	}
	if e, _ := st.f.Get("k"); e.ModIndex != 2 {
		t.Fatalf("re-applied: %+v", e)
	}
	// Header and parameter must agree.
	rec := call(s, http.MethodPost, "/txn?requestId=other", body, hdr)
	if rec.Code != 400 {
		t.Fatalf("disagreeing ids: %d", rec.Code)
	}
}

// Every bad transaction is a 4xx naming the problem, and nothing is
// proposed, on a leader and on a follower (which forwards nothing).
func TestTxnHandlerBadInput(t *testing.T) {
	ops := func(n int) string {
		var b strings.Builder
		b.WriteString(`{"success": [`)
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"op": "get", "key": "k%d"}`, i)
		}
		b.WriteString(`]}`)
		return b.String()
	}
	put := func(fields string) string { return `{"success": [{"op": "put", ` + fields + `}]}` }
	cmp := func(fields string) string {
		return `{"compare": [{"key": "k", ` + fields + `}], "success": [{"op": "get", "key": "k"}]}`
	}
	cases := []struct {
		name, body string
		status     int
		says       string
	}{
		{"empty body", ``, 400, "empty body"},
		{"malformed JSON", `{"success": [`, 400, "JSON"},
		{"not an object", `[1]`, 400, "JSON object"},
		{"trailing data", `{"success": [{"op": "get", "key": "k"}]} {}`, 400, "after the JSON object"},
		{"unknown top-level field", `{"succes": []}`, 400, `unknown field "succes"`},
		{"unknown op field", put(`"key": "k", "value": "v", "ttl": 3`), 400, `unknown field "ttl"`},
		{"empty transaction", `{}`, 400, "empty transaction"},
		{"unknown op", `{"success": [{"op": "increment", "key": "k"}]}`, 400, `unknown op "increment"`},
		{"missing op", `{"success": [{"key": "k"}]}`, 400, `unknown op ""`},
		{"unknown target", cmp(`"target": "version", "op": "=", "version": 1`), 400, `unknown field "version"`},
		{"unknown target name", cmp(`"target": "lease", "op": "="`), 400, `unknown target "lease"`},
		{"unknown compare op", cmp(`"target": "mod_index", "op": "==", "mod_index": 1`), 400, `unknown op "=="`},
		{"operand under another name", cmp(`"target": "mod_index", "op": "=", "create_index": 1`), 400, `"mod_index"`},
		{"two operands", cmp(`"target": "mod_index", "op": "=", "mod_index": 1, "value": "x"`), 400, "only that"},
		{"no operand", cmp(`"target": "value", "op": "="`), 400, `"value"`},
		{"operand a string", cmp(`"target": "mod_index", "op": "=", "mod_index": "12"`), 400, "non-negative integer"},
		{"operand negative", cmp(`"target": "create_index", "op": "=", "create_index": -1`), 400, "non-negative integer"},
		{"operand a fraction", cmp(`"target": "create_index", "op": "=", "create_index": 1.5`), 400, "non-negative integer"},
		{"value a number", put(`"key": "k", "value": 5`), 400, `"success.value" must be a string`},
		{"compare empty key", `{"compare": [{"key": "", "target": "mod_index", "op": "=", "mod_index": 0}]}`, 400, "key must not be empty"},
		{"put empty key", put(`"key": "", "value": "v"`), 400, "key must not be empty"},
		{"put without key", put(`"value": "v"`), 400, `needs "key"`},
		{"put without value", put(`"key": "k"`), 400, `needs "value"`},
		{"put both values", put(`"key": "k", "value": "v", "value_base64": "dg=="`), 400, "not both"},
		{"bad base64", put(`"key": "k", "value_base64": "!!"`), 400, "base64"},
		{"key over MAX_KEY_BYTES", put(`"key": "` + strings.Repeat("k", 1025) + `", "value": "v"`), 400, "MAX_KEY_BYTES"},
		{"value over MAX_VALUE_BYTES", put(`"key": "k", "value": "` + strings.Repeat("v", 1<<20+1) + `"`), 413, "MAX_VALUE_BYTES"},
		{"get with prefix", `{"success": [{"op": "get", "prefix": "k"}]}`, 400, `takes "key"`},
		{"list with key", `{"success": [{"op": "list", "key": "k"}]}`, 400, `takes "prefix"`},
		{"delete_prefix empty", `{"success": [{"op": "delete_prefix", "prefix": ""}]}`, 400, "non-empty"},
		{"delete_prefix without prefix", `{"success": [{"op": "delete_prefix"}]}`, 400, "non-empty"},
		{"value on delete", `{"success": [{"op": "delete", "key": "k", "value": "v"}]}`, 400, "only put takes a value"},
		{"cas in failure", `{"failure": [{"op": "put", "key": "k", "value": "v", "cas": 0}]}`, 400, "cas"},
		{"cas on delete", `{"success": [{"op": "delete", "key": "k", "cas": 1}]}`, 400, "cas"},
		{"limit on get", `{"success": [{"op": "get", "key": "k", "limit": 1}]}`, 400, "only list takes a limit"},
		{"limit 0", `{"success": [{"op": "list", "prefix": "k", "limit": 0}]}`, 400, "1..1000"},
		{"limit over 1000", `{"success": [{"op": "list", "prefix": "k", "limit": 1001}]}`, 400, "1..1000"},
		{"negative limit", `{"success": [{"op": "list", "prefix": "k", "limit": -1}]}`, 400, "non-negative integer"},
		{"129 operations", ops(129), 400, "limit of 128"},
		{"body over 4 MiB", `{"success": [{"op": "put", "key": "k", "value": "` + strings.Repeat("v", MaxTxnBodyBytes) + `"}]}`, 413, "4194304"},
	}
	for _, follower := range []bool{false, true} {
		s, st, cl := newFakeService(t, Options{})
		cl.follower = follower
		st.set("k", "v")
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s follower=%v", tc.name, follower), func(t *testing.T) {
				applied := st.f.AppliedIndex()
				rec := call(s, http.MethodPost, "/txn", tc.body, nil)
				if rec.Code != tc.status {
					t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
				}
				b := errorOf(t, rec)
				if !strings.Contains(b.Error, tc.says) {
					t.Fatalf("error %q does not say %q", b.Error, tc.says)
				}
				if st.f.AppliedIndex() != applied || len(cl.forwarded) != 0 {
					t.Fatalf("refused transaction changed something: applied %d→%d, forwarded %d", applied, st.f.AppliedIndex(), len(cl.forwarded))
				}
			})
		}
	}
	// 128 is allowed.
	s, _, _ := newFakeService(t, Options{})
	if _, code, raw := txnCall(s, ops(128), nil); code != 200 {
		t.Fatalf("128 operations: %d %s", code, raw)
	}
}

// On a follower, a valid transaction goes to the leader whole (OnLeader),
// with its body.
func TestTxnHandlerForwards(t *testing.T) {
	s, st, cl := newFakeService(t, Options{})
	cl.follower = true
	body := `{"success": [{"op": "put", "key": "k", "value": "v"}]}`
	rec := call(s, http.MethodPost, "/txn?requestId=r", body, nil)
	if rec.Code != statusForwarded || len(cl.forwarded) != 1 || st.f.AppliedIndex() != 0 {
		t.Fatalf("status %d, forwarded %d, applied %d", rec.Code, len(cl.forwarded), st.f.AppliedIndex())
	}
	f := cl.forwarded[0]
	if !f.Write || f.Size != int64(len(body)) {
		t.Fatalf("forward %+v", f)
	}
}

func TestQuotaHandler(t *testing.T) {
	s, st, _ := newFakeService(t, Options{MaxDataBytes: 10})
	if rec := call(s, http.MethodPut, "/kv/k", "123456789", nil); rec.Code != 200 { // 10 bytes: at the quota
		t.Fatalf("at the quota: %d %s", rec.Code, rec.Body)
	}
	for name, do := range map[string]func() *httptest.ResponseRecorder{
		"put": func() *httptest.ResponseRecorder { return call(s, http.MethodPut, "/kv/j", "1", nil) },
		"set": func() *httptest.ResponseRecorder { return call(s, http.MethodGet, "/set?key=j&value=1", "", nil) },
		"txn": func() *httptest.ResponseRecorder {
			return call(s, http.MethodPost, "/txn", `{"success": [{"op": "put", "key": "j", "value": "1"}]}`, nil)
		},
		"grow": func() *httptest.ResponseRecorder { return call(s, http.MethodPut, "/kv/k", "1234567890", nil) },
	} {
		rec := do()
		b := errorOf(t, rec)
		if rec.Code != http.StatusInsufficientStorage || b.Code != "quota_exceeded" ||
			!strings.Contains(b.Error, "MAX_DATA_BYTES=10") || !strings.Contains(b.Error, "10 bytes now") {
			t.Fatalf("%s over the quota: %d %+v", name, rec.Code, b)
		}
	}
	if _, ok := st.f.Get("j"); ok {
		t.Fatal("a refused write applied")
	}
	// Not growing, deleting: still applied. Then growth works again.
	if rec := call(s, http.MethodPut, "/kv/k", "987654321", nil); rec.Code != 200 {
		t.Fatalf("same-size overwrite: %d %s", rec.Code, rec.Body)
	}
	if rec := call(s, http.MethodDelete, "/kv/k", "", nil); rec.Code != 200 {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	if rec := call(s, http.MethodPut, "/kv/j", "1", nil); rec.Code != 200 {
		t.Fatalf("after the delete: %d %s", rec.Code, rec.Body)
	}
	// /status shows the size and the quota.
	rec := call(s, http.MethodGet, "/status", "", nil)
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"data_bytes": 2.0, "max_data_bytes": 10.0}; !reflect.DeepEqual(map[string]any{
		"data_bytes": got["data_bytes"], "max_data_bytes": got["max_data_bytes"]}, want) {
		t.Fatalf("/status %s", rec.Body)
	}
	if rec := call(s, http.MethodGet, "/metrics", "", nil); !strings.Contains(rec.Body.String(), "raftkv_fsm_quota_bytes 10") {
		t.Fatal("/metrics has no raftkv_fsm_quota_bytes 10")
	}
}

// The leader stamps its own quota on a follower's set (the peer
// protocol's accept), replacing the follower's.
func TestCheckCommandStampsLeaderQuota(t *testing.T) {
	for _, quota := range []int64{0, 10} {
		s, _, _ := newFakeService(t, Options{MaxDataBytes: quota})
		cmd := &fsm.Command{Op: fsm.OpSet, Key: "k", Value: "v", Quota: 5}
		if err := s.checkCommand(cmd); err != nil || cmd.Quota != uint64(quota) {
			t.Fatalf("quota %d: checkCommand = %v, stamped %d", quota, err, cmd.Quota)
		}
		del := &fsm.Command{Op: fsm.OpDelete, Key: "k"}
		if err := s.checkCommand(del); err != nil || del.Quota != 0 {
			t.Fatalf("a delete carries no quota: %v %d", err, del.Quota)
		}
	}
}

func TestTxnHandlerKeyReused(t *testing.T) {
	s, st, _ := newFakeService(t, Options{})
	hdr := http.Header{HeaderIdempotencyKey: {"t-2"}}
	if rec := call(s, http.MethodPost, "/txn", `{"success": [{"op": "put", "key": "k", "value": "1"}]}`, hdr); rec.Code != 200 {
		t.Fatalf("first: %d %s", rec.Code, rec.Body)
	}
	rec := call(s, http.MethodPost, "/txn", `{"success": [{"op": "put", "key": "k", "value": "2"}]}`, hdr)
	if b := errorOf(t, rec); rec.Code != 422 || b.Code != "idempotency_key_reused" {
		t.Fatalf("another txn under the key: %d %+v", rec.Code, b)
	}
	if e, _ := st.f.Get("k"); e.Value != "1" {
		t.Fatalf("k = %+v", e)
	}
}

// Leadership moved after OnLeader chose this node: the proposal went to
// the new leader through the peer protocol, which refuses transactions
// (nothing proposed). That is not the client's 400: it is not_leader
// (503, nothing applied), which OnLeader hands on to the new leader.
func TestTxnLeadershipMoved(t *testing.T) {
	s, _, cl := newFakeService(t, Options{})
	cl.err, cl.errVia = cluster.ErrRejected, "n2"
	rec := call(s, http.MethodPost, "/txn", `{"success": [{"op": "put", "key": "k", "value": "v"}]}`, nil)
	if b := errorOf(t, rec); rec.Code != http.StatusServiceUnavailable || b.Code != "not_leader" {
		t.Fatalf("%d %+v", rec.Code, b)
	}
	// A rejection by this node itself stays what it is.
	cl.errVia = ""
	if rec := call(s, http.MethodPost, "/txn", `{"success": [{"op": "put", "key": "k", "value": "v"}]}`, nil); rec.Code != http.StatusBadRequest {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

// An error inside the body names its position after its kind, as every
// other 400 and 413 starts with its kind.
func TestTxnErrorNamesPosition(t *testing.T) {
	s, _, _ := newFakeService(t, Options{})
	cases := []struct {
		body   string
		status int
		want   string
	}{
		{`{"success": [{"op": "get", "key": "k"}, {"op": "put", "key": "", "value": "v"}]}`, 400,
			"bad request: success[1]: key must not be empty"},
		{`{"compare": [{"key": "k", "target": "mod_index", "op": "==", "mod_index": 1}]}`, 400,
			`bad request: compare[0]: unknown op "=="`},
		{`{"failure": [{"op": "put", "key": "k", "value": "` + strings.Repeat("v", 1<<20+1) + `"}]}`, 413,
			"too large: failure[0]: the value of 1048577 bytes exceeds MAX_VALUE_BYTES"},
	}
	for _, tc := range cases {
		rec := call(s, http.MethodPost, "/txn", tc.body, nil)
		if rec.Code != tc.status {
			t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
		}
		if b := errorOf(t, rec); !strings.HasPrefix(b.Error, tc.want) {
			t.Fatalf("error %q, want it to start with %q", b.Error, tc.want)
		}
	}
}
