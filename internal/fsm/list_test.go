package fsm

import (
	"bytes"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// element is one thing a listing returns: a key, or (isPrefix) a level
// prefix.
type element struct {
	s        string
	isPrefix bool
}

func (e element) String() string {
	if e.isPrefix {
		return fmt.Sprintf("P%q", e.s)
	}
	return fmt.Sprintf("K%q", e.s)
}

// bruteList is the reference listing: filter the model's keys by prefix,
// sort, and roll keys up into level prefixes with sep, by brute force.
func bruteList(model map[string]string, prefix, sep string) []element {
	keys := slices.Sorted(maps.Keys(model))
	var out []element
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		e := element{s: k}
		if sep != "" {
			if i := strings.Index(k[len(prefix):], sep); i >= 0 {
				e = element{s: k[:len(prefix)+i+len(sep)], isPrefix: true}
			}
		}
		if len(out) > 0 && out[len(out)-1] == e {
			continue
		}
		out = append(out, e)
	}
	return out
}

// pageElements merges a page's items and prefixes in key order.
func pageElements(p ListPage) []element {
	var out []element
	for _, it := range p.Items {
		out = append(out, element{s: it.Key})
	}
	for _, s := range p.Prefixes {
		out = append(out, element{s: s, isPrefix: true})
	}
	slices.SortFunc(out, func(a, b element) int { return strings.Compare(a.s, b.s) })
	return out
}

// listAll pages through q with list, each page continuing after the last,
// and checks every page's shape: at most Limit elements, More exactly
// when a page is not the last, Last the page's greatest element.
func listAll(t testing.TB, list func(ListQuery) ListPage, q ListQuery) []element {
	t.Helper()
	var all []element
	for pages := 0; ; pages++ {
		if pages > 100_000 {
			t.Fatalf("listing %+v did not end", q)
		}
		p := list(q)
		els := pageElements(p)
		if len(els) > q.Limit {
			t.Fatalf("page of %d elements, limit %d", len(els), q.Limit)
		}
		if len(els) > 0 && p.Last != els[len(els)-1].s {
			t.Fatalf("Last = %q, want the page's greatest element %q", p.Last, els[len(els)-1].s)
		}
		all = append(all, els...)
		if !p.More {
			return all
		}
		if len(els) == 0 {
			t.Fatalf("empty page with More for %+v", q)
		}
		q.After = p.Last
	}
}

func fsmWith(t testing.TB, model map[string]string) *FSM {
	t.Helper()
	f := New()
	var i uint64
	for _, k := range slices.Sorted(maps.Keys(model)) {
		i++
		applyAll(t, f, setLog(i, k, model[k]))
	}
	return f
}

var edgeKeys = map[string]string{
	"a": "1", "a/": "2", "a/b": "3", "a/b/c": "4", "a//x": "5", "a\xff": "6", "a\xff\xff": "7",
	"a\xff\xff/z": "8", "ab": "9", "b": "10", "\x00": "11", "\xff": "12", "\xff\xff": "13", "\xff\xff\xff": "14",
}

func TestListOrderAndPrefixEdges(t *testing.T) {
	f := fsmWith(t, edgeKeys)
	for _, prefix := range []string{"", "a", "a/", "a/b", "a\xff", "a\xff\xff", "\xff", "\xff\xff", "\x00", "c", "a/b/c/d"} {
		for _, sep := range []string{"", "/", "\xff", "//"} {
			want := bruteList(edgeKeys, prefix, sep)
			for limit := 1; limit <= len(edgeKeys)+1; limit++ {
				got := listAll(t, f.List, ListQuery{Prefix: prefix, Separator: sep, Limit: limit})
				if !slices.Equal(got, want) {
					t.Fatalf("prefix %q sep %q limit %d:\n got %v\nwant %v", prefix, sep, limit, got, want)
				}
			}
		}
	}
}

