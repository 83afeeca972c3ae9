package fsm

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// ---- helpers shared by the package's tests and benchmarks ----

func cmdLog(index uint64, c Command) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: c.Encode(nil)}
}

func setLog(index uint64, key, value string) *raft.Log {
	return cmdLog(index, Command{Op: OpSet, Key: key, Value: value})
}

func delLog(index uint64, key string) *raft.Log {
	return cmdLog(index, Command{Op: OpDelete, Key: key})
}

func regLog(index uint64, id, addr string) *raft.Log {
	return cmdLog(index, Command{Op: OpRegisterNode, NodeID: id, HTTPAddr: addr})
}

func forgetLog(index uint64, id string) *raft.Log {
	return cmdLog(index, Command{Op: OpForgetNode, NodeID: id})
}

func rawLog(index uint64, data []byte) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

func confLog(index uint64) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogConfiguration, Data: []byte("not a command")}
}

// state is everything observable about an FSM, for whole-state comparison.
type state struct {
	Entries []Entry
	Nodes   map[string]string
	Promote []string
	Stats   Stats
}

func stateOf(f *FSM) state {
	f.mu.RLock()
	var es []Entry
	f.tree.Ascend(func(it item) bool { es = append(es, it.entry()); return true })
	f.mu.RUnlock()
	return state{Entries: es, Nodes: f.Nodes(), Promote: f.PendingPromotions(), Stats: f.Stats()}
}

func requireState(t testing.TB, got, want state) {
	t.Helper()
	if !slices.Equal(got.Entries, want.Entries) {
		t.Errorf("entries =\n  %+v\nwant\n  %+v", got.Entries, want.Entries)
	}
	if !maps.Equal(got.Nodes, want.Nodes) {
		t.Errorf("nodes = %v, want %v", got.Nodes, want.Nodes)
	}
	if !slices.Equal(got.Promote, want.Promote) {
		t.Errorf("promotion marks = %q, want %q", got.Promote, want.Promote)
	}
	if got.Stats != want.Stats {
		t.Errorf("stats = %+v, want %+v", got.Stats, want.Stats)
	}
}

// applyAll applies logs in one batch and checks every Result's index.
func applyAll(t testing.TB, f *FSM, logs ...*raft.Log) []interface{} {
	t.Helper()
	out := f.ApplyBatch(logs)
	if len(out) != len(logs) {
		t.Fatalf("ApplyBatch returned %d results for %d logs", len(out), len(logs))
	}
	for i, r := range out {
		if res, ok := r.(*Result); ok && !res.Replayed && res.Index != logs[i].Index {
			t.Fatalf("result %d Index = %d, want %d", i, res.Index, logs[i].Index)
		}
	}
	return out
}

// ---- Apply / ApplyBatch ----

