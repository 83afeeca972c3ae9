package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/watch"
)

// HeaderLastEventID is the header an EventSource sends when it reconnects:
// the id of the last event it received, a feed position.
const HeaderLastEventID = "Last-Event-ID"

// DefaultWatchProgress is how often a watch stream sends a progress event
// (the node's applied index) when Options.WatchProgress is zero.
const DefaultWatchProgress = 5 * time.Second

// streamWriteTimeout bounds one write of a stream (a batch of events, a
// progress event): a client that takes longer to accept it is cut, after
// at most streamWriteTimeout + deadlineSlack (sseWriter.flush).
const (
	streamWriteTimeout = 30 * time.Second
	deadlineSlack      = time.Second
)

// Errors of the change feed.
var (
	// ErrFutureIndex: a watch or blocking query's index is beyond what
	// this node applied, after waiting up to REQUEST_TIMEOUT for it.
	ErrFutureIndex = errors.New("index beyond the applied index")
	// ErrHistoryCompacted: the changes after the index asked for are no
	// longer all kept; the answer carries the oldest index to resume from.
	ErrHistoryCompacted = fsm.ErrHistoryCompacted
)

// compacted is a 410's error with the oldest index a resume is served
// from, for the body's "index".
type compacted struct {
	err    error
	oldest uint64
}

func (e compacted) Error() string { return e.err.Error() }
func (e compacted) Unwrap() error { return e.err }

// watchFrom is where a watch resumes: after the Last-Event-ID header
// (what an EventSource sends on reconnect, so it wins over the URL's
// index), else after ?index=, else after everything applied now.
func (s *Service) watchFrom(r *http.Request, p params) (fsm.Pos, error) {
	if id := r.Header.Get(HeaderLastEventID); id != "" {
		pos, err := fsm.ParsePos(id)
		if err != nil {
			return pos, fmt.Errorf("%w: %s %q is not a feed position (N or N.S)", ErrBadRequest, HeaderLastEventID, id)
		}
		return pos, nil
	}
	if v, ok := p.get("index"); ok {
		pos, err := fsm.ParsePos(v)
		if err != nil {
			return pos, fmt.Errorf("%w: index %q is not a feed position (N or N.S)", ErrBadRequest, v)
		}
		return pos, nil
	}
	return fsm.Pos{Index: s.store.FSM().AppliedIndex(), Seq: fsm.EndSeq}, nil
}

// openWatch opens a watcher of q after from, waiting up to REQUEST_TIMEOUT
// for this node to apply from's index (a client resuming here from a node
// that was ahead), and maps the refusals to the error table.
func (s *Service) openWatch(r *http.Request, from fsm.Pos, q fsm.Filter) (*watch.Watcher, error) {
	f := s.store.FSM()
	if from.Index > f.AppliedIndex() {
		ctx, cancel := s.requestContext(r)
		err := f.WaitApplied(ctx, from.Index)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%w: index %d is beyond this node's applied index %d", ErrFutureIndex, from.Index, f.AppliedIndex())
		}
	}
	w, err := s.hub.Watch(from, q)
	switch {
	case errors.Is(err, fsm.ErrHistoryCompacted):
		oldest := f.History().Floor.Index
		return nil, compacted{err: fmt.Errorf("%w: the changes after %s are no longer kept on this node; read the current state and resume from its index (the oldest index a resume is served from is %d)", ErrHistoryCompacted, from, oldest), oldest: oldest}
	case errors.Is(err, fsm.ErrFuturePosition):
		return nil, fmt.Errorf("%w: %v", ErrFutureIndex, err)
	}
	return w, err
}

