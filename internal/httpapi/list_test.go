package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/internal/fsm"
)

// listAnswer is a listing's JSON, as a client reads it.
type listAnswer struct {
	Index uint64 `json:"index"`
	Items []struct {
		Key         string  `json:"key"`
		Value       *string `json:"value"`
		ValueBase64 *string `json:"value_base64"`
		CreateIndex uint64  `json:"create_index"`
		ModIndex    uint64  `json:"mod_index"`
	} `json:"items"`
	Prefixes *[]string `json:"prefixes"`
	More     bool      `json:"more"`
	Next     string    `json:"next"`
}

func (a listAnswer) keys() []string {
	var out []string
	for _, it := range a.Items {
		out = append(out, it.Key)
	}
	return out
}

func listOf(t *testing.T, s *Service, target string) (listAnswer, *httptest.ResponseRecorder) {
	t.Helper()
	rec := call(s, http.MethodGet, target, "", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", target, rec.Code, rec.Body)
	}
	var a listAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatalf("GET %s: %v: %s", target, err, rec.Body)
	}
	if got := rec.Header().Get(HeaderRaftIndex); got != fmt.Sprint(a.Index) {
		t.Fatalf("GET %s: %s %q, body index %d", target, HeaderRaftIndex, got, a.Index)
	}
	if a.More != (a.Next != "") {
		t.Fatalf("GET %s: more %v with next %q", target, a.More, a.Next)
	}
	return a, rec
}

func TestListHandler(t *testing.T) {
	s, st, _ := newFakeService(t, Options{})
	st.set("app/a", "1")
	st.set("app/b/x", "2")
	st.set("app/b/y", "3")
	st.set("app/c", "\xff\xfe")
	st.set("apple", "no")
	st.set("b", "4")

	a, _ := listOf(t, s, "/kv/app/?recurse")
	if want := []string{"app/a", "app/b/x", "app/b/y", "app/c"}; !slices.Equal(a.keys(), want) || a.More || a.Index != 6 {
		t.Fatalf("recurse: %q more %v index %d, want %q at 6", a.keys(), a.More, a.Index, want)
	}
	if it := a.Items[0]; it.Value == nil || *it.Value != "1" || it.ValueBase64 != nil || it.CreateIndex != 1 || it.ModIndex != 1 {
		t.Errorf("app/a: %+v", it)
	}
	if it := a.Items[3]; it.Value != nil || it.ValueBase64 == nil || *it.ValueBase64 != base64.StdEncoding.EncodeToString([]byte("\xff\xfe")) {
		t.Errorf("app/c (not UTF-8): %+v", it)
	}
	if a.Prefixes != nil {
		t.Errorf("prefixes without separator: %v", *a.Prefixes)
	}

	a, _ = listOf(t, s, "/kv/?recurse")
	if len(a.Items) != 6 {
		t.Errorf("empty prefix lists %q, want all 6", a.keys())
	}

	a, _ = listOf(t, s, "/kv/app/?recurse&keys")
	for _, it := range a.Items {
		if it.Value != nil || it.ValueBase64 != nil {
			t.Errorf("keys: %q has a value", it.Key)
		}
	}

	a, _ = listOf(t, s, "/kv/app/?recurse&separator=/")
	if want := []string{"app/a", "app/c"}; !slices.Equal(a.keys(), want) || a.Prefixes == nil || !slices.Equal(*a.Prefixes, []string{"app/b/"}) {
		t.Errorf("separator: items %q prefixes %v", a.keys(), a.Prefixes)
	}
	a, _ = listOf(t, s, "/kv/zzz/?recurse&separator=/")
	if a.Prefixes == nil || len(*a.Prefixes) != 0 || a.Items == nil {
		t.Errorf("empty separator listing: items %v prefixes %v, want [] and []", a.Items, a.Prefixes)
	}

	// Pages of one, through the cursor; a separator page counts the
	// prefix and its cursor skips it.
	var got []string
	target := "/kv/app/?recurse&separator=/&limit=1"
	for range 10 {
		a, _ := listOf(t, s, target)
		got = append(got, a.keys()...)
		if a.Prefixes != nil {
			got = append(got, *a.Prefixes...)
		}
		if !a.More {
			break
		}
		target = "/kv/app/?recurse&separator=/&limit=1&after=" + a.Next
	}
	if want := []string{"app/a", "app/b/", "app/c"}; !slices.Equal(got, want) {
		t.Errorf("pages: %q, want %q", got, want)
	}

	rec := call(s, http.MethodGet, "/kv/app/?recurse&count", "", nil)
	var c countResponse
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &c) != nil || c.Count != 4 || c.Bytes != int64(len("app/a1app/b/x2app/b/y3app/c\xff\xfe")) || c.Index != 6 {
		t.Errorf("count: %d %s", rec.Code, rec.Body)
	}
	if rec.Header().Get(HeaderRaftIndex) != "6" {
		t.Errorf("count %s = %q", HeaderRaftIndex, rec.Header().Get(HeaderRaftIndex))
	}

	// HEAD: the GET's status and headers (net/http drops the body).
	if rec := call(s, http.MethodHead, "/kv/app/?recurse", "", nil); rec.Code != 200 || rec.Header().Get(HeaderRaftIndex) != "6" {
		t.Errorf("HEAD: %d %q %v", rec.Code, rec.Body, rec.Header())
	}
	// Without recurse the path is a key.
	if rec := call(s, http.MethodGet, "/kv/app/a?recurse=false", "", nil); rec.Code != 200 || rec.Body.String() != "1" {
		t.Errorf("recurse=false: %d %s", rec.Code, rec.Body)
	}
}