func TestApply(t *testing.T) {
	type step struct {
		log     *raft.Log
		wantErr error // expected Result.Err for commands
		noCmd   bool  // not a command: the result must be nil
	}
	malformed := []byte{CommandVersion, byte(OpSet), tagKey, 9, 'k'}
	tests := []struct {
		name      string
		steps     []step
		wantEntry []Entry
		wantNodes map[string]string
	}{
		{
			name:      "set creates",
			steps:     []step{{log: setLog(5, "k", "v")}},
			wantEntry: []Entry{{Key: "k", Value: "v", CreateIndex: 5, ModIndex: 5}},
		},
		{
			name:      "set empty value",
			steps:     []step{{log: setLog(1, "k", "")}},
			wantEntry: []Entry{{Key: "k", Value: "", CreateIndex: 1, ModIndex: 1}},
		},
		{
			name: "overwrite keeps create index and bumps mod index",
			steps: []step{
				{log: setLog(3, "k", "v1")},
				{log: setLog(4, "other", "x")},
				{log: setLog(7, "k", "value2")},
			},
			wantEntry: []Entry{
				{Key: "k", Value: "value2", CreateIndex: 3, ModIndex: 7},
				{Key: "other", Value: "x", CreateIndex: 4, ModIndex: 4},
			},
		},
		{
			name: "overwrite with empty value",
			steps: []step{
				{log: setLog(1, "k", "long value")},
				{log: setLog(2, "k", "")},
			},
			wantEntry: []Entry{{Key: "k", Value: "", CreateIndex: 1, ModIndex: 2}},
		},
		{
			name: "delete removes",
			steps: []step{
				{log: setLog(1, "a", "1")},
				{log: setLog(2, "b", "22")},
				{log: delLog(3, "a")},
			},
			wantEntry: []Entry{{Key: "b", Value: "22", CreateIndex: 2, ModIndex: 2}},
		},
		{
			name: "delete absent key",
			steps: []step{
				{log: setLog(1, "a", "1")},
				{log: delLog(2, "zz"), wantErr: ErrKeyNotFound},
				{log: delLog(3, "a")},
				{log: delLog(4, "a"), wantErr: ErrKeyNotFound},
			},
		},
		{
			name: "recreate after delete gets a new create index",
			steps: []step{
				{log: setLog(1, "a", "1")},
				{log: delLog(2, "a")},
				{log: setLog(3, "a", "2")},
			},
			wantEntry: []Entry{{Key: "a", Value: "2", CreateIndex: 3, ModIndex: 3}},
		},
		{
			name: "register and forget nodes",
			steps: []step{
				{log: regLog(1, "n1", "10.0.0.1:8000")},
				{log: regLog(2, "n2", "10.0.0.2:8000")},
				{log: regLog(3, "n1", "10.0.0.9:8000")},
				{log: regLog(4, "n3", "10.0.0.3:8000")},
				{log: forgetLog(5, "n2")},
				{log: forgetLog(6, "absent")},
			},
			wantNodes: map[string]string{"n1": "10.0.0.9:8000", "n3": "10.0.0.3:8000"},
		},
		{
			name: "malformed command changes nothing",
			steps: []step{
				{log: setLog(1, "a", "1")},
				{log: rawLog(2, malformed), wantErr: ErrMalformedCommand},
				{log: rawLog(3, nil), wantErr: ErrMalformedCommand},
				{log: cmdLog(4, Command{Op: Op(99), Key: "a"}), wantErr: ErrMalformedCommand},
				{log: cmdLog(5, Command{Op: OpSet, Value: "no key"}), wantErr: ErrMalformedCommand},
			},
			wantEntry: []Entry{{Key: "a", Value: "1", CreateIndex: 1, ModIndex: 1}},
		},
		{
			name: "configuration and other entries change nothing",
			steps: []step{
				{log: setLog(1, "a", "1")},
				{log: confLog(2), noCmd: true},
				{log: &raft.Log{Index: 3, Type: raft.LogNoop}, noCmd: true},
			},
			wantEntry: []Entry{{Key: "a", Value: "1", CreateIndex: 1, ModIndex: 1}},
		},
	}
	for _, tt := range tests {
		for _, batched := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/batched=%v", tt.name, batched), func(t *testing.T) {
				f := New()
				logs := make([]*raft.Log, len(tt.steps))
				for i, s := range tt.steps {
					logs[i] = s.log
				}
				var results []interface{}
				if batched {
					results = applyAll(t, f, logs...)
				} else {
					for _, l := range logs {
						results = append(results, f.Apply(l))
					}
				}
				for i, s := range tt.steps {
					if s.noCmd {
						if results[i] != nil {
							t.Errorf("step %d: result = %#v, want nil", i, results[i])
						}
						continue
					}
					res, ok := results[i].(*Result)
					if !ok {
						t.Fatalf("step %d: result is %T, want *Result", i, results[i])
					}
					if res.Index != s.log.Index {
						t.Errorf("step %d: Result.Index = %d, want %d", i, res.Index, s.log.Index)
					}
					if s.wantErr == nil && res.Err != nil || s.wantErr != nil && !errors.Is(res.Err, s.wantErr) {
						t.Errorf("step %d: Result.Err = %v, want %v", i, res.Err, s.wantErr)
					}
				}
				var bytes int64
				for _, e := range tt.wantEntry {
					bytes += int64(len(e.Key) + len(e.Value))
				}
				want := state{
					Entries: tt.wantEntry,
					Nodes:   tt.wantNodes,
					Stats: Stats{
						Keys:         len(tt.wantEntry),
						Bytes:        bytes,
						AppliedIndex: tt.steps[len(tt.steps)-1].log.Index,
					},
				}
				if want.Nodes == nil {
					want.Nodes = map[string]string{}
				}
				requireState(t, stateOf(f), want)
				if got := f.AppliedIndex(); got != want.Stats.AppliedIndex {
					t.Errorf("AppliedIndex = %d, want %d", got, want.Stats.AppliedIndex)
				}
				for _, e := range tt.wantEntry {
					if got, ok := f.Get(e.Key); !ok || got != e {
						t.Errorf("Get(%q) = %+v, %v; want %+v", e.Key, got, ok, e)
					}
				}
				for id, addr := range want.Nodes {
					if got, ok := f.NodeHTTPAddr(id); !ok || got != addr {
						t.Errorf("NodeHTTPAddr(%q) = %q, %v; want %q", id, got, ok, addr)
					}
				}
			})
		}
	}
}

