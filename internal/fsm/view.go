package fsm

import (
	"sync"
	"time"

	"github.com/google/btree"
)

// View is the key-value state frozen at one applied index: a copy-on-write
// clone of the tree, taken in O(1). It never changes, so any number of
// goroutines may read it without a lock while Apply goes on.
//
// A view costs nothing when taken. While it is held, each tree node that
// Apply writes is copied once (the view keeps the old one), so a held view
// keeps alive the nodes written since it was taken and the old keys and
// values they hold: at most the whole state as it was at Index.
type View struct {
	tree  *btree.BTreeG[item]
	bytes int64
	index uint64
}

// View freezes the current state. It takes the write lock for the O(1)
// clone.
func (f *FSM) View() *View {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &View{tree: f.tree.Clone(), bytes: f.bytes, index: f.applied.Load()}
}

// Index is the applied index the view was taken at.
func (v *View) Index() uint64 { return v.index }

// List reads one page of q from the view; the page's Index is the view's.
func (v *View) List(q ListQuery) ListPage { return listTree(v.tree, v.index, q) }

// Count reports the keys under prefix in the view and their bytes.
func (v *View) Count(prefix string) Usage {
	n, b := countTree(v.tree, v.bytes, prefix)
	return Usage{Count: n, Bytes: b, Index: v.index}
}

// Views held for paged listings (see Views): how many at most, and for how
// long. Together they bound the memory held views keep alive (see View):
// at most MaxViews old states, each for at most ViewTTL.
const (
	MaxViews = 16
	ViewTTL  = 30 * time.Second
)

// Views holds recent views, one per applied index, so that the pages of a
// listing after the first read the state the first page read. At most max
// views are held, each until ttl after it was last taken (Hold); when all
// max are held, Hold drops the one that expires first. The caller passes
// the time: this is read-side bookkeeping, never part of Apply.
type Views struct {
	mu   sync.Mutex
	max  int
	ttl  time.Duration
	held []heldView
}

type heldView struct {
	v     *View
	until time.Time
}

// NewViews holds at most n views (at least 1), each for ttl.
func NewViews(n int, ttl time.Duration) *Views {
	return &Views{max: max(n, 1), ttl: ttl}
}

// Hold returns a view of f's current state and holds it until now+ttl. A
// held view at f's current applied index is shared (and held anew) rather
// than taken again.
func (vs *Views) Hold(f *FSM, now time.Time) *View {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	vs.expireLocked(now)
	index := f.AppliedIndex()
	for i := range vs.held {
		if vs.held[i].v.index == index {
			vs.held[i].until = now.Add(vs.ttl)
			return vs.held[i].v
		}
	}
	v := f.View()
	// Apply may have run between reading the index and the clone: the
	// view's own index is the one it holds, and the one it is found by.
	for i := range vs.held {
		if vs.held[i].v.index == v.index {
			vs.held[i] = heldView{v: v, until: now.Add(vs.ttl)}
			return v
		}
	}
	if len(vs.held) >= vs.max {
		first := 0
		for i := range vs.held {
			if vs.held[i].until.Before(vs.held[first].until) {
				first = i
			}
		}
		vs.held = append(vs.held[:first], vs.held[first+1:]...)
	}
	vs.held = append(vs.held, heldView{v: v, until: now.Add(vs.ttl)})
	return v
}

// Get returns the view held at index, unless it has expired by now.
func (vs *Views) Get(index uint64, now time.Time) (*View, bool) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	vs.expireLocked(now)
	for _, h := range vs.held {
		if h.v.index == index {
			return h.v, true
		}
	}
	return nil, false
}

// Len is how many views are held at now (it drops the expired ones).
func (vs *Views) Len(now time.Time) int {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	vs.expireLocked(now)
	return len(vs.held)
}

func (vs *Views) expireLocked(now time.Time) {
	kept := vs.held[:0]
	for _, h := range vs.held {
		if now.Before(h.until) {
			kept = append(kept, h)
		}
	}
	clear(vs.held[len(kept):])
	vs.held = kept
}
