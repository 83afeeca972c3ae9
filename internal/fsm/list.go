package fsm

// Ordered reads over many keys: listing a prefix a page at a time (all of
// it, or one level of it split at a separator), counting it, and deleting
// it in one command. The functions work on a tree handed to them, so they
// serve the live state under the FSM's lock, a View (a frozen copy-on-write
// clone), and other commands applied inside Apply alike.

import (
	"strings"
	"unsafe"

	"github.com/google/btree"
)

// ListQuery selects one page of the keys under a prefix, in byte order of
// the keys.
type ListQuery struct {
	// Prefix selects the keys that start with it; "" selects every key.
	Prefix string
	// After continues a listing: only keys above After are listed. With a
	// Separator, an After that lies inside a level prefix (it contains the
	// separator past Prefix) skips that whole prefix, so ListPage.Last of
	// a page that ended on a prefix continues after everything under it.
	// "" starts at the beginning.
	After string
	// Limit is the most items plus prefixes a page holds; it must be > 0
	// (a page of a zero or negative limit is empty and says More if any
	// key is selected).
	Limit int
	// MaxBytes stops a page early, before the element that would take the
	// page's key and value bytes (keys only with KeysOnly; a prefix counts
	// its own length) above it; a page always holds at least one element.
	// 0: no byte bound.
	MaxBytes int64
	// KeysOnly leaves Entry.Value empty (its bytes are not counted).
	KeysOnly bool
	// Separator, when not "", lists one level: a key whose part after
	// Prefix contains Separator is not listed itself but rolled up into
	// its level prefix (Prefix, that part up to and including the first
	// Separator), listed once in Prefixes, as S3's delimiter does.
	Separator string
}

// ListPage is one page of a listing.
type ListPage struct {
	// Items are the keys listed, in key order. Key and Value share the
	// state's own strings (nothing is copied); they never change.
	Items []Entry
	// Prefixes are the level prefixes (with a Separator), in key order.
	// Items and Prefixes together hold at most Limit elements.
	Prefixes []string
	// More: at least one more element follows this page.
	More bool
	// Last is the page's greatest element, a key or a prefix ("" when the
	// page is empty): ListQuery.After of the next page.
	Last string
	// Index is the applied index of the state listed.
	Index uint64
}

// Usage is what a prefix holds.
type Usage struct {
	Count int   // keys under the prefix
	Bytes int64 // their key and value bytes
	Index uint64
}

// listStart is where a listing of q begins: at start, inclusive or not; ok
// is false when nothing can follow (After lies beyond the prefix's keys).
func listStart(q *ListQuery) (start string, inclusive, ok bool) {
	switch {
	case q.After == "" || q.After < q.Prefix:
		return q.Prefix, true, true
	case !strings.HasPrefix(q.After, q.Prefix):
		// Above Prefix and not starting with it: above every key that does.
		return "", false, false
	}
	if q.Separator != "" {
		if i := strings.Index(q.After[len(q.Prefix):], q.Separator); i >= 0 {
			return successor(q.After[:len(q.Prefix)+i+len(q.Separator)])
		}
	}
	return q.After, false, true
}

// successor is the least string above every string that starts with p, as
// an inclusive start; ok is false when there is none (p is empty or all
// 0xFF bytes).
func successor(p string) (string, bool, bool) {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] != 0xFF {
			b := []byte(p[:i+1])
			b[i]++
			return string(b), true, true
		}
	}
	return "", false, false
}

// listTree reads one page of q from t, whose applied index is index. Each
// level prefix is found in O(log n) and skipped with a new descent, never
// by walking the keys under it, so a page costs O(Limit · log n) whatever
// lies under its prefixes. The caller keeps t from changing meanwhile (the
// FSM's lock, or a View, which never changes).
func listTree(t *btree.BTreeG[item], index uint64, q ListQuery) ListPage {
	page := ListPage{Index: index}
	start, inclusive, ok := listStart(&q)
	if !ok {
		return page
	}
	var n int
	var size int64
	// full reports whether the element of s bytes does not fit the page,
	// marking More (it exists, so more follows).
	full := func(s int64) bool {
		if n >= q.Limit || (q.MaxBytes > 0 && n > 0 && size+s > q.MaxBytes) {
			page.More = true
			return true
		}
		n++
		size += s
		return false
	}
	// Each descent lists keys until the page is full, the prefix ends, or
	// it meets a level prefix: then the next descent starts above it.
	// Every descent but the last adds one element, so at most Limit+1 run.
	for descend := true; descend; {
		descend = false
		first := true
		t.AscendGreaterOrEqual(probe(start), func(it item) bool {
			k := it.key()
			if first && !inclusive && k == start {
				first = false
				return true
			}
			first = false
			if !strings.HasPrefix(k, q.Prefix) {
				return false
			}
			if q.Separator != "" {
				if i := strings.Index(k[len(q.Prefix):], q.Separator); i >= 0 {
					p := k[:len(q.Prefix)+i+len(q.Separator)]
					if full(int64(len(p))) {
						return false
					}
					page.Prefixes = append(page.Prefixes, p)
					page.Last = p
					start, inclusive, descend = successor(p)
					return false
				}
			}
			e := it.entry()
			s := int64(len(it.kv))
			if q.KeysOnly {
				e.Value = ""
				s = int64(len(k))
			}
			if full(s) {
				return false
			}
			page.Items = append(page.Items, e)
			page.Last = k
			return true
		})
	}
	return page
}