func TestApplyNoOpEntriesLeaveStateAlone(t *testing.T) {
	tests := []struct {
		name string
		log  *raft.Log
	}{
		{"malformed", rawLog(11, []byte{0xff})},
		{"unknown op", cmdLog(11, Command{Op: Op(42), Key: "a"})},
		{"delete absent", delLog(11, "absent")},
		{"configuration", confLog(11)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New()
			applyAll(t, f, setLog(9, "a", "1"), regLog(10, "n1", "h:1"))
			before := stateOf(f)
			f.Apply(tt.log)
			want := before
			want.Stats.AppliedIndex = 11
			requireState(t, stateOf(f), want)
		})
	}
}

func TestGetAbsent(t *testing.T) {
	f := New()
	applyAll(t, f, setLog(1, "b", "1"))
	for _, k := range []string{"", "a", "bb", "c"} {
		if e, ok := f.Get(k); ok {
			t.Errorf("Get(%q) = %+v, want absent", k, e)
		}
	}
	if _, ok := f.NodeHTTPAddr("n1"); ok {
		t.Error("NodeHTTPAddr(n1) found on an empty node table")
	}
}

func TestApplyBatchEmpty(t *testing.T) {
	f := New()
	applyAll(t, f, setLog(4, "a", "1"))
	if out := f.ApplyBatch(nil); len(out) != 0 {
		t.Fatalf("ApplyBatch(nil) = %v", out)
	}
	if got := f.AppliedIndex(); got != 4 {
		t.Fatalf("AppliedIndex after empty batch = %d, want 4", got)
	}
}

// The FSM must not keep a reference into the log's buffer: raft may reuse it.
func TestApplyCopiesLogData(t *testing.T) {
	f := New()
	l := setLog(1, "key", "value")
	f.Apply(l)
	for i := range l.Data {
		l.Data[i] = 'X'
	}
	if e, ok := f.Get("key"); !ok || e.Value != "value" {
		t.Fatalf("Get after scribbling on log data = %+v, %v", e, ok)
	}
}