func TestListSeparatorLevels(t *testing.T) {
	model := map[string]string{"app/": "root", "app/a": "1", "app/d": "4", "app//x": "5", "apple": "no"}
	for i := range 50 {
		model[fmt.Sprintf("app/b/%02d", i)] = "b"
		model[fmt.Sprintf("app/c/x/%02d", i)] = "c"
	}
	f := fsmWith(t, model)
	p := f.List(ListQuery{Prefix: "app/", Separator: "/", Limit: 100})
	var keys []string
	for _, it := range p.Items {
		keys = append(keys, it.Key)
	}
	if want := []string{"app/", "app/a", "app/d"}; !slices.Equal(keys, want) {
		t.Errorf("items %q, want %q", keys, want)
	}
	if want := []string{"app//", "app/b/", "app/c/"}; !slices.Equal(p.Prefixes, want) {
		t.Errorf("prefixes %q, want %q", p.Prefixes, want)
	}
	if p.More || p.Last != "app/d" {
		t.Errorf("More %v Last %q, want false and \"app/d\"", p.More, p.Last)
	}

	// A page counts prefixes toward the limit, and the cursor after a
	// prefix skips all 50 keys under it: six pages of one.
	var got []string
	q := ListQuery{Prefix: "app/", Separator: "/", Limit: 1}
	for range 10 {
		p := f.List(q)
		got = append(got, p.Last)
		if !p.More {
			break
		}
		q.After = p.Last
	}
	if want := []string{"app/", "app//", "app/a", "app/b/", "app/c/", "app/d"}; !slices.Equal(got, want) {
		t.Errorf("pages of one: %q, want %q", got, want)
	}

	// The next level down.
	p = f.List(ListQuery{Prefix: "app/c/", Separator: "/", Limit: 10})
	if len(p.Items) != 0 || !slices.Equal(p.Prefixes, []string{"app/c/x/"}) || p.More {
		t.Errorf("app/c/: items %v prefixes %q more %v, want only app/c/x/", p.Items, p.Prefixes, p.More)
	}
}

func TestListAfterEdges(t *testing.T) {
	f := fsmWith(t, edgeKeys)
	cases := []struct {
		q    ListQuery
		want []string
	}{
		{ListQuery{Prefix: "a/", After: "a"}, []string{"a/", "a//x", "a/b", "a/b/c"}}, // below the prefix: from its start
		{ListQuery{Prefix: "a/", After: "a/b"}, []string{"a/b/c"}},
		{ListQuery{Prefix: "a/", After: "a/a"}, []string{"a/b", "a/b/c"}}, // an absent key
		{ListQuery{Prefix: "a/", After: "a0"}, nil},                       // above every key under the prefix
		{ListQuery{Prefix: "a/", After: "b"}, nil},
		{ListQuery{Prefix: "a/", After: "a/", Separator: "/"}, []string{"a//", "a/b", "a/b/"}}, // "a/" is an item at this level
		{ListQuery{Prefix: "a/", After: "a/b/", Separator: "/"}, nil},                          // inside the level a/b/: skip it
		{ListQuery{Prefix: "a/", After: "a/b/zzz", Separator: "/"}, nil},
		{ListQuery{Prefix: "", After: "\xff\xff", Separator: "\xff"}, nil}, // the level "\xff" has no successor
		{ListQuery{Prefix: "", After: "a\xff"}, []string{"a\xff\xff", "a\xff\xff/z", "b", "\xff", "\xff\xff", "\xff\xff\xff"}},
	}
	for _, c := range cases {
		c.q.Limit = 100
		p := f.List(c.q)
		var got []string
		for _, e := range pageElements(p) {
			got = append(got, e.s)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%+v: got %q, want %q", c.q, got, c.want)
		}
	}
}