// handleWatch streams GET /watch/{prefix} as Server-Sent Events: one
// event per change (id: its position; event: put, delete or expire; data:
// eventJSON), a progress event every Options.WatchProgress, a final reset
// event if the watcher falls behind the history, and nothing more once
// the node stops. Everything before the stream starts (a bad prefix or
// position, a compacted history, too many watchers) is an ordinary JSON
// error.
func (s *Service) handleWatch(w http.ResponseWriter, r *http.Request, p params) error {
	prefix, err := s.pathPrefix(r, "/watch/")
	if err != nil {
		return err
	}
	from, err := s.watchFrom(r, p)
	if err != nil {
		return err
	}
	wt, err := s.openWatch(r, from, fsm.Filter{Prefix: prefix})
	if err != nil {
		return err
	}
	defer wt.Close()

	rc := http.NewResponseController(w)
	// The request is read; the server's ReadTimeout would otherwise end
	// the stream's context, and its WriteTimeout the stream itself. Each
	// write gets streamWriteTimeout instead.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	setIndexHeader(w, HeaderAppliedIndex, s.store.FSM().AppliedIndex())
	w.WriteHeader(http.StatusOK)

	st := sseWriter{w: w, rc: rc, frames: &s.frames}
	st.comment("raftkv watch " + strings.ReplaceAll(prefix, "\n", " ") + " after " + from.String())
	if !st.flush() {
		return nil
	}
	progress := s.opts.WatchProgress
	if progress <= 0 {
		progress = DefaultWatchProgress
	}
	// An idle stream gets a keep-alive comment half way to each progress
	// event.
	lastProgress := time.Now()
	for {
		evs, err := wt.Next(r.Context(), progress/2)
		switch {
		case errors.Is(err, fsm.ErrHistoryCompacted):
			oldest := s.store.FSM().History().Floor.Index
			st.reset(oldest)
			st.flush()
			return nil
		case err != nil: // the client left, or the node is stopping
			return nil
		case len(evs) == 0 && time.Since(lastProgress) < progress*9/10:
			st.comment("keep-alive")
		case len(evs) == 0:
			st.progress(wt.Pos())
			lastProgress = time.Now()
		default:
			for i := range evs {
				st.event(&evs[i])
			}
		}
		if !st.flush() {
			return nil
		}
	}
}

// eventJSON is an event's data: the key, the value (as in every JSON
// answer: "value", or "value_base64" when it is not UTF-8; none for a
// delete or expiry) and the indexes.
type eventJSON struct {
	Key string `json:"key"`
	jsonValue
	CreateIndex  uint64 `json:"create_index"`
	ModIndex     uint64 `json:"mod_index"`
	PrevModIndex uint64 `json:"prev_mod_index"`
}

// sseWriter writes Server-Sent Events into a buffer and sends it with
// flush, pushing the write deadline forward for each send.
type sseWriter struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	buf    bytes.Buffer
	enc    *json.Encoder
	frames *frameCache // nil: encode every event here
	// deadline is the write deadline last set.
	deadline time.Time
}

func (st *sseWriter) json(v any) {
	if st.enc == nil {
		st.enc = json.NewEncoder(&st.buf)
	}
	_ = st.enc.Encode(v) // ends with a newline: the data line's end
}

func (st *sseWriter) event(e *fsm.Event) {
	if st.frames != nil {
		st.buf.Write(st.frames.frame(e))
		return
	}
	st.buf.Write(appendEventFrame(st.buf.AvailableBuffer(), e))
}

// appendEventFrame appends an event's whole SSE frame: id, event type,
// data and the blank line that ends it.
func appendEventFrame(dst []byte, e *fsm.Event) []byte {
	dst = append(dst, "id: "...)
	dst = strconv.AppendUint(dst, e.Pos.Index, 10)
	if e.Pos.Seq != fsm.EndSeq {
		dst = append(dst, '.')
		dst = strconv.AppendUint(dst, uint64(e.Pos.Seq), 10)
	}
	dst = append(dst, "\nevent: "...)
	dst = append(dst, e.Type.String()...)
	dst = append(dst, "\ndata: "...)
	dst = appendEventJSON(dst, e)
	return append(dst, "\n\n"...)
}

// frameCache holds the encoded SSE frames of recent events, so that the
// many streams that send the same event (1,000 watchers of one prefix)
// encode it once: a stream looks its event up by position and encodes
// and stores it only on a miss. A position names one change for the life
// of the process (a committed log entry never changes, and a node's
// applied index only grows), and a hit must also match the whole event,
// so a stale slot is never sent. Memory: at most frameCacheSlots frames
// of at most frameCacheMaxBytes each (8 MiB), and the events' key and
// value strings, shared with the history; larger frames are encoded by
// each stream, whose write then costs more than the encoding. Nothing is
// held until a stream sends an event.
type frameCache struct {
	slots [frameCacheSlots]atomic.Pointer[cachedFrame]
}

