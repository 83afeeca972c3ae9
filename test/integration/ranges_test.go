package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/httpapi"
	"github.com/raftkv/raftkv/internal/testcluster"
)

// page is a listing's answer.
type page struct {
	Index uint64 `json:"index"`
	Items []struct {
		Key         string  `json:"key"`
		Value       *string `json:"value"`
		ValueBase64 *string `json:"value_base64"`
		ModIndex    uint64  `json:"mod_index"`
	} `json:"items"`
	Prefixes *[]string `json:"prefixes"`
	More     bool      `json:"more"`
	Next     string    `json:"next"`
}

func (p page) keys() []string {
	var out []string
	for _, it := range p.Items {
		out = append(out, it.Key)
	}
	return out
}

// list sends GET target to member i and decodes the page; it fails the
// test on anything but a 200 whose X-Raft-Index is the page's index.
func list(t *testing.T, c *testcluster.Cluster, i int, target string) page {
	t.Helper()
	r := c.MustDo(t, i, http.MethodGet, target, nil, nil)
	var p page
	if r.Status != http.StatusOK || r.Decode(&p) != nil {
		t.Fatalf("GET %s via %s: %s", target, c.ID(i), r.Summary())
	}
	if r.RaftIndex() != p.Index || p.Index == 0 {
		t.Fatalf("GET %s via %s: X-Raft-Index %d, index %d", target, c.ID(i), r.RaftIndex(), p.Index)
	}
	return p
}

func putKV(t *testing.T, c *testcluster.Cluster, i int, key, value string) uint64 {
	t.Helper()
	r := c.MustDo(t, i, http.MethodPut, "/kv/"+key, []byte(value), nil)
	if r.Status != http.StatusOK {
		t.Fatalf("PUT %s via %s: %s", key, c.ID(i), r.Summary())
	}
	return r.Uint("index")
}