// TestListPagesShareTheFirstIndex: while this node holds the first page's
// view, every page reads the state (and reports the index) the first page
// read, however the keys change between pages; another node (no view)
// serves the page from its current state, continuing after the cursor.
func TestListPagesShareTheFirstIndex(t *testing.T) {
	s, st, _ := newFakeService(t, Options{})
	for i := range 10 {
		st.set(fmt.Sprintf("p/%02d", i), "v")
	}
	a, _ := listOf(t, s, "/kv/p/?recurse&limit=3")
	first := a.Index
	got := a.keys()
	st.set("p/05", "changed")
	st.apply(&fsm.Command{Op: fsm.OpDelete, Key: "p/07"})
	st.set("p/99", "new")
	next := a.Next
	for a.More {
		a, _ = listOf(t, s, "/kv/p/?recurse&limit=3&after="+next)
		if a.Index != first {
			t.Fatalf("page at index %d, the first page's is %d", a.Index, first)
		}
		for _, it := range a.Items {
			if it.Key == "p/05" && *it.Value != "v" {
				t.Errorf("a later page shows a write after the first page: %+v", it)
			}
		}
		got = append(got, a.keys()...)
		next = a.Next
	}
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf("p/%02d", i))
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages %q, want %q (the state at the first page)", got, want)
	}

	// The held view shows in /metrics.
	if rec := call(s, http.MethodGet, "/metrics", "", nil); !strings.Contains(rec.Body.String(), "raftkv_list_views_held 1") {
		t.Errorf("/metrics does not show the one held view")
	}

	// Another node, with the same state and no view: current state, its
	// own index, after the cursor's key.
	other, ost, _ := newFakeService(t, Options{})
	for i := range 10 {
		ost.set(fmt.Sprintf("p/%02d", i), "v")
	}
	a, _ = listOf(t, s, "/kv/p/?recurse&limit=3")
	ost.set("p/05", "changed")
	b, _ := listOf(t, other, "/kv/p/?recurse&limit=3&after="+a.Next)
	if b.Index != 11 || !slices.Equal(b.keys(), []string{"p/03", "p/04", "p/05"}) || *b.Items[2].Value != "changed" {
		t.Errorf("other node: index %d keys %q, want 11 and p/03..p/05 as now", b.Index, b.keys())
	}
}