const (
	frameCacheSlots    = 2048
	frameCacheMaxBytes = 4096
)

type cachedFrame struct {
	ev    fsm.Event
	frame []byte // immutable once stored
}

// frame is e's SSE frame; the slice must not be modified.
func (c *frameCache) frame(e *fsm.Event) []byte {
	slot := &c.slots[(e.Pos.Index*16+uint64(e.Pos.Seq))%frameCacheSlots]
	if f := slot.Load(); f != nil && f.ev == *e {
		return f.frame
	}
	b := appendEventFrame(nil, e)
	if len(b) <= frameCacheMaxBytes {
		slot.Store(&cachedFrame{ev: *e, frame: b})
	}
	return b
}

// appendEventJSON appends an event's data, the bytes encoding/json would
// write for eventJSON (without its newline), with the listing's string
// and value rules (listjson.go): no reflection, no allocation per event.
func appendEventJSON(dst []byte, e *fsm.Event) []byte {
	dst = append(dst, `{"key":`...)
	dst = appendJSONString(dst, e.Key)
	if e.Type == fsm.EventPut {
		dst = appendValueJSON(dst, e.Value)
	}
	dst = append(dst, `,"create_index":`...)
	dst = strconv.AppendUint(dst, e.CreateIndex, 10)
	dst = append(dst, `,"mod_index":`...)
	dst = strconv.AppendUint(dst, e.ModIndex, 10)
	dst = append(dst, `,"prev_mod_index":`...)
	dst = strconv.AppendUint(dst, e.PrevModIndex, 10)
	return append(dst, '}')
}

// progress says the watcher has everything up to pos (the applied index
// when it is idle); its id resumes there.
func (st *sseWriter) progress(pos fsm.Pos) {
	st.buf.WriteString("id: ")
	st.buf.WriteString(pos.String())
	st.buf.WriteString("\nevent: progress\ndata: ")
	st.json(struct {
		Index uint64 `json:"index"`
	}{pos.Index})
	st.buf.WriteByte('\n')
}

// reset is the last event of a watcher whose next changes the history no
// longer holds (it fell behind, or a restore replaced the data): no id, so an
// EventSource keeps the last position it had, and resuming from it is a
// 410 that says to read the state again.
func (st *sseWriter) reset(oldest uint64) {
	st.buf.WriteString("event: reset\ndata: ")
	st.json(errorBody{
		Error: "the history no longer holds this watcher's next changes (it fell behind, or a restore replaced the data); read the current state and resume from its index",
		Code:  "history_compacted", Index: &oldest,
	})
	st.buf.WriteByte('\n')
}

func (st *sseWriter) comment(text string) {
	st.buf.WriteString(": ")
	st.buf.WriteString(text)
	st.buf.WriteString("\n\n")
}

// flush sends what is buffered; false once the client is gone. The write
// deadline is pushed forward only when less than streamWriteTimeout of it
// is left, to streamWriteTimeout + deadlineSlack from now, so each write
// still has between the two, and a busy stream (one send per event per
// watcher) does not re-arm a timer on every send.
func (st *sseWriter) flush() bool {
	if now := time.Now(); st.deadline.Sub(now) < streamWriteTimeout {
		st.deadline = now.Add(streamWriteTimeout + deadlineSlack)
		_ = st.rc.SetWriteDeadline(st.deadline)
	}
	_, err := st.w.Write(st.buf.Bytes())
	st.buf.Reset()
	if err == nil {
		err = st.rc.Flush()
	}
	return err == nil
}

// CloseWatches ends every watch stream and blocking query (the first step
// of the stop order: they would otherwise hold the server's drain until
// their connections are cut) and refuses new ones with 503 shutting_down.
func (s *Service) CloseWatches() { s.hub.Close() }