// TestStatsAgainstModel drives a seeded random mix of set, overwrite and
// delete through the FSM and checks every observable against a plain map.
func TestStatsAgainstModel(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0))
			f := New()
			model := map[string]Entry{}
			const steps = 3000
			for i := uint64(1); i <= steps; i++ {
				key := fmt.Sprintf("k%03d", rng.IntN(200))
				var l *raft.Log
				if rng.IntN(3) == 0 {
					l = delLog(i, key)
					_, had := model[key]
					res := f.Apply(l).(*Result)
					if had != (res.Err == nil) || !had && !errors.Is(res.Err, ErrKeyNotFound) {
						t.Fatalf("step %d delete %q: had=%v err=%v", i, key, had, res.Err)
					}
					delete(model, key)
				} else {
					val := string(make([]byte, rng.IntN(50)))
					l = setLog(i, key, val)
					e := Entry{Key: key, Value: val, CreateIndex: i, ModIndex: i}
					if old, ok := model[key]; ok {
						e.CreateIndex = old.CreateIndex
					}
					model[key] = e
					if res := f.Apply(l).(*Result); res.Err != nil {
						t.Fatalf("step %d set: %v", i, res.Err)
					}
				}
				var bytes int64
				for k, e := range model {
					bytes += int64(len(k) + len(e.Value))
				}
				want := Stats{Keys: len(model), Bytes: bytes, AppliedIndex: i}
				if got := f.Stats(); got != want {
					t.Fatalf("step %d: Stats = %+v, want %+v", i, got, want)
				}
			}
			for k, want := range model {
				if got, ok := f.Get(k); !ok || got != want {
					t.Fatalf("Get(%q) = %+v, %v; want %+v", k, got, ok, want)
				}
			}
		})
	}
}

// ---- WaitApplied ----

// waitForWaiters blocks until n readers are registered, bounded by a deadline.
func waitForWaiters(t *testing.T, f *FSM, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		got := len(f.waiters)
		f.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters registered, want %d", got, n)
		}
		runtime.Gosched()
	}
}

func waiterIndexes(f *FSM) []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []uint64
	for _, w := range f.waiters {
		out = append(out, w.index)
	}
	slices.Sort(out)
	return out
}

// startWaits starts one WaitApplied per index; each reports on its own channel.
func startWaits(ctx context.Context, f *FSM, indexes []uint64) []chan error {
	chs := make([]chan error, len(indexes))
	for i, idx := range indexes {
		chs[i] = make(chan error, 1)
		go func() { chs[i] <- f.WaitApplied(ctx, idx) }()
	}
	return chs
}

func recvWithin(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: WaitApplied did not return", what)
		return nil
	}
}

func TestWaitAppliedAlreadyApplied(t *testing.T) {
	tests := []struct {
		applied, wait uint64
	}{
		{0, 0}, {5, 0}, {5, 3}, {5, 5},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("applied=%d/wait=%d", tt.applied, tt.wait), func(t *testing.T) {
			f := New()
			if tt.applied > 0 {
				applyAll(t, f, setLog(tt.applied, "k", "v"))
			}
			// A cancelled context proves the call does not block: it would
			// fail if WaitApplied reached its select.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := f.WaitApplied(ctx, tt.wait); err != nil {
				t.Fatalf("WaitApplied = %v, want nil", err)
			}
			if n := len(waiterIndexes(f)); n != 0 {
				t.Fatalf("%d waiters left", n)
			}
		})
	}
}

func TestWaitAppliedReleasedByApply(t *testing.T) {
	tests := []struct {
		name     string
		waits    []uint64
		apply    *raft.Log
		released []bool // per wait
	}{
		{"some", []uint64{3, 5, 8}, setLog(4, "k", "v"), []bool{true, false, false}},
		{"exact", []uint64{4, 4, 5}, setLog(4, "k", "v"), []bool{true, true, false}},
		{"none", []uint64{10}, setLog(9, "k", "v"), []bool{false}},
		{"all", []uint64{2, 3, 3}, setLog(3, "k", "v"), []bool{true, true, true}},
		{"by configuration entry", []uint64{2, 3}, confLog(2), []bool{true, false}},
		{"by malformed entry", []uint64{2, 3}, rawLog(2, []byte{1}), []bool{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New()
			applyAll(t, f, setLog(1, "a", "1"))
			chs := startWaits(context.Background(), f, tt.waits)
			waitForWaiters(t, f, len(tt.waits))

			applyAll(t, f, tt.apply)

			// Release happens inside ApplyBatch, so the set of waiters
			// left is already final here.
			var wantLeft []uint64
			for i, rel := range tt.released {
				if rel {
					if err := recvWithin(t, chs[i], fmt.Sprint("wait ", tt.waits[i])); err != nil {
						t.Errorf("WaitApplied(%d) = %v", tt.waits[i], err)
					}
				} else {
					wantLeft = append(wantLeft, tt.waits[i])
				}
			}
			slices.Sort(wantLeft)
			if got := waiterIndexes(f); !slices.Equal(got, wantLeft) {
				t.Fatalf("waiters left = %v, want %v", got, wantLeft)
			}
			for i, rel := range tt.released {
				if rel {
					continue
				}
				select {
				case err := <-chs[i]:
					t.Fatalf("WaitApplied(%d) returned early: %v", tt.waits[i], err)
				default:
				}
			}

			// Catching up releases everyone.
			applyAll(t, f, setLog(100, "k", "v"))
			for i, rel := range tt.released {
				if !rel {
					if err := recvWithin(t, chs[i], fmt.Sprint("wait ", tt.waits[i])); err != nil {
						t.Errorf("WaitApplied(%d) = %v", tt.waits[i], err)
					}
				}
			}
			if got := waiterIndexes(f); len(got) != 0 {
				t.Fatalf("waiters left after catch-up = %v", got)
			}
		})
	}
}