func TestDeletePrefixHandler(t *testing.T) {
	s, st, cl := newFakeService(t, Options{})
	for i := range 5 {
		st.set(fmt.Sprintf("d/%d", i), "v")
	}
	st.set("dd", "keep")
	rec := call(s, http.MethodDelete, "/kv/d/?recurse", "", http.Header{HeaderIdempotencyKey: {"del-1"}})
	var d deletePrefixResponse
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &d) != nil || d.Deleted != 5 || d.Prefix != "d/" || d.Index != 7 {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	if rec.Header().Get(HeaderRaftIndex) != "7" {
		t.Errorf("%s = %q", HeaderRaftIndex, rec.Header().Get(HeaderRaftIndex))
	}
	// A retry answers the first outcome and applies nothing new.
	st.set("d/new", "v")
	rec = call(s, http.MethodDelete, "/kv/d/?recurse&requestId=del-1", "", nil)
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &d) != nil || d.Deleted != 5 || d.Index != 7 || rec.Header().Get(HeaderReplayed) != "true" {
		t.Fatalf("retry: %d %s %v", rec.Code, rec.Body, rec.Header())
	}
	if _, ok := st.f.Get("d/new"); !ok {
		t.Error("the retry deleted a key written after the first delete")
	}
	// The same key for another prefix is a reused key: 422, nothing deleted.
	rec = call(s, http.MethodDelete, "/kv/dd?recurse&requestId=del-1", "", nil)
	if rec.Code != http.StatusUnprocessableEntity || errorOf(t, rec).Code != "idempotency_key_reused" {
		t.Fatalf("key reused for another prefix: %d %s", rec.Code, rec.Body)
	}
	// Through a follower: the same answer, from the leader.
	cl.follower = true
	rec = call(s, http.MethodDelete, "/kv/d/?recurse", "", nil)
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &d) != nil || d.Deleted != 1 || rec.Header().Get(HeaderServedBy) != "n2" {
		t.Fatalf("via follower: %d %s", rec.Code, rec.Body)
	}
	if _, ok := st.f.Get("dd"); !ok {
		t.Error("dd, outside d/, was deleted")
	}
}

