package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// EventType is the kind of a watch event.
type EventType string

// Event types. Put, Delete and Expire are changes to keys; Progress says
// the watch has every change up to Index (only with WithProgressEvents);
// Reset and Error are the last event of a watch.
const (
	EventPut      EventType = "put"
	EventDelete   EventType = "delete"
	EventExpire   EventType = "expire" // a key whose TTL or lease ran out
	EventProgress EventType = "progress"
	// EventReset: the watch fell behind the history the nodes keep (or
	// its start position is older than it, or a Restore replaced the
	// store and started a new history): changes were lost. Err
	// matches ErrHistoryCompacted and Index is the oldest index a watch
	// resumes from. Read the state again (List), then Watch from its
	// Index.
	EventReset EventType = "reset"
	// EventError: the watch cannot go on (a 4xx other than 410: bad
	// prefix or start position, unauthorized, forbidden; or no node
	// served it for watchMaxFailures tries in a row). Err says why.
	EventError EventType = "error"
)

// Event is one event of a watch.
type Event struct {
	Type EventType
	// ID is the event's position "N.S": the log index of the change
	// and its sequence within that entry (progress: "N"); WithStartIndex
	// resumes after it. Empty on reset and error.
	ID string
	// Index is N of the position (progress: the node's applied index;
	// reset: the oldest index kept).
	Index        uint64
	Key          string
	Value        []byte // a put's new value; nil otherwise
	CreateIndex  uint64 // the key's create_index
	ModIndex     uint64 // the index of this change
	PrevModIndex uint64 // the key's mod_index before it (0: a put created it)
	Err          error  // on EventReset (an *Error, errors.Is(Err, ErrHistoryCompacted)) and EventError
}

// WatchOption configures Watch.
type WatchOption func(*watchOptions)

type watchOptions struct {
	start    string
	progress bool
}

// WithStartIndex starts the watch strictly after position pos: "N" (after
// everything of log index N) or "N.S" (an Event's ID). Without it the
// watch starts after what the first node it reaches has applied, which
// on a node still catching up (just restarted or joined) can be far
// back; to start at "now", pass the Index of a List of the prefix (or
// of your last write).
func WithStartIndex(pos string) WatchOption {
	return func(o *watchOptions) { o.start = pos }
}

// WithProgressEvents delivers progress events (by default they only move
// the watch's resume position): every 5 s of quiet the node says the
// watch has every change up to Index.
func WithProgressEvents() WatchOption { return func(o *watchOptions) { o.progress = true } }

// Bounds of a watch.
const (
	// watchIdleTimeout: a stream that sends nothing for this long (nodes
	// send a keep-alive every 2.5 s) is dropped and resumed elsewhere:
	// its node is hung or cut off. (options.watchIdle; tests shorten it.)
	watchIdleTimeout = 15 * time.Second
	// watchMaxFailures: connects in a row that deliver nothing before the
	// watch gives up with EventError (with the backoff of at most the
	// retry maximum between them).
	watchMaxFailures = 1000
	// maxEventBytes bounds one event's data (a value of up to
	// MAX_VALUE_BYTES, escaped).
	maxEventBytes = 64 << 20
)

// Watch streams the changes to keys under prefix (GET /watch/{prefix};
// "" watches every key) in log order. When a stream fails or its node
// stops, the watch resumes on the next endpoint after the last position
// it received (Last-Event-ID), so it neither loses nor repeats a change.
// The channel is closed when ctx ends, after an EventReset (re-list,
// then Watch from the list's Index) and after an EventError. Read it
// until it is closed, or end ctx: a watch whose reader stops holds its
// stream (and the node cuts it after 30 s).
func (c *Client) Watch(ctx context.Context, prefix string, opts ...WatchOption) <-chan Event {
	var o watchOptions
	for _, opt := range opts {
		opt(&o)
	}
	ch := make(chan Event, 16)
	go func() {
		defer close(ch)
		w := &watcher{c: c, ctx: ctx, prefix: prefix, opts: o, ch: ch, pos: o.start}
		w.run()
	}()
	return ch
}

// watcher is one Watch's state.
type watcher struct {
	c      *Client
	ctx    context.Context
	prefix string
	opts   watchOptions
	ch     chan<- Event
	// pos is the position to resume after ("" until the first stream
	// said where it started); last is the last change delivered.
	pos  string
	last position
}

// position is a feed position N.S; a bare N is N.(max).
type position struct{ index, seq uint64 }

const endSeq = ^uint64(0)

func parsePosition(s string) (position, bool) {
	n, sq, dotted := strings.Cut(s, ".")
	i, err := strconv.ParseUint(n, 10, 64)
	if err != nil {
		return position{}, false
	}
	if !dotted {
		return position{i, endSeq}, true
	}
	q, err := strconv.ParseUint(sq, 10, 64)
	if err != nil {
		return position{}, false
	}
	return position{i, q}, true
}