func TestListValuesKeysOnlyAndBytes(t *testing.T) {
	f := New()
	applyAll(t, f, setLog(1, "k/1", "one"), setLog(2, "k/2", "two"), setLog(3, "k/1", "uno"), setLog(4, "k/3", strings.Repeat("x", 100)))
	p := f.List(ListQuery{Prefix: "k/", Limit: 10})
	want := []Entry{{"k/1", "uno", 1, 3}, {"k/2", "two", 2, 2}, {"k/3", strings.Repeat("x", 100), 4, 4}}
	if !slices.Equal(p.Items, want) || p.Index != 4 {
		t.Errorf("items %+v index %d, want %+v at 4", p.Items, p.Index, want)
	}
	p = f.List(ListQuery{Prefix: "k/", Limit: 10, KeysOnly: true})
	for i, it := range p.Items {
		if it.Value != "" || it.Key != want[i].Key || it.ModIndex != want[i].ModIndex {
			t.Errorf("keys only: %+v", it)
		}
	}
	// A byte budget ends the page before the item that would exceed it,
	// but a page always holds one item.
	p = f.List(ListQuery{Prefix: "k/", Limit: 10, MaxBytes: 12})
	if len(p.Items) != 2 || !p.More || p.Last != "k/2" {
		t.Errorf("MaxBytes 12: %d items more %v last %q, want 2, true, k/2", len(p.Items), p.More, p.Last)
	}
	p = f.List(ListQuery{Prefix: "k/3", Limit: 10, MaxBytes: 1})
	if len(p.Items) != 1 || p.More {
		t.Errorf("MaxBytes 1 over one big item: %d items more %v, want 1, false", len(p.Items), p.More)
	}
	// Keys only counts key bytes: all three fit 9 bytes.
	if p := f.List(ListQuery{Prefix: "k/", Limit: 10, MaxBytes: 9, KeysOnly: true}); len(p.Items) != 3 || p.More {
		t.Errorf("keys only MaxBytes 9: %d items more %v", len(p.Items), p.More)
	}
	if p := f.List(ListQuery{Prefix: "k/", Limit: 0}); len(p.Items) != 0 || !p.More {
		t.Errorf("limit 0: %d items more %v, want none and More", len(p.Items), p.More)
	}
}

func TestCount(t *testing.T) {
	f := fsmWith(t, edgeKeys)
	for _, prefix := range []string{"", "a", "a/", "a\xff", "\xff", "z"} {
		var n int
		var b int64
		for k, v := range edgeKeys {
			if strings.HasPrefix(k, prefix) {
				n++
				b += int64(len(k) + len(v))
			}
		}
		u := f.Count(prefix)
		if u.Count != n || u.Bytes != b || u.Index != uint64(len(edgeKeys)) {
			t.Errorf("Count(%q) = %+v, want %d keys %d bytes at %d", prefix, u, n, b, len(edgeKeys))
		}
		if v := f.View().Count(prefix); v != u {
			t.Errorf("View().Count(%q) = %+v, want %+v", prefix, v, u)
		}
	}
}

func delPrefixLog(index uint64, prefix, requestID string) *raft.Log {
	return cmdLog(index, Command{Op: OpDeletePrefix, Key: prefix, RequestID: requestID})
}