// countTree counts the keys under prefix in t and their bytes. The whole
// tree ("") is answered from total, its kept sums, in O(1). Any other
// prefix costs two descents and a walk over its items that never reads
// a key's bytes (which would cost a cache miss per key): the walk stops
// at the last key under the prefix, found first and recognised by its
// string's address.
func countTree(t *btree.BTreeG[item], total int64, prefix string) (int, int64) {
	if prefix == "" {
		return t.Len(), total
	}
	var last item
	var found bool
	if succ, _, ok := successor(prefix); ok {
		t.DescendLessOrEqual(probe(succ), func(it item) bool {
			if it.key() == succ {
				return true
			}
			last, found = it, true
			return false
		})
	} else {
		last, found = t.Max()
	}
	if !found || !strings.HasPrefix(last.key(), prefix) {
		return 0, 0
	}
	var n int
	var size int64
	t.AscendGreaterOrEqual(probe(prefix), func(it item) bool {
		n++
		size += int64(len(it.kv))
		// The same address and length: the same string, so the same key.
		return unsafe.StringData(it.kv) != unsafe.StringData(last.kv) || len(it.kv) != len(last.kv)
	})
	return n, size
}

// deleteBatch is how many keys deletePrefixLocked collects per descent.
const deleteBatch = 256

// deletePrefixLocked deletes every key under prefix ("": every key) from
// the live state at index and returns how many it deleted. It is the
// apply side of OpDeletePrefix, for any command applied inside Apply: the
// caller holds f.mu for writing.
func (f *FSM) deletePrefixLocked(index uint64, prefix string) uint64 {
	n, freed := f.deletePrefixTree(f.tree, index, prefix)
	f.bytes -= freed
	if prefix == "" {
		f.detachAll()
	} else {
		f.detachPrefix(prefix)
	}
	return n
}

// deletePrefixTree deletes every key under prefix ("": every key) from t
// at index, with a delete event for each key in key order, and returns
// how many and their key and value bytes: deletePrefixLocked on the live
// tree, a transaction's delete_prefix on its clone. It costs O(k log n)
// for k keys deleted (the whole store: a walk for the events, then an
// O(1) clear), and holds at most deleteBatch items aside at a time.
func (f *FSM) deletePrefixTree(t *btree.BTreeG[item], index uint64, prefix string) (deleted uint64, freed int64) {
	if prefix == "" {
		n := t.Len()
		t.Ascend(func(it item) bool {
			freed += int64(len(it.kv))
			f.emitDelete(index, it)
			return true
		})
		t.Clear(false)
		return uint64(n), freed
	}
	batch := make([]item, 0, deleteBatch)
	// Every round but the last deletes deleteBatch keys, so this ends.
	for {
		batch = batch[:0]
		t.AscendGreaterOrEqual(probe(prefix), func(it item) bool {
			if !strings.HasPrefix(it.key(), prefix) {
				return false
			}
			batch = append(batch, it)
			return len(batch) < deleteBatch
		})
		for _, it := range batch {
			t.Delete(it)
			freed += int64(len(it.kv))
			f.emitDelete(index, it)
		}
		deleted += uint64(len(batch))
		if len(batch) < deleteBatch {
			return deleted, freed
		}
	}
}

// listLocked is listTree over the live state, for commands applied inside
// Apply (the caller holds f.mu).
func (f *FSM) listLocked(q ListQuery) ListPage {
	return listTree(f.tree, f.applied.Load(), q)
}

// List reads one page of q from this replica's current state, under the
// read lock (a page of Limit items holds it for O(Limit · log n)). The
// page's Index is the applied index of the state it read.
func (f *FSM) List(q ListQuery) ListPage {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.listLocked(q)
}

// Count reports the keys under prefix and their key and value bytes in
// this replica's current state, with the applied index it read. The whole
// store ("") is O(1). Any other prefix walks its keys (O(k), allocating
// nothing; see BenchmarkCount) over a View, so Apply waits only for the
// O(1) clone, not for the walk.
func (f *FSM) Count(prefix string) Usage {
	if prefix == "" {
		f.mu.RLock()
		defer f.mu.RUnlock()
		return Usage{Count: f.tree.Len(), Bytes: f.bytes, Index: f.applied.Load()}
	}
	return f.View().Count(prefix)
}