func (p position) after(q position) bool {
	return p.index > q.index || p.index == q.index && p.seq > q.seq
}

// emit delivers ev; false once ctx ended.
func (w *watcher) emit(ev Event) bool {
	select {
	case w.ch <- ev:
		return true
	case <-w.ctx.Done():
		return false
	}
}

func (w *watcher) run() {
	if w.pos != "" {
		p, ok := parsePosition(w.pos)
		if !ok {
			w.emit(Event{Type: EventError, Err: fmt.Errorf("raftkv client: start position %q is not N or N.S", w.pos)})
			return
		}
		w.last = p
	}
	cursor := w.c.rr.Add(1)
	var lastErr error
	for failures := 0; failures < watchMaxFailures; {
		if w.ctx.Err() != nil {
			return
		}
		ep := w.c.choose(&cursor)
		delivered, done, err := w.stream(ep)
		if done || w.ctx.Err() != nil {
			return
		}
		if delivered {
			failures = 0
		} else {
			failures++
		}
		lastErr = err
		var e *Error
		if !errors.As(err, &e) {
			// A connection error or a stream that ended: try the next
			// node, at once if it is up.
			w.c.eps[ep].markDown()
			if next := w.c.eps[int(cursor%uint64(len(w.c.eps)))]; delivered || (len(w.c.eps) > 1 && !next.until().After(time.Now())) {
				continue
			}
		}
		if !sleepCtx(w.ctx, w.c.backoff(failures)) {
			return
		}
	}
	w.emit(Event{Type: EventError, Err: fmt.Errorf("raftkv client: watch of %q: no node served it in %d tries: %w", w.prefix, watchMaxFailures, lastErr)})
}