func TestDeletePrefix(t *testing.T) {
	model := maps.Clone(edgeKeys)
	for i := range 1000 { // several delete batches
		model[fmt.Sprintf("a/many/%04d", i)] = "v"
	}
	f := fsmWith(t, model)
	next := uint64(len(model))
	del := func(prefix, id string) *Result {
		t.Helper()
		next++
		return applyAll(t, f, delPrefixLog(next, prefix, id))[0].(*Result)
	}
	check := func(prefix, id string) {
		t.Helper()
		var want uint64
		for k := range model {
			if strings.HasPrefix(k, prefix) {
				want++
				delete(model, k)
			}
		}
		res := del(prefix, id)
		if res.Err != nil || res.Current != want || res.Index != next || res.Replayed {
			t.Fatalf("delete prefix %q: %+v, want %d deleted at %d", prefix, res, want, next)
		}
		var got []string
		for _, it := range f.List(ListQuery{Limit: 10_000}).Items {
			got = append(got, it.Key)
			if model[it.Key] != it.Value {
				t.Fatalf("after deleting %q: %q = %q, want %q", prefix, it.Key, it.Value, model[it.Key])
			}
		}
		if want := slices.Sorted(maps.Keys(model)); !slices.Equal(got, want) {
			t.Fatalf("after deleting %q: keys %q, want %q", prefix, got, want)
		}
		var bytes int64
		for k, v := range model {
			bytes += int64(len(k) + len(v))
		}
		if s := f.Stats(); s.Keys != len(model) || s.Bytes != bytes || s.AppliedIndex != next {
			t.Fatalf("after deleting %q: stats %+v, want %d keys %d bytes at %d", prefix, s, len(model), bytes, next)
		}
	}
	check("a/", "first")
	check("a/", "") // nothing left: 0, not an error
	check("a\xff", "")
	check("\xff\xff", "")

	// A retry with the same request id answers the first outcome (a new
	// delete of a/ would find none).
	res := del("a/", "first")
	if !res.Replayed || res.Current != 1004 {
		t.Errorf("replay: %+v, want the first delete of a/ replayed (1004 keys)", res)
	}
	check("", "")
	if s := f.Stats(); s.Keys != 0 || s.Bytes != 0 {
		t.Errorf("after deleting everything: %+v", s)
	}
}

func TestDeletePrefixCommand(t *testing.T) {
	for _, c := range []Command{
		{Op: OpDeletePrefix, Key: "p/"},
		{Op: OpDeletePrefix},
		{Op: OpDeletePrefix, Key: "p", RequestID: "r1"},
	} {
		got, err := DecodeCommand(c.Encode(nil))
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Errorf("round trip %+v: %+v, %v", c, got, err)
		}
	}
	for _, c := range []Command{
		{Op: OpDeletePrefix, Key: "p", HasCAS: true, CAS: 3},
		{Op: OpDeletePrefix, Key: "p", Value: "v"},
		{Op: OpDeletePrefix, Key: "p", NodeID: "n1"},
		{Op: OpDeletePrefix, Key: "p", RequestID: strings.Repeat("r", MaxRequestIDBytes+1)},
	} {
		if _, err := DecodeCommand(c.Encode(nil)); err == nil {
			t.Errorf("%+v decoded", c)
		}
	}
	if OpDeletePrefix != 7 || OpDeletePrefix.String() != "delete-prefix" {
		t.Errorf("OpDeletePrefix = %d %q: its number is part of the log format", OpDeletePrefix, OpDeletePrefix)
	}
}

// The same log, applied by two replicas in batches of different sizes,
// gives byte-identical snapshots, deletes of prefixes included.
func TestDeletePrefixDeterministic(t *testing.T) {
	var logs []*raft.Log
	for i := range 3000 {
		idx := uint64(len(logs) + 1)
		switch {
		case i%97 == 0:
			logs = append(logs, delPrefixLog(idx, fmt.Sprintf("k/%d", i%7), fmt.Sprint("r", i)))
		default:
			logs = append(logs, setLog(idx, fmt.Sprintf("k/%d/%d", (i*31)%7, i), strings.Repeat("v", i%13)))
		}
	}
	var first []byte
	for _, batch := range []int{1, 7, 64, len(logs)} {
		f := New()
		for i := 0; i < len(logs); i += batch {
			applyAll(t, f, logs[i:min(i+batch, len(logs))]...)
		}
		snap := persist(t, f)
		if first == nil {
			first = snap
		} else if !bytes.Equal(snap, first) {
			t.Fatalf("batch %d: snapshot bytes differ", batch)
		}
	}
}