// endCtx is a context whose end, and the error it reports, the test controls.
type endCtx struct {
	context.Context
	done chan struct{}
	once sync.Once
	err  error
}

func (c *endCtx) Done() <-chan struct{} { return c.done }

func (c *endCtx) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

func TestWaitAppliedContextEnds(t *testing.T) {
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		wantErr error
	}{
		{"cancel", func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			// A real timer could fire before the waiter registers; this
			// context ends exactly when the test says so.
			c := &endCtx{Context: context.Background(), done: make(chan struct{}), err: context.DeadlineExceeded}
			return c, func() { c.once.Do(func() { close(c.done) }) }
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New()
			applyAll(t, f, setLog(1, "a", "1"))
			// Two other readers stay registered and must survive the removal.
			others := startWaits(context.Background(), f, []uint64{50, 60})
			waitForWaiters(t, f, 2)

			ctx, cancel := tt.ctx()
			defer cancel()
			ch := startWaits(ctx, f, []uint64{55})[0]
			waitForWaiters(t, f, 3)
			cancel()
			err := recvWithin(t, ch, "cancelled wait")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("WaitApplied = %v, want %v", err, tt.wantErr)
			}
			if got := waiterIndexes(f); !slices.Equal(got, []uint64{50, 60}) {
				t.Fatalf("waiters after cancel = %v, want [50 60]", got)
			}

			applyAll(t, f, setLog(60, "a", "2"))
			for i, ch := range others {
				if err := recvWithin(t, ch, "other wait"); err != nil {
					t.Errorf("other waiter %d: %v", i, err)
				}
			}
			if got := waiterIndexes(f); len(got) != 0 {
				t.Fatalf("waiters left = %v", got)
			}
		})
	}
}

func TestRestoreReleasesWaiters(t *testing.T) {
	src := New()
	applyAll(t, src, setLog(100, "k", "v"))
	snap := persist(t, src)

	f := New()
	applyAll(t, f, setLog(1, "a", "1"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chs := startWaits(ctx, f, []uint64{50, 100, 200})
	waitForWaiters(t, f, 3)

	if err := f.Restore(readCloser(snap)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	for i := range 2 {
		if err := recvWithin(t, chs[i], "restore"); err != nil {
			t.Errorf("WaitApplied released by Restore = %v", err)
		}
	}
	if got := waiterIndexes(f); !slices.Equal(got, []uint64{200}) {
		t.Fatalf("waiters after restore = %v, want [200]", got)
	}
	cancel()
	if err := recvWithin(t, chs[2], "cancel"); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitApplied(200) = %v, want context.Canceled", err)
	}
}

func TestStateHelperSeesEverything(t *testing.T) {
	// Guard for the helpers above: two different states must compare unequal.
	a, b := New(), New()
	applyAll(t, a, setLog(1, "k", "v"))
	applyAll(t, b, setLog(1, "k", "w"))
	if reflect.DeepEqual(stateOf(a), stateOf(b)) {
		t.Fatal("stateOf does not distinguish different values")
	}
}