// stream runs one stream from endpoint ep. delivered: it received at
// least one event or progress; done: the watch ends (a reset or error
// event was sent, or ctx ended); err: why the stream stopped.
func (w *watcher) stream(ep int) (delivered, done bool, err error) {
	cctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, w.c.eps[ep].base+"/watch/"+escapePath(w.prefix), nil)
	if err != nil {
		w.emit(Event{Type: EventError, Err: fmt.Errorf("raftkv client: %w", err)})
		return false, true, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if w.pos != "" {
		req.Header.Set("Last-Event-ID", w.pos)
	}
	if w.c.opts.token != "" {
		req.Header.Set("Authorization", "Bearer "+w.c.opts.token)
	}
	// The idle timer also bounds the wait for the answer's headers (a
	// resume on a lagging node waits up to the server's REQUEST_TIMEOUT).
	idle := time.AfterFunc(max(w.c.opts.watchIdle, w.c.opts.attemptTimeout), cancel)
	defer idle.Stop()
	resp, err := w.c.hc.Do(req)
	if err != nil {
		return false, false, fmt.Errorf("%s: %w", w.c.eps[ep].base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		e := errorFrom(resp, body, w.c.eps[ep].base)
		switch {
		case e.Code == "history_compacted":
			w.emit(Event{Type: EventReset, Index: e.Index, Err: e})
			return false, true, e
		case e.Status == http.StatusServiceUnavailable, e.Status == http.StatusBadGateway, e.Status >= 500,
			e.Code == "future_index": // a lagging node that did not catch up in time
			return false, false, e
		}
		w.emit(Event{Type: EventError, Err: e})
		return false, true, e
	}
	w.c.eps[ep].markUp()
	if w.pos == "" {
		// Until the first comment says where the stream starts.
		w.pos = strconv.FormatUint(headerUint(resp.Header, "X-Raft-Applied-Index"), 10)
	}
	p := sseParser{r: bufio.NewReaderSize(resp.Body, 64<<10)}
	first := true
	for {
		ev, err := p.next(func() { idle.Reset(w.c.opts.watchIdle) })
		if err != nil {
			if w.ctx.Err() != nil {
				return delivered, true, w.ctx.Err()
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return delivered, false, fmt.Errorf("%s: watch stream ended: %w", w.c.eps[ep].base, err)
		}
		if ev.comment != "" {
			if first {
				w.startComment(ev.comment)
			}
			first = false
			continue
		}
		first = false
		ok, end := w.handle(ev, w.c.eps[ep].base)
		delivered = delivered || ok
		if end {
			return delivered, true, nil
		}
	}
}

// startComment reads where the stream starts from its first comment,
// ": raftkv watch <prefix> after <pos>", when the watch had no position.
func (w *watcher) startComment(text string) {
	i := strings.LastIndex(text, " after ")
	if !strings.HasPrefix(text, "raftkv watch ") || i < 0 {
		return
	}
	pos := text[i+len(" after "):]
	if p, ok := parsePosition(pos); ok && w.last == (position{}) {
		w.pos, w.last = pos, p
	}
}

// handle acts on one dispatched event: ok when it moved the watch
// forward, end when the watch is over.
func (w *watcher) handle(ev sseEvent, endpoint string) (ok, end bool) {
	switch EventType(ev.typ) {
	case EventPut, EventDelete, EventExpire:
		p, valid := parsePosition(ev.id)
		if !valid {
			return false, false
		}
		if !p.after(w.last) {
			// Already delivered (a resume never repeats; belt and braces).
			return false, false
		}
		var d struct {
			Key string `json:"key"`
			wireValue
			CreateIndex  uint64 `json:"create_index"`
			ModIndex     uint64 `json:"mod_index"`
			PrevModIndex uint64 `json:"prev_mod_index"`
		}
		if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
			w.emit(Event{Type: EventError, Err: fmt.Errorf("raftkv client: watch event %s from %s: %w", ev.id, endpoint, err)})
			return false, true
		}
		v, err := d.bytes()
		if err != nil {
			w.emit(Event{Type: EventError, Err: err})
			return false, true
		}
		if !w.emit(Event{Type: EventType(ev.typ), ID: ev.id, Index: p.index, Key: d.Key, Value: v,
			CreateIndex: d.CreateIndex, ModIndex: d.ModIndex, PrevModIndex: d.PrevModIndex}) {
			return false, true
		}
		w.pos, w.last = ev.id, p
		return true, false
	case EventProgress:
		p, valid := parsePosition(ev.id)
		if !valid {
			return false, false
		}
		if p.after(w.last) {
			w.pos, w.last = ev.id, p
		}
		if w.opts.progress && !w.emit(Event{Type: EventProgress, ID: ev.id, Index: p.index}) {
			return false, true
		}
		return true, false
	case EventReset:
		var b struct {
			Error string `json:"error"`
			Code  string `json:"code"`
			Index uint64 `json:"index"`
		}
		_ = json.Unmarshal([]byte(ev.data), &b)
		if b.Code == "" {
			b.Code = "history_compacted"
		}
		e := &Error{Status: http.StatusGone, Code: b.Code, Message: b.Error, Index: b.Index, Endpoint: endpoint}
		w.emit(Event{Type: EventReset, Index: b.Index, Err: e})
		return false, true
	}
	// An event type this client does not know: skip it, keeping its
	// position when it has one.
	if p, valid := parsePosition(ev.id); valid && p.after(w.last) {
		w.pos, w.last = ev.id, p
	}
	return false, false
}

// sseEvent is one dispatched Server-Sent Event, or a comment.
type sseEvent struct {
	id, typ, data string
	comment       string // a comment line's text (then the rest is empty)
}

// sseParser reads Server-Sent Events as the WHATWG HTML standard's
// "Interpreting an event stream" says: lines end with CRLF, LF or CR; a
// line starting with ':' is a comment; "field: value" (one space after
// the colon dropped; a line without colon is a field with an empty
// value); data lines accumulate, joined by "\n"; an empty line
// dispatches; an event without data is not dispatched (but its id
// counts); unknown fields are ignored. The id persists across events as
// the stream's last event id.
type sseParser struct {
	r       *bufio.Reader
	id      string
	typ     string
	data    strings.Builder
	hasData bool
	crLast  bool // the last line ended with a CR: skip a following LF
	buf     []byte
}

// next returns the next event or comment; seen is called for every line
// (the stream is alive).
func (p *sseParser) next(seen func()) (sseEvent, error) {
	for {
		line, err := p.line()
		if err != nil {
			return sseEvent{}, err
		}
		seen()
		switch {
		case line == "":
			if !p.hasData {
				p.typ = ""
				continue
			}
			ev := sseEvent{id: p.id, typ: p.typ, data: p.data.String()}
			if ev.typ == "" {
				ev.typ = "message"
			}
			p.typ, p.hasData = "", false
			p.data.Reset()
			return ev, nil
		case line[0] == ':':
			return sseEvent{comment: strings.TrimPrefix(line[1:], " ")}, nil
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			p.typ = value
		case "data":
			if p.hasData {
				p.data.WriteByte('\n')
			}
			p.data.WriteString(value)
			p.hasData = true
			if p.data.Len() > maxEventBytes {
				return sseEvent{}, fmt.Errorf("an event's data is over %d bytes", maxEventBytes)
			}
		case "id":
			if !strings.ContainsRune(value, 0) {
				p.id = value
			}
		}
	}
}

// line reads one line without its end (CRLF, LF or CR). A last line
// without its end is not a line: the stream broke in it.
func (p *sseParser) line() (string, error) {
	p.buf = p.buf[:0]
	for {
		b, err := p.r.ReadByte()
		if err != nil {
			return "", err
		}
		if p.crLast {
			p.crLast = false
			if b == '\n' {
				continue // the LF of a CRLF
			}
		}
		switch b {
		case '\n':
			return string(p.buf), nil
		case '\r':
			p.crLast = true
			return string(p.buf), nil
		}
		p.buf = append(p.buf, b)
		if len(p.buf) > maxEventBytes {
			return "", fmt.Errorf("a line is over %d bytes", maxEventBytes)
		}
	}
}