// TestRangeBadInput: each bad parameter is a clear 400 and changes
// nothing.
func TestRangeBadInput(t *testing.T) {
	s, st, _ := newFakeService(t, Options{})
	for i := range 5 {
		st.set(fmt.Sprintf("p/%d", i), "v")
		st.set(fmt.Sprintf("q/%d", i), "v")
	}
	a, _ := listOf(t, s, "/kv/p/?recurse&limit=2")
	k, _ := listOf(t, s, "/kv/p/?recurse&limit=2&keys")
	sp, _ := listOf(t, s, "/kv/?recurse&limit=1&separator=/")
	if a.Next == "" || k.Next == "" || sp.Next == "" {
		t.Fatal("no cursors to test with")
	}
	raw, _ := base64.RawURLEncoding.DecodeString(a.Next)
	tests := []struct {
		name, method, target string
		code                 string
		mention              string
	}{
		{"cursor from another prefix", "GET", "/kv/q/?recurse&limit=2&after=" + a.Next, "bad_cursor", "another listing"},
		{"cursor from keys-only", "GET", "/kv/p/?recurse&limit=2&after=" + k.Next, "bad_cursor", "another listing"},
		{"cursor without keys-only", "GET", "/kv/p/?recurse&keys&after=" + a.Next, "bad_cursor", "another listing"},
		{"cursor from a separator listing", "GET", "/kv/?recurse&after=" + sp.Next, "bad_cursor", "another listing"},
		{"malformed cursor", "GET", "/kv/p/?recurse&after=not-a-cursor!", "bad_cursor", "not a cursor"},
		{"truncated cursor", "GET", "/kv/p/?recurse&after=" + base64.RawURLEncoding.EncodeToString(raw[:4]), "bad_cursor", "not a cursor"},
		{"cursor of another version", "GET", "/kv/p/?recurse&after=" + base64.RawURLEncoding.EncodeToString(append([]byte{9}, raw[1:]...)), "bad_cursor", "not a cursor"},
		{"empty cursor", "GET", "/kv/p/?recurse&after=", "bad_cursor", "not a cursor"},
		{"huge cursor", "GET", "/kv/p/?recurse&after=" + strings.Repeat("A", 5000), "bad_cursor", "not a cursor"},
		{"separator without recurse", "GET", "/kv/p/?separator=/", "bad_request", "only with recurse"},
		{"limit without recurse", "GET", "/kv/p/?limit=5", "bad_request", "only with recurse"},
		{"count with recurse=false", "GET", "/kv/p/?recurse=false&count", "bad_request", "only with recurse"},
		{"malformed recurse", "GET", "/kv/p/?recurse=yes", "bad_request", "recurse"},
		{"zero limit", "GET", "/kv/p/?recurse&limit=0", "bad_request", "limit=0"},
		{"negative limit", "GET", "/kv/p/?recurse&limit=-1", "bad_request", "limit"},
		{"huge limit", "GET", "/kv/p/?recurse&limit=10001", "bad_request", "10000"},
		{"empty separator", "GET", "/kv/p/?recurse&separator=", "bad_request", "separator"},
		{"count with separator", "GET", "/kv/p/?recurse&count&separator=/", "bad_request", "totals only"},
		{"count with keys", "GET", "/kv/p/?recurse&count&keys", "bad_request", "totals only"},
		{"count with limit", "GET", "/kv/p/?recurse&count&limit=2", "bad_request", "totals only"},
		{"unknown parameter", "GET", "/kv/p/?recurse&prefix=p", "bad_request", `unknown parameter "prefix"`},
		{"bad consistency", "GET", "/kv/p/?recurse&consistency=eventual", "bad_request", "consistency"},
		{"delete everything", "DELETE", "/kv/?recurse", "bad_request", "name a prefix"},
		{"delete prefix with cas", "DELETE", "/kv/p/?recurse&cas=3", "bad_request", "cas"},
		{"delete prefix with limit", "DELETE", "/kv/p/?recurse&limit=3", "bad_request", `unknown parameter "limit"`},
		{"put with recurse", "PUT", "/kv/p/?recurse", "bad_request", "recurse is for GET and DELETE"},
		{"prefix over MAX_KEY_BYTES", "GET", "/kv/" + strings.Repeat("p", 1025) + "?recurse", "bad_request", "MAX_KEY_BYTES"},
		{"prefix not UTF-8", "GET", "/kv/%ff?recurse", "bad_request", "UTF-8"},
	}
	before := st.f.AppliedIndex()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := call(s, tt.method, tt.target, "", nil)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", rec.Code, rec.Body)
			}
			b := errorOf(t, rec)
			if b.Code != tt.code || !strings.Contains(b.Error, tt.mention) {
				t.Errorf("answer %+v, want code %s mentioning %q", b, tt.code, tt.mention)
			}
		})
	}
	if after := st.f.AppliedIndex(); after != before || st.f.Stats().Keys != 10 {
		t.Errorf("bad requests changed the state: index %d -> %d, %d keys", before, after, st.f.Stats().Keys)
	}
}