func TestViewIsFrozen(t *testing.T) {
	f := fsmWith(t, map[string]string{"a": "1", "b": "2"})
	v := f.View()
	applyAll(t, f, setLog(3, "a", "changed"), setLog(4, "c", "3"), delPrefixLog(5, "b", ""))
	p := v.List(ListQuery{Limit: 10})
	if want := []Entry{{"a", "1", 1, 1}, {"b", "2", 2, 2}}; !slices.Equal(p.Items, want) || p.Index != 2 || v.Index() != 2 {
		t.Errorf("view after writes: %+v at %d, want %+v at 2", p.Items, p.Index, want)
	}
	if p := f.List(ListQuery{Limit: 10}); len(p.Items) != 2 || p.Items[0].Value != "changed" || p.Index != 5 {
		t.Errorf("live: %+v at %d", p.Items, p.Index)
	}
}

func TestViews(t *testing.T) {
	f := fsmWith(t, map[string]string{"a": "1"})
	t0 := time.Unix(1000, 0)
	vs := NewViews(2, 10*time.Second)
	v1 := vs.Hold(f, t0)
	if again := vs.Hold(f, t0.Add(time.Second)); again != v1 {
		t.Error("a second Hold at the same index took a new view")
	}
	applyAll(t, f, setLog(2, "b", "2"))
	v2 := vs.Hold(f, t0.Add(2*time.Second))
	if v2 == v1 || v2.Index() != 2 {
		t.Fatalf("Hold after a write: index %d", v2.Index())
	}
	if got, ok := vs.Get(1, t0.Add(10*time.Second)); !ok || got != v1 {
		t.Error("view 1, held anew at t0+1s, gone before its time")
	}
	if _, ok := vs.Get(1, t0.Add(11*time.Second)); ok {
		t.Error("view 1 outlived its time to live")
	}
	// Full: the view that expires first goes.
	applyAll(t, f, setLog(3, "c", "3"))
	vs.Hold(f, t0.Add(3*time.Second))
	applyAll(t, f, setLog(4, "d", "4"))
	vs.Hold(f, t0.Add(4*time.Second))
	if vs.Len(t0.Add(4*time.Second)) != 2 {
		t.Errorf("%d views held, at most 2", vs.Len(t0.Add(4*time.Second)))
	}
	if _, ok := vs.Get(3, t0.Add(5*time.Second)); !ok {
		t.Error("view 3 dropped")
	}
	if _, ok := vs.Get(2, t0.Add(5*time.Second)); ok {
		t.Error("view 2, the first to expire, still held past the bound")
	}
	if n := vs.Len(t0.Add(time.Hour)); n != 0 {
		t.Errorf("%d views held after every one expired", n)
	}
}