// TestRangesThroughFollower drives every range endpoint through a
// follower: listing (values, keys only, one level, pages), count, the read
// levels, and a prefix delete with a retried Idempotency-Key.
func TestRangesThroughFollower(t *testing.T) {
	c := testcluster.Start(t, 3)
	l := c.Leader(t)
	fs := others(c, l)
	f, g := fs[0], fs[1]

	for _, k := range []string{"app/a", "app/b/x", "app/b/y", "app/c/z/1", "app/d", "apple", "zzz"} {
		putKV(t, c, f, k, "v-"+k)
	}
	last := putKV(t, c, f, "app/bin", "\xff\xfe")

	// Linearizable by default: the follower's page has every write
	// acknowledged before it.
	p := list(t, c, f, "/kv/app/?recurse")
	if want := []string{"app/a", "app/b/x", "app/b/y", "app/bin", "app/c/z/1", "app/d"}; !slices.Equal(p.keys(), want) || p.More || p.Index < last {
		t.Fatalf("recurse via follower: %q more %v index %d (last write %d), want %q", p.keys(), p.More, p.Index, last, want)
	}
	if it := p.Items[3]; it.Value != nil || it.ValueBase64 == nil || *it.ValueBase64 != "//4=" {
		t.Errorf("app/bin: value %v value_base64 %v, want only value_base64 //4=", it.Value, it.ValueBase64)
	}
	if it := p.Items[0]; it.Value == nil || *it.Value != "v-app/a" {
		t.Errorf("app/a: %+v", it)
	}

	if p := list(t, c, f, "/kv/?recurse"); len(p.Items) != 8 {
		t.Errorf("the whole store: %q", p.keys())
	}
	if p := list(t, c, f, "/kv/app/?recurse&keys"); len(p.Items) != 6 || p.Items[0].Value != nil {
		t.Errorf("keys only: %+v", p.Items)
	}
	p = list(t, c, f, "/kv/app/?recurse&separator=/")
	if !slices.Equal(p.keys(), []string{"app/a", "app/bin", "app/d"}) || p.Prefixes == nil || !slices.Equal(*p.Prefixes, []string{"app/b/", "app/c/"}) {
		t.Errorf("one level: items %q prefixes %v", p.keys(), p.Prefixes)
	}

	// Pages of two with a separator, continued on the same follower.
	var got []string
	target := "/kv/app/?recurse&separator=/&limit=2"
	for range 10 {
		p := list(t, c, f, target)
		got = append(got, p.keys()...)
		got = append(got, *p.Prefixes...)
		if !p.More {
			break
		}
		target = "/kv/app/?recurse&separator=/&limit=2&after=" + url.QueryEscape(p.Next)
	}
	slices.Sort(got)
	if want := []string{"app/a", "app/b/", "app/bin", "app/c/", "app/d"}; !slices.Equal(got, want) {
		t.Errorf("pages: %q, want %q", got, want)
	}

	r := c.MustDo(t, f, http.MethodGet, "/kv/app/b/?recurse&count", nil, nil)
	if r.Status != 200 || r.Uint("count") != 2 || r.Uint("bytes") != uint64(2*len("app/b/xv-app/b/x")) || r.RaftIndex() < last {
		t.Errorf("count via follower: %s", r.Summary())
	}

	// consistency=leader is answered by the leader; stale with minIndex by
	// the follower once it has the write.
	r = c.MustDo(t, f, http.MethodGet, "/kv/app/?recurse&consistency=leader", nil, nil)
	if r.Status != 200 || r.ServedBy() != c.ID(l) {
		t.Errorf("leader read via follower: served by %q: %s", r.ServedBy(), r.Summary())
	}
	r = c.MustDo(t, g, http.MethodGet, fmt.Sprintf("/kv/app/?recurse&consistency=stale&minIndex=%d", last), nil, nil)
	if r.Status != 200 || r.ServedBy() != c.ID(g) || r.Header.Get(httpapi.HeaderAppliedIndex) == "" {
		t.Errorf("stale read with minIndex: %s %v", r.Summary(), r.Header)
	}

	// One entry deletes the prefix, through a follower; a retry through
	// the other follower answers the first count and deletes nothing new.
	hdr := http.Header{httpapi.HeaderIdempotencyKey: {"drop-app-b"}}
	r = c.MustDo(t, f, http.MethodDelete, "/kv/app/b/?recurse", nil, hdr)
	if r.Status != 200 || r.Uint("deleted") != 2 || r.String("prefix") != "app/b/" || r.ServedBy() != c.ID(l) {
		t.Fatalf("delete prefix via follower: %s", r.Summary())
	}
	delIndex := r.Uint("index")
	putKV(t, c, l, "app/b/new", "after the delete")
	r = c.MustDo(t, g, http.MethodDelete, "/kv/app/b/?recurse", nil, hdr)
	if r.Status != 200 || r.Uint("deleted") != 2 || r.Uint("index") != delIndex || r.Header.Get(httpapi.HeaderReplayed) != "true" {
		t.Fatalf("retried delete: %s %v", r.Summary(), r.Header)
	}
	for _, i := range c.Running() {
		p := list(t, c, i, "/kv/app/b/?recurse")
		if !slices.Equal(p.keys(), []string{"app/b/new"}) {
			t.Errorf("after the delete, %s lists %q, want only app/b/new", c.ID(i), p.keys())
		}
	}
}

// TestRangePagingWhileWriting: pages of one listing sent to the node that
// served the first page report the first page's index and show the keys
// as they were then, while writes continue; the same cursor sent to
// another node is served from that node's current state and index.
func TestRangePagingWhileWriting(t *testing.T) {
	c := testcluster.Start(t, 3)
	l := c.Leader(t)
	fs := others(c, l)
	f, g := fs[0], fs[1]
	const n = 60
	want := make([]string, n)
	for i := range n {
		want[i] = fmt.Sprintf("p/%02d", i)
		putKV(t, c, l, want[i], "old")
	}

	first := list(t, c, f, "/kv/p/?recurse&limit=7")
	got := first.keys()

	// From now on a writer changes keys under the prefix, adds and deletes
	// some, until the pages are read (at most 2,000 writes).
	stop, wrote := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	var writes int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for writes = 0; writes < 2000; writes++ {
			select {
			case <-stop:
				return
			default:
			}
			key := fmt.Sprintf("p/%02d", writes%n)
			method, target, body := http.MethodPut, "/kv/"+key, []byte("new")
			switch writes % 5 {
			case 1:
				target = fmt.Sprintf("/kv/p/%02d-extra", writes%n)
			case 3:
				method, body = http.MethodDelete, nil
			}
			if _, err := c.Do(l, method, target, body, nil); err != nil {
				return
			}
			if writes == 0 {
				close(wrote)
			}
		}
	}()
	select {
	case <-wrote:
	case <-time.After(catchUp):
		t.Fatal("the writer wrote nothing")
	}

	next := first.Next
	var pages int
	for p := first; p.More; pages++ {
		if pages > n {
			t.Fatal("listing did not end")
		}
		// A write the follower has applied before the next page: the page
		// must not show it.
		idx := putKV(t, c, l, "p/00", fmt.Sprint("between pages ", pages))
		if r := c.MustDo(t, f, http.MethodGet, fmt.Sprintf("/kv/p/00?consistency=stale&minIndex=%d", idx), nil, nil); r.Status != 200 {
			t.Fatalf("follower did not apply %d: %s", idx, r.Summary())
		}
		p = list(t, c, f, "/kv/p/?recurse&limit=7&after="+url.QueryEscape(next))
		if p.Index != first.Index {
			t.Fatalf("page %d at index %d, the first page's is %d", pages+2, p.Index, first.Index)
		}
		for _, it := range p.Items {
			if it.Value == nil || *it.Value != "old" {
				t.Fatalf("page %d shows %q = %v, a write after the first page", pages+2, it.Key, it.Value)
			}
		}
		got = append(got, p.keys()...)
		next = p.Next
	}
	close(stop)
	wg.Wait()
	if !slices.Equal(got, want) {
		t.Errorf("pages list %q,\nwant the %d keys as at the first page %q", got, n, want)
	}

	// Another node holds no view: the page comes from its current state,
	// continuing after the cursor, at its own (later) index.
	second := list(t, c, f, "/kv/p/?recurse&limit=7")
	p := list(t, c, g, "/kv/p/?recurse&limit=7&after="+url.QueryEscape(second.Next))
	if p.Index <= first.Index || len(p.Items) == 0 || p.Items[0].Key <= second.keys()[len(second.Items)-1] {
		t.Errorf("another node: index %d (first %d), keys %q after %q", p.Index, first.Index, p.keys(), second.keys())
	}
}