// TestListConsistency: the read levels apply to listings as to single
// reads: leader forwards from a follower, stale answers locally with its
// headers, minIndex waits.
func TestListConsistency(t *testing.T) {
	s, st, cl := newFakeService(t, Options{})
	st.set("p/1", "v")
	cl.follower = true
	rec := call(s, http.MethodGet, "/kv/p/?recurse&consistency=leader&limit=5", "", nil)
	if rec.Code != statusForwarded || rec.Body.String() != "GET /kv/p/?recurse&consistency=leader&limit=5" {
		t.Errorf("leader read on a follower: %d %s", rec.Code, rec.Body)
	}
	a, rec := listOf(t, s, "/kv/p/?recurse&consistency=stale")
	if len(a.Items) != 1 || rec.Header().Get(HeaderAppliedIndex) != "1" || rec.Header().Get(HeaderLastContact) == "" {
		t.Errorf("stale: %+v %v", a, rec.Header())
	}
	rec = call(s, http.MethodGet, "/kv/p/?recurse&count&minIndex=99", "", nil)
	if rec.Code != http.StatusServiceUnavailable || errorOf(t, rec).Code != "index_not_reached" {
		t.Errorf("minIndex not reached: %d %s", rec.Code, rec.Body)
	}
	q := url.Values{"recurse": {""}, "minIndex": {"1"}}
	if a, _ := listOf(t, s, "/kv/p/?"+q.Encode()); len(a.Items) != 1 {
		t.Errorf("minIndex reached: %+v", a)
	}
}

// TestCursorInDocs: the cursor docs/api.md shows is what this build
// writes for that page (prefix app/, index 57, last key app/b/x).
func TestCursorInDocs(t *testing.T) {
	q := fsm.ListQuery{Prefix: "app/"}
	if got := encodeCursor(&q, 57, "app/b/x"); got != "ATlhiLhFGWxoa2FwcC9iL3g" {
		t.Errorf("cursor %q; update docs/api.md", got)
	}
	s, _, _ := newFakeService(t, Options{})
	index, last, err := s.decodeCursor("ATlhiLhFGWxoa2FwcC9iL3g", &q)
	if err != nil || index != 57 || last != "app/b/x" {
		t.Errorf("decode: %d %q %v", index, last, err)
	}
}

// FuzzDecodeCursor: any ?after either is refused as bad_cursor or decodes
// to a position under the listing's prefix, and what encodeCursor writes
// always decodes back.
func FuzzDecodeCursor(f *testing.F) {
	f.Add("ATlhiLhFGWxoa2FwcC9iL3g", "app/", uint64(57), "app/b/x")
	f.Add("", "", uint64(1), "a")
	f.Add("AQ", "p/", uint64(0), "p/\xff")
	s, _, _ := newFakeService(f, Options{})
	f.Fuzz(func(t *testing.T, c, prefix string, index uint64, last string) {
		q := fsm.ListQuery{Prefix: prefix}
		if i, l, err := s.decodeCursor(c, &q); err == nil {
			if !strings.HasPrefix(l, prefix) || l == "" {
				t.Fatalf("cursor %q decoded to %d %q outside prefix %q", c, i, l, prefix)
			}
		} else if !errors.Is(err, ErrBadCursor) {
			t.Fatalf("cursor %q: %v, not bad_cursor", c, err)
		}
		full := prefix + last
		if full == "" || len(full) > s.opts.MaxKeyBytes {
			return
		}
		i, l, err := s.decodeCursor(encodeCursor(&q, index, full), &q)
		if err != nil || i != index || l != full {
			t.Fatalf("round trip of %d %q: %d %q %v", index, full, i, l, err)
		}
	})
}

