// Package watch delivers the change feed to its readers: it bounds how many
// watchers a node serves, hands each its events in log order from the
// FSM's history (fsm.EventsAfter) as Apply adds them, and ends them all on
// shutdown. It keeps no events of its own: every watcher is a position in
// the one shared, bounded history, so a slow watcher costs no memory; one
// that falls so far behind that the history no longer holds its next
// events is told so (fsm.ErrHistoryCompacted) and must start again.
package watch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
)

// Source is where events come from (*fsm.FSM).
type Source interface {
	EventsAfter(p fsm.Pos, q fsm.Filter, dst []fsm.Event, max int) ([]fsm.Event, fsm.Pos, error)
	Changed() <-chan struct{}
}

// Limits bound a node's watchers.
type Limits struct {
	// MaxWatchers is how many watchers (watch streams and blocking
	// queries) a node serves at once (WATCH_MAX_WATCHERS;
	// DefaultMaxWatchers).
	MaxWatchers int
	// Buffer is the most events a watcher takes from the history at a
	// time, its only memory of its own (WATCH_BUFFER; DefaultBuffer);
	// one entry's changes are taken together up to fsm.MaxEventsBatch.
	Buffer int
}

// Defaults for Limits.
const (
	DefaultMaxWatchers = 4096
	DefaultBuffer      = 256
)

// Errors.
var (
	// ErrTooManyWatchers: the node already serves MaxWatchers watchers.
	ErrTooManyWatchers = errors.New("too many watchers on this node")
	// ErrClosed: the hub was closed (the node is stopping).
	ErrClosed = errors.New("watch closed: the node is stopping")
)

// Hub hands out watchers and ends them on Close.
type Hub struct {
	src  Source
	lim  Limits
	mu   sync.Mutex
	n    int // watchers open
	done chan struct{}
	shut bool
}

// New returns a hub over src. Limits below 1 take the defaults.
func New(src Source, lim Limits) *Hub {
	if lim.MaxWatchers < 1 {
		lim.MaxWatchers = DefaultMaxWatchers
	}
	if lim.Buffer < 1 {
		lim.Buffer = DefaultBuffer
	}
	return &Hub{src: src, lim: lim, done: make(chan struct{})}
}

// Watchers is the number of watchers open.
func (h *Hub) Watchers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// Close ends every watcher: their Next returns ErrClosed, and Watch
// refuses new ones. It does not wait for their readers.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.shut {
		h.shut = true
		close(h.done)
	}
}

// Watch opens a watcher of the changes q selects, strictly after from. It
// checks from at once: fsm.ErrHistoryCompacted or fsm.ErrFuturePosition
// (from the source), ErrTooManyWatchers, ErrClosed. The caller must Close
// the watcher.
func (h *Hub) Watch(from fsm.Pos, q fsm.Filter) (*Watcher, error) {
	h.mu.Lock()
	switch {
	case h.shut:
		h.mu.Unlock()
		return nil, ErrClosed
	case h.n >= h.lim.MaxWatchers:
		h.mu.Unlock()
		return nil, fmt.Errorf("%w (WATCH_MAX_WATCHERS=%d)", ErrTooManyWatchers, h.lim.MaxWatchers)
	}
	h.n++
	h.mu.Unlock()
	w := &Watcher{h: h, pos: from, q: q}
	// Read the first batch now, so a bad position is refused before a
	// stream starts.
	if err := w.fill(); err != nil {
		w.Close()
		return nil, err
	}
	w.unread = len(w.buf) > 0
	return w, nil
}

// Watcher is one reader's position in the feed. It is used by one
// goroutine.
type Watcher struct {
	h      *Hub
	pos    fsm.Pos // everything up to pos is read
	q      fsm.Filter
	buf    []fsm.Event
	unread bool // buf holds the batch Watch read, not yet returned
	closed bool
	timer  *time.Timer // bounds Next's waits (next)
}

// Pos is the position everything delivered so far ends at: resuming
// after it misses nothing and repeats nothing.
func (w *Watcher) Pos() fsm.Pos { return w.pos }

// fill reads the next batch after pos into buf.
func (w *Watcher) fill() error {
	var err error
	w.buf, w.pos, err = w.h.src.EventsAfter(w.pos, w.q, w.buf[:0], w.h.lim.Buffer)
	return err
}

// Next returns the next events in log order (at most Buffer, but never
// part of one entry's changes unless it has more than fsm.MaxEventsBatch),
// waiting up to wait for some. It returns an empty batch when wait passed
// with none (Pos is then the applied index as of the end of the wait). The batch is
// valid until the next call.
//
// Errors: fsm.ErrHistoryCompacted when the watcher fell so far behind
// that the history dropped events it had not read (it must start
// again); ErrClosed when the hub closed; ctx's error.
func (w *Watcher) Next(ctx context.Context, wait time.Duration) ([]fsm.Event, error) {
	if w.unread {
		w.unread = false
		return w.buf, nil
	}
	armed := false
	evs, err := w.next(ctx, wait, &armed)
	if armed {
		w.timer.Stop()
	}
	return evs, err
}

// next is Next's loop; *armed is set once it started the watcher's timer
// (one per watcher, reset for each wait rather than a new one each time a
// stream waits for its next event; since Go 1.23 no stale tick survives a
// Stop or Reset).
func (w *Watcher) next(ctx context.Context, wait time.Duration, armed *bool) ([]fsm.Event, error) {
	for {
		select {
		case <-w.h.done:
			return nil, ErrClosed
		default:
		}
		changed := w.h.src.Changed()
		if err := w.fill(); err != nil {
			return nil, err
		}
		if len(w.buf) > 0 {
			return w.buf, nil
		}
		if !*armed {
			if w.timer == nil {
				w.timer = time.NewTimer(wait)
			} else {
				w.timer.Reset(wait)
			}
			*armed = true
		}
		select {
		case <-changed:
		case <-w.timer.C:
			// Entries that make no events (keepalives, checkpoints,
			// no-ops) close no channel: read once more so Pos is the
			// applied index now, not as of the last wake-up (the
			// progress event reports it).
			if err := w.fill(); err != nil {
				return nil, err
			}
			if len(w.buf) > 0 {
				return w.buf, nil
			}
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-w.h.done:
			return nil, ErrClosed
		}
	}
}

// Close releases the watcher's place in the hub.
func (w *Watcher) Close() {
	if w.closed {
		return
	}
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
	}
	w.h.mu.Lock()
	w.h.n--
	w.h.mu.Unlock()
}
