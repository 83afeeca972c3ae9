package bench

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
)

func TestKeyName(t *testing.T) {
	tests := []struct {
		prefix string
		i, n   int
		want   string
	}{
		{"bench/", 0, 1, "bench/0"},
		{"bench/", 7, 10, "bench/7"},
		{"bench/", 7, 11, "bench/07"},
		{"bench/", 42, 10000, "bench/0042"},
		{"bench/", 9999, 10000, "bench/9999"},
		{"", 5, 1000000, "000005"},
	}
	for _, tc := range tests {
		if got := keyName(tc.prefix, tc.i, tc.n); got != tc.want {
			t.Errorf("keyName(%q, %d, %d) = %q, want %q", tc.prefix, tc.i, tc.n, got, tc.want)
		}
	}
}

func TestBenchValue(t *testing.T) {
	a, b := benchValue(100, 1), benchValue(100, 1)
	if string(a) != string(b) || len(a) != 100 {
		t.Fatalf("value not deterministic or wrong size: %q %q", a, b)
	}
	if string(benchValue(100, 2)) == string(a) {
		t.Fatal("different seeds gave the same value")
	}
	if len(benchValue(0, 1)) != 0 {
		t.Fatal("size 0 should give an empty value")
	}
}

// sent is a request as it would go on the wire.
type sent struct {
	method, uri, host, contentType string
	length                         int64
	body                           string
}

func capture(t *testing.T, r *http.Request) sent {
	t.Helper()
	s := sent{method: r.Method, uri: r.URL.RequestURI(), host: r.URL.Host, contentType: r.Header.Get("Content-Type"), length: r.ContentLength}
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		s.body = string(b)
		if int64(len(b)) != r.ContentLength {
			t.Errorf("body is %d bytes, ContentLength %d", len(b), r.ContentLength)
		}
		if r.GetBody != nil {
			rc, _ := r.GetBody()
			again, _ := io.ReadAll(rc)
			if string(again) != s.body {
				t.Errorf("GetBody gives %q, body was %q", again, s.body)
			}
		}
		r.Body.Close()
	}
	return s
}