// FuzzList applies random sets, deletes and deletes of prefixes over a
// small alphabet (with 0xFF), then checks every listing (each prefix of a
// few, each separator, each limit, paged through) and count against a
// brute-force filter and sort of a reference map.
func FuzzList(f *testing.F) {
	f.Add([]byte("\x00a/b\x01ab\x02a\x00\xff\xff/\x00//a"))
	f.Add([]byte("\x00aaa\x00ab/\x00a/b/c\x02a/\x00b"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		const alphabet = "ab/\xff"
		fm := New()
		model := map[string]string{}
		var index uint64
		// Each op: a kind byte, then a key of up to 4 letters.
		for len(ops) >= 2 && index < 200 {
			kind, n := ops[0]%3, int(ops[1]%5)
			ops = ops[2:]
			n = min(n, len(ops))
			var key []byte
			for _, c := range ops[:n] {
				key = append(key, alphabet[int(c)%len(alphabet)])
			}
			ops = ops[n:]
			k := string(key)
			index++
			switch {
			case kind == 0 && k != "":
				applyAll(t, fm, setLog(index, k, fmt.Sprint(index)))
				model[k] = fmt.Sprint(index)
			case kind == 1 && k != "":
				applyAll(t, fm, delLog(index, k))
				delete(model, k)
			default:
				res := applyAll(t, fm, delPrefixLog(index, k, ""))[0].(*Result)
				var want uint64
				for mk := range model {
					if strings.HasPrefix(mk, k) {
						delete(model, mk)
						want++
					}
				}
				if res.Current != want {
					t.Fatalf("delete prefix %q deleted %d, want %d", k, res.Current, want)
				}
			}
		}
		v := fm.View()
		for _, prefix := range []string{"", "a", "a/", "\xff", "b\xff"} {
			for _, sep := range []string{"", "/", "\xff", "a/"} {
				want := bruteList(model, prefix, sep)
				for _, limit := range []int{1, 2, 3, 1000} {
					q := ListQuery{Prefix: prefix, Separator: sep, Limit: limit}
					if got := listAll(t, v.List, q); !slices.Equal(got, want) {
						t.Fatalf("prefix %q sep %q limit %d:\n got %v\nwant %v", prefix, sep, limit, got, want)
					}
				}
			}
			var n int
			var b int64
			for k, val := range model {
				if strings.HasPrefix(k, prefix) {
					n++
					b += int64(len(k) + len(val))
				}
			}
			if u := fm.Count(prefix); u.Count != n || u.Bytes != b {
				t.Fatalf("Count(%q) = %+v, want %d keys %d bytes", prefix, u, n, b)
			}
		}
		// Items carry the model's values.
		p := fm.List(ListQuery{Limit: 1000})
		for _, it := range p.Items {
			if model[it.Key] != it.Value {
				t.Fatalf("key %q value %q, want %q", it.Key, it.Value, model[it.Key])
			}
		}
	})
}

// TestViewsConcurrentWithApply: views taken, shared and read by several
// goroutines while Apply writes and deletes prefixes (run under -race):
// each page read from a view shows the state at the view's index.
func TestViewsConcurrentWithApply(t *testing.T) {
	f := New()
	const keys = 200
	for i := range keys {
		applyAll(t, f, setLog(uint64(i+1), fmt.Sprintf("k/%03d", i), "0"))
	}
	vs := NewViews(4, time.Minute)
	done := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			var err error
			defer func() { errs <- err }()
			now := time.Unix(0, 0)
			for n := 0; n < 200; n++ {
				select {
				case <-done:
					return
				default:
				}
				v := vs.Hold(f, now)
				// Every key's value is "0" or the index of its last write,
				// none is newer than the view, and the view does not
				// change while Apply goes on.
				all := listAllPages(v, ListQuery{Prefix: "k/", Limit: 17})
				for _, e := range all {
					if e.ModIndex > v.Index() || (e.Value != "0" && e.Value != fmt.Sprint(e.ModIndex)) {
						err = fmt.Errorf("view at %d holds %+v", v.Index(), e)
						return
					}
				}
				if again := listAllPages(v, ListQuery{Prefix: "k/", Limit: 1000}); !slices.Equal(again, all) {
					err = fmt.Errorf("view at %d changed between two listings", v.Index())
					return
				}
				if again, ok := vs.Get(v.Index(), now); ok && again.Index() != v.Index() {
					err = fmt.Errorf("Get(%d) returned a view at %d", v.Index(), again.Index())
					return
				}
			}
		}()
	}
	index := uint64(keys)
	for i := range 2000 {
		index++
		if i%100 == 99 {
			applyAll(t, f, delPrefixLog(index, fmt.Sprintf("k/%d", i%2), ""))
			continue
		}
		applyAll(t, f, setLog(index, fmt.Sprintf("k/%03d", i%keys), fmt.Sprint(index)))
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := vs.Len(time.Unix(0, 0)); n > 4 {
		t.Errorf("%d views held, at most 4", n)
	}
}

func listAllPages(v *View, q ListQuery) []Entry {
	var out []Entry
	for range 1000 {
		p := v.List(q)
		out = append(out, p.Items...)
		if !p.More {
			break
		}
		q.After = p.Last
	}
	return out
}