// TestRangeBadInput: bad range parameters are 400s with their code, from
// a follower as from the leader, and change nothing.
func TestRangeBadInput(t *testing.T) {
	c := testcluster.Start(t, 3)
	l := c.Leader(t)
	f := others(c, l)[0]
	for i := range 5 {
		putKV(t, c, l, fmt.Sprintf("p/%d", i), "v")
		putKV(t, c, l, fmt.Sprintf("q/%d", i), "v")
	}
	cur := list(t, c, f, "/kv/p/?recurse&limit=2").Next
	before := list(t, c, l, "/kv/?recurse")
	tests := []struct {
		name, method, target, code string
	}{
		{"cursor from another prefix", "GET", "/kv/q/?recurse&after=" + cur, "bad_cursor"},
		{"cursor with keys only", "GET", "/kv/p/?recurse&keys&after=" + cur, "bad_cursor"},
		{"malformed cursor", "GET", "/kv/p/?recurse&after=%21%21", "bad_cursor"},
		{"separator without recurse", "GET", "/kv/p/?separator=/", "bad_request"},
		{"after without recurse", "GET", "/kv/p/?after=" + cur, "bad_request"},
		{"negative limit", "GET", "/kv/p/?recurse&limit=-1", "bad_request"},
		{"zero limit", "GET", "/kv/p/?recurse&limit=0", "bad_request"},
		{"huge limit", "GET", "/kv/p/?recurse&limit=1000000", "bad_request"},
		{"unknown parameter", "GET", "/kv/p/?recurse&depth=1", "bad_request"},
		{"count with separator", "GET", "/kv/p/?recurse&count&separator=/", "bad_request"},
		{"delete everything", "DELETE", "/kv/?recurse", "bad_request"},
		{"delete prefix with cas", "DELETE", "/kv/p/?recurse&cas=1", "bad_request"},
		{"delete prefix with a malformed recurse", "DELETE", "/kv/p/?recurse=all", "bad_request"},
	}
	for _, tt := range tests {
		for _, i := range []int{f, l} {
			r := c.MustDo(t, i, tt.method, tt.target, nil, nil)
			if r.Status != http.StatusBadRequest || r.Code() != tt.code || r.String("error") == "" {
				t.Errorf("%s via %s: %s, want 400 %s", tt.name, c.ID(i), r.Summary(), tt.code)
			}
			if r.ServedBy() != c.ID(i) {
				t.Errorf("%s via %s: answered by %s, want the node asked", tt.name, c.ID(i), r.ServedBy())
			}
		}
	}
	after := list(t, c, l, "/kv/?recurse")
	if after.Index != before.Index || !slices.Equal(after.keys(), before.keys()) {
		t.Errorf("bad requests changed the store: index %d -> %d, keys %q -> %q", before.Index, after.Index, before.keys(), after.keys())
	}
	if !strings.HasPrefix(before.keys()[0], "p/") || len(before.Items) != 10 {
		t.Errorf("store %q", before.keys())
	}
}