func TestBuilderRaftkv(t *testing.T) {
	target, _ := url.Parse("http://10.0.0.1:8000")
	value := string(benchValue(8, 3))
	tests := []struct {
		name        string
		consistency string
		prefix      string
		op          opKind
		key         int
		want        sent
	}{
		{"write", Linearizable, "bench/", opWrite, 42,
			sent{"PUT", "/kv/bench/042", "10.0.0.1:8000", "application/octet-stream", 8, value}},
		{"linearizable read", Linearizable, "bench/", opRead, 7,
			sent{"GET", "/kv/bench/007?consistency=linearizable", "10.0.0.1:8000", "", 0, ""}},
		{"leader read", Leader, "bench/", opRead, 0,
			sent{"GET", "/kv/bench/000?consistency=leader", "10.0.0.1:8000", "", 0, ""}},
		{"stale read", Stale, "bench/", opRead, 999,
			sent{"GET", "/kv/bench/999?consistency=stale", "10.0.0.1:8000", "", 0, ""}},
		{"prefix needing escapes", Stale, "a b?/", opRead, 1,
			sent{"GET", "/kv/a%20b%3F/001?consistency=stale", "10.0.0.1:8000", "", 0, ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Kind: KindRaftkv, Keys: 1000, ValueSize: 8, Seed: 3, Consistency: tc.consistency, Prefix: tc.prefix}
			b := newBuilder(&cfg)
			st := newReqState()
			if got := capture(t, b.fill(st, target, tc.op, tc.key)); got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestBuilderEtcd(t *testing.T) {
	target, _ := url.Parse("https://etcd:2379")
	b64 := base64.StdEncoding.EncodeToString
	value := benchValue(5, 9)
	tests := []struct {
		name         string
		consistency  string
		op           opKind
		key          int
		wantURI      string
		wantKey      string
		wantValue    []byte // writes
		serializable bool   // reads
	}{
		{"put", Linearizable, opWrite, 3, "/v3/kv/put", "bench/03", value, false},
		{"linearizable range", Linearizable, opRead, 10, "/v3/kv/range", "bench/10", nil, false},
		{"leader means linearizable", Leader, opRead, 10, "/v3/kv/range", "bench/10", nil, false},
		{"stale is serializable", Stale, opRead, 99, "/v3/kv/range", "bench/99", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Kind: KindEtcd, Keys: 100, ValueSize: 5, Seed: 9, Consistency: tc.consistency, Prefix: "bench/"}
			b := newBuilder(&cfg)
			st := newReqState()
			got := capture(t, b.fill(st, target, tc.op, tc.key))
			if got.method != "POST" || got.uri != tc.wantURI || got.host != "etcd:2379" || got.contentType != "application/json" {
				t.Fatalf("request %+v", got)
			}
			var body map[string]any
			if err := json.Unmarshal([]byte(got.body), &body); err != nil {
				t.Fatalf("body %q: %v", got.body, err)
			}
			want := map[string]any{"key": b64([]byte(tc.wantKey))}
			if tc.op == opWrite {
				want["value"] = b64(tc.wantValue)
			}
			if tc.serializable {
				want["serializable"] = true
			}
			if len(body) != len(want) {
				t.Fatalf("body %q, want fields %v", got.body, want)
			}
			for k, v := range want {
				if body[k] != v {
					t.Errorf("body %q: %s = %v, want %v", got.body, k, body[k], v)
				}
			}
		})
	}
}

func TestBuilderZeroValueSize(t *testing.T) {
	target, _ := url.Parse("http://h:1")
	b := newBuilder(&Config{Kind: KindRaftkv, Keys: 10, ValueSize: 0, Consistency: Stale, Prefix: "k"})
	st := newReqState()
	r := b.fill(st, target, opWrite, 1)
	if r.Body != http.NoBody || r.ContentLength != 0 {
		t.Fatalf("empty value: body %v, length %d", r.Body, r.ContentLength)
	}
}

func TestPrefixEnd(t *testing.T) {
	for in, want := range map[string]string{
		"bench/": "bench0", "a": "b", "a\xff": "b", "\xff\xff": "\x00", "": "\x00",
	} {
		if got := string(prefixEnd([]byte(in))); got != want {
			t.Errorf("prefixEnd(%q) = %q, want %q", in, got, want)
		}
	}
}

// The multi-key workloads and the batched preload, raftkv: requests in the
// shapes of docs/api.md.
func TestBuilderRaftkvWorkloads(t *testing.T) {
	target, _ := url.Parse("http://10.0.0.1:8000")
	v := string(benchValue(4, 3))
	tests := []struct {
		name     string
		workload string
		batch    int
		op       opKind
		key      int
		want     sent
	}{
		{"list", WorkloadList, 1, opRead, 5,
			sent{"GET", "/kv/bench/?recurse&limit=1000&consistency=linearizable", "10.0.0.1:8000", "", 0, ""}},
		{"count", WorkloadCount, 1, opRead, 5,
			sent{"GET", "/kv/bench/?recurse&count&consistency=linearizable", "10.0.0.1:8000", "", 0, ""}},
		{"txn on key 3 puts key 3 and 3 + 10/2", WorkloadTxn, 1, opWrite, 3,
			sent{"POST", "/txn", "10.0.0.1:8000", "application/json", 0,
				`{"compare":[{"key":"bench/3","target":"mod_index","op":">","mod_index":0}],"success":[` +
					`{"op":"put","key":"bench/3","value":"` + v + `"},{"op":"put","key":"bench/8","value":"` + v + `"}]}`}},
		{"txn wraps around", WorkloadTxn, 1, opWrite, 7,
			sent{"POST", "/txn", "10.0.0.1:8000", "application/json", 0,
				`{"compare":[{"key":"bench/7","target":"mod_index","op":">","mod_index":0}],"success":[` +
					`{"op":"put","key":"bench/7","value":"` + v + `"},{"op":"put","key":"bench/2","value":"` + v + `"}]}`}},
		{"preload batch of 4 from key 4", WorkloadKV, 4, opBatch, 4,
			sent{"POST", "/txn", "10.0.0.1:8000", "application/json", 0,
				`{"success":[{"op":"put","key":"bench/4","value":"` + v + `"},{"op":"put","key":"bench/5","value":"` + v + `"},` +
					`{"op":"put","key":"bench/6","value":"` + v + `"},{"op":"put","key":"bench/7","value":"` + v + `"}]}`}},
		{"the last preload batch is cut at the key space", WorkloadList, 4, opBatch, 8,
			sent{"POST", "/txn", "10.0.0.1:8000", "application/json", 0,
				`{"success":[{"op":"put","key":"bench/8","value":"` + v + `"},{"op":"put","key":"bench/9","value":"` + v + `"}]}`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Kind: KindRaftkv, Keys: 10, ValueSize: 4, Seed: 3, Consistency: Linearizable, Prefix: "bench/",
				Workload: tc.workload, PreloadBatch: tc.batch}
			b := newBuilder(&cfg)
			tc.want.length = int64(len(tc.want.body))
			if got := capture(t, b.fill(newReqState(), target, tc.op, tc.key)); got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if tc.want.body != "" && !json.Valid([]byte(tc.want.body)) {
				t.Errorf("body is not JSON: %s", tc.want.body)
			}
		})
	}
	b := newBuilder(&Config{Kind: KindRaftkv, Keys: 10, Consistency: Stale, Prefix: "p/", Workload: WorkloadList, ListLimit: 7})
	if got := capture(t, b.fill(newReqState(), target, opRead, 0)).uri; got != "/kv/p/?recurse&limit=7&consistency=stale" {
		t.Errorf("list with -limit 7, stale: %s", got)
	}
}

