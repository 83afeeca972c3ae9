package fault

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/testwait"
)

// The watch checker (W): a watcher per node streams GET /watch/ (every
// key) from the start of the run; whenever its stream ends or stalls (a
// node killed, paused or cut off) it reconnects to the next node with
// Last-Event-ID. At the end each must hold exactly the reference feed (a
// final stream from index 0) up to where it got, in order, with nothing
// missing or repeated (W1, W2), and the reference must hold every
// acknowledged write at its index (W3).

// feedEvent is one change as a watch stream delivers it.
type feedEvent struct {
	Pos   fsm.Pos
	Type  string
	Key   string
	Value string
}

func (e feedEvent) String() string { return fmt.Sprintf("%s %s %s=%q", e.Pos, e.Type, e.Key, e.Value) }

// stallAfter: a stream with no line for this long (keep-alives come every
// 2.5 s) is given up and the watcher reconnects elsewhere.
const stallAfter = 8 * time.Second

type feedWatcher struct {
	c     *cluster
	start int // the node it tries first

	mu         sync.Mutex
	events     []feedEvent
	last       fsm.Pos // everything up to here was received (events and progress)
	problems   []string
	reconnects int

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func startWatchers(c *cluster) []*feedWatcher {
	var ws []*feedWatcher
	for i := range c.Nodes {
		ctx, cancel := context.WithCancel(context.Background())
		w := &feedWatcher{c: c, start: i, ctx: ctx, cancel: cancel, done: make(chan struct{}), last: fsm.Pos{Index: 0, Seq: fsm.EndSeq}}
		ws = append(ws, w)
		go w.run()
	}
	return ws
}

func (w *feedWatcher) stop() {
	w.cancel()
	<-w.done
}

func (w *feedWatcher) position() fsm.Pos {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// run connects, reads, and reconnects to the next node until stopped; a
// 410 or a reset event is a problem and ends it.
func (w *feedWatcher) run() {
	defer close(w.done)
	for attempt := 0; w.ctx.Err() == nil; attempt++ {
		n := w.c.Nodes[(w.start+attempt)%len(w.c.Nodes)]
		if attempt > 0 {
			w.mu.Lock()
			w.reconnects++
			w.mu.Unlock()
			select {
			case <-w.ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
		if fatal := w.stream(n.URL("/watch/")); fatal {
			return
		}
	}
}

// stream reads one connection; true means stop for good.
func (w *feedWatcher) stream(url string) bool {
	ctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Last-Event-ID", w.position().String())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusGone:
		w.fail("W2: %s answered 410 to a resume after %s: the history lost changes a watcher needed", url, w.position())
		return true
	default:
		return false // 503 while a node starts or stops: try the next
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	var id, typ, data string
	stall := time.NewTimer(stallAfter)
	defer stall.Stop()
	for {
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
			if !ok {
				return false
			}
		case <-stall.C:
			return false // a paused or cut-off node: go elsewhere
		}
		stall.Reset(stallAfter)
		switch {
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			typ = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		case line == "" && typ != "":
			if stop := w.deliver(url, id, typ, data); stop {
				return true
			}
			id, typ, data = "", "", ""
		}
	}
}

// deliver records one event; true means stop for good.
func (w *feedWatcher) deliver(url, id, typ, data string) bool {
	if typ == "reset" {
		w.fail("W2: %s reset the watcher after %s: %s", url, w.position(), data)
		return true
	}
	pos, err := fsm.ParsePos(id)
	if err != nil {
		w.fail("W1: %s sent %s with id %q", url, typ, id)
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.last.Less(pos) {
		if typ != "progress" || pos != w.last {
			w.problems = append(w.problems, fmt.Sprintf("W1: %s sent %s %s after %s: a repeat or out of order", url, typ, pos, w.last))
		}
		return false
	}
	w.last = pos
	if typ == "progress" {
		return false
	}
	var d struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	_ = json.Unmarshal([]byte(data), &d)
	w.events = append(w.events, feedEvent{Pos: pos, Type: typ, Key: d.Key, Value: d.Value})
	return false
}

func (w *feedWatcher) fail(format string, args ...any) {
	w.mu.Lock()
	w.problems = append(w.problems, fmt.Sprintf(format, args...))
	w.mu.Unlock()
}

// checkWatchers waits for every watcher to reach the cluster's applied
// index, stops them, reads the reference feed and compares.
func (r *run) checkWatchers(ws []*feedWatcher) []string {
	var target uint64
	for _, n := range r.c.Nodes {
		if st, err := n.Status(); err == nil {
			target = max(target, st.AppliedIndex)
		}
	}
	testwait.For(r.t, 20*time.Second, fmt.Sprintf("every watcher to reach index %d", target), func() error {
		for _, w := range ws {
			if p := w.position(); p.Index < target {
				w.mu.Lock()
				defer w.mu.Unlock()
				return fmt.Errorf("watcher %d at %s (problems %v)", w.start, p, w.problems)
			}
		}
		return nil
	})
	var problems []string
	for _, w := range ws {
		w.stop()
		problems = append(problems, w.problems...)
	}
	ref := &feedWatcher{c: r.c, start: 0, done: make(chan struct{}), last: fsm.Pos{Index: 0, Seq: fsm.EndSeq}}
	ref.ctx, ref.cancel = context.WithCancel(context.Background())
	go ref.run()
	testwait.For(r.t, 30*time.Second, fmt.Sprintf("the reference feed to reach index %d", target), func() error {
		if p := ref.position(); p.Index < target {
			return fmt.Errorf("at %s", p)
		}
		return nil
	})
	ref.stop()
	if p := ref.position(); p.Index < target || len(ref.problems) > 0 {
		return append(problems, fmt.Sprintf("W: the reference feed reached %s of %d: %v", p, target, ref.problems))
	}
	reconnects := 0
	for _, w := range ws {
		reconnects += w.reconnects
		if len(w.events) != len(ref.events) {
			problems = append(problems, fmt.Sprintf("W2: watcher %d got %d events, the reference %d", w.start, len(w.events), len(ref.events)))
		}
		for i := range min(len(w.events), len(ref.events)) {
			if w.events[i] != ref.events[i] {
				problems = append(problems, fmt.Sprintf("W2: watcher %d event %d is %v, the reference's %v", w.start, i, w.events[i], ref.events[i]))
				break
			}
		}
	}
	// W3: every acknowledged write is in the feed at its index.
	at := map[string]feedEvent{}
	for _, e := range ref.events {
		at[fmt.Sprintf("%d/%s", e.Pos.Index, e.Key)] = e
	}
	missing := 0
	for _, o := range r.h.snapshot() {
		if !o.isWrite() || o.Outcome != outcomeOK || o.CASFailed || o.Index == 0 || (o.Kind == opDel && !o.Present) {
			continue
		}
		// A write of one key, or a bank transaction's puts (when its
		// compares held), all at the transaction's index.
		type change struct{ key, want, value string }
		var changes []change
		switch {
		case o.Kind == opTxn && !o.Succeeded:
		case o.Kind == opTxn:
			for _, p := range o.Bank {
				changes = append(changes, change{p.Key, "put", p.Value})
			}
		case o.Kind == opDel:
			changes = append(changes, change{o.Key, "delete", ""})
		default:
			changes = append(changes, change{o.Key, "put", o.Value})
		}
		for _, c := range changes {
			e, ok := at[fmt.Sprintf("%d/%s", o.Index, c.key)]
			if !ok || e.Type != c.want || (c.want == "put" && c.value != "" && e.Value != c.value) {
				missing++
				if missing <= 5 {
					problems = append(problems, fmt.Sprintf("W3: acknowledged %s not in the feed as %s of %s (found %v)", opString(o), c.want, c.key, e))
				}
			}
		}
	}
	r.res.notes = append(r.res.notes, fmt.Sprintf("W checked %d watchers, %d events, %d reconnects", len(ws), len(ref.events), reconnects))
	return problems
}