// BenchmarkListHandler measures a page of 1,000 keys (100-byte values) out
// of 100,000, and a count of all 100,000 under one prefix, through
// Service.ServeHTTP (routing, the FSM read, the JSON answer) on the fakes:
// no Raft, no sockets, stale reads.
func BenchmarkListHandler(b *testing.B) {
	s, st, _ := newFakeService(b, Options{})
	const keys = 100_000
	value := strings.Repeat("v", 100)
	for i := range keys {
		st.set(fmt.Sprintf("key-%06d", i), value)
	}
	for _, bc := range []struct{ name, target string }{
		{"page_1000", "/kv/key-?recurse&limit=1000&consistency=stale"},
		{"page_1000_keys", "/kv/key-?recurse&limit=1000&keys&consistency=stale"},
		{"count_100k", "/kv/key-?recurse&count&consistency=stale"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, bc.target, nil)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// listItem and listResponse are a listing's answer as encoding/json
// writes it: the reference appendPageJSON must match byte for byte.
type listItem struct {
	Key string `json:"key"`
	jsonValue
	CreateIndex uint64 `json:"create_index"`
	ModIndex    uint64 `json:"mod_index"`
}

type listResponse struct {
	Index    uint64     `json:"index"`
	Items    []listItem `json:"items"`
	Prefixes *[]string  `json:"prefixes,omitempty"`
	More     bool       `json:"more"`
	Next     string     `json:"next,omitempty"`
}

func referencePageJSON(page *fsm.ListPage, keysOnly, withPrefixes bool, next string) []byte {
	resp := listResponse{Index: page.Index, Items: make([]listItem, len(page.Items)), More: page.More, Next: next}
	for i, e := range page.Items {
		resp.Items[i] = listItem{Key: e.Key, CreateIndex: e.CreateIndex, ModIndex: e.ModIndex}
		if !keysOnly {
			resp.Items[i].jsonValue = valueOf(e.Value)
		}
	}
	if withPrefixes {
		prefixes := slices.Clone(page.Prefixes)
		if prefixes == nil {
			prefixes = []string{}
		}
		resp.Prefixes = &prefixes
	}
	rec := httptest.NewRecorder()
	writeJSON(rec, http.StatusOK, resp)
	return rec.Body.Bytes()
}

// FuzzPageJSON: appendPageJSON writes what encoding/json writes for the
// same page, for any keys, values and prefixes (control bytes, HTML
// characters, U+2028, invalid UTF-8 included).
func FuzzPageJSON(f *testing.F) {
	f.Add("k<&>", "v\"\\\n\t\x01\u2028\u2029é", "p/\x7f", uint64(7), true)
	f.Add("a", "\xff\xfe", "", uint64(0), false)
	f.Add("\xed\xa0\x80", "x\u2029", "\xc3", uint64(1<<63), true)
	f.Fuzz(func(t *testing.T, key, value, prefix string, index uint64, more bool) {
		page := fsm.ListPage{
			Index:    index,
			Items:    []fsm.Entry{{Key: key, Value: value, CreateIndex: index / 2, ModIndex: index}, {Key: value, Value: key}},
			Prefixes: []string{prefix, key},
			More:     more,
		}
		next := ""
		if more {
			next = key + value
		}
		for _, keysOnly := range []bool{false, true} {
			for _, withPrefixes := range []bool{false, true} {
				got := appendPageJSON(nil, &page, keysOnly, withPrefixes, next, nil)
				want := referencePageJSON(&page, keysOnly, withPrefixes, next)
				if !bytes.Equal(got, want) {
					t.Fatalf("keysOnly %v prefixes %v:\n got %s\nwant %s", keysOnly, withPrefixes, got, want)
				}
			}
		}
		// An empty page.
		empty := fsm.ListPage{Index: index}
		if got, want := appendPageJSON(nil, &empty, false, true, "", nil), referencePageJSON(&empty, false, true, ""); !bytes.Equal(got, want) {
			t.Fatalf("empty page:\n got %s\nwant %s", got, want)
		}
	})
}

// BenchmarkPageJSON compares, in one run, the answer of a page of 1,000
// keys with 100-byte values written by appendPageJSON and by encoding/json
// (referencePageJSON).
func BenchmarkPageJSON(b *testing.B) {
	page := fsm.ListPage{Index: 100_000, More: true}
	for i := range 1000 {
		page.Items = append(page.Items, fsm.Entry{Key: fmt.Sprintf("key-%06d", i), Value: strings.Repeat("v", 100), CreateIndex: uint64(i), ModIndex: uint64(i)})
	}
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			appendPageJSON(make([]byte, 0, pageSize(&page)), &page, false, false, "next", nil)
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			referencePageJSON(&page, false, false, "next")
		}
	})
}