// The same for etcd's JSON gateway: base64 keys and values, range_end for
// the prefix, int64 fields as strings.
func TestBuilderEtcdWorkloads(t *testing.T) {
	target, _ := url.Parse("http://etcd:2379")
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	v := b64(string(benchValue(4, 3)))
	put := func(k string) string { return `{"request_put":{"key":"` + b64(k) + `","value":"` + v + `"}}` }
	tests := []struct {
		name        string
		workload    string
		consistency string
		batch       int
		op          opKind
		key         int
		uri, body   string
	}{
		{"list", WorkloadList, Linearizable, 1, opRead, 0, "/v3/kv/range",
			`{"key":"` + b64("bench/") + `","limit":"1000","range_end":"` + b64("bench0") + `"}`},
		{"stale list is serializable", WorkloadList, Stale, 1, opRead, 0, "/v3/kv/range",
			`{"key":"` + b64("bench/") + `","limit":"1000","range_end":"` + b64("bench0") + `","serializable":true}`},
		{"count", WorkloadCount, Linearizable, 1, opRead, 0, "/v3/kv/range",
			`{"count_only":true,"key":"` + b64("bench/") + `","range_end":"` + b64("bench0") + `"}`},
		{"txn", WorkloadTxn, Linearizable, 1, opWrite, 1, "/v3/kv/txn",
			`{"compare":[{"key":"` + b64("bench/1") + `","target":"MOD","result":"GREATER","mod_revision":"0"}],"success":[` +
				put("bench/1") + `,` + put("bench/6") + `]}`},
		{"preload batch", WorkloadKV, Linearizable, 3, opBatch, 0, "/v3/kv/txn",
			`{"success":[` + put("bench/0") + `,` + put("bench/1") + `,` + put("bench/2") + `]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Kind: KindEtcd, Keys: 10, ValueSize: 4, Seed: 3, Consistency: tc.consistency, Prefix: "bench/",
				Workload: tc.workload, PreloadBatch: tc.batch}
			got := capture(t, newBuilder(&cfg).fill(newReqState(), target, tc.op, tc.key))
			want := sent{"POST", tc.uri, "etcd:2379", "application/json", int64(len(tc.body)), tc.body}
			if got != want {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
			if !json.Valid([]byte(tc.body)) {
				t.Errorf("body is not JSON: %s", tc.body)
			}
		})
	}
}
