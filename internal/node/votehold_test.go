package node

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/testwait"
)

// holdTransport is the transport under a hold: RPCs come in on in; the
// vote requests this node sends are counted.
type holdTransport struct {
	raft.Transport // an in-memory transport, for addresses
	in             chan raft.RPC
	mu             sync.Mutex
	votesSent      int
	closed         bool
}

func (f *holdTransport) Consumer() <-chan raft.RPC { return f.in }

func (f *holdTransport) RequestVote(raft.ServerID, raft.ServerAddress, *raft.RequestVoteRequest, *raft.RequestVoteResponse) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.votesSent++
	return nil
}

func (f *holdTransport) RequestPreVote(raft.ServerID, raft.ServerAddress, *raft.RequestPreVoteRequest, *raft.RequestPreVoteResponse) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.votesSent++
	return nil
}

func (f *holdTransport) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// fakeVolume is the log the hold looks at: index -> term, everything up
// to last held.
type fakeVolume struct {
	mu      sync.Mutex
	terms   map[uint64]uint64
	cleared int // times the hold was forgotten on the volume
}

func (v *fakeVolume) set(index, term uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.terms[index] = term
}

func (v *fakeVolume) termAt(i uint64) (uint64, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	t, ok := v.terms[i]
	return t, ok
}

func (v *fakeVolume) covered(i uint64) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for j := range v.terms {
		if j >= i {
			return true
		}
	}
	return false
}

func newTestHold(t *testing.T, minTerm uint64) (*voteHold, *holdTransport, *fakeVolume) {
	t.Helper()
	_, mem := raft.NewInmemTransport("")
	tr := &holdTransport{Transport: mem, in: make(chan raft.RPC)}
	vol := &fakeVolume{terms: map[uint64]uint64{}}
	h := newVoteHold(tr, "n2", minTerm, vol, "dropped log entries 7-9 (test)", quietLogger().WithField("t", 1), func() error { vol.cleared++; return nil })
	t.Cleanup(func() { _ = h.Close() })
	return h, tr, vol
}

// send hands cmd to the hold as the transport would and returns the answer
// the hold made itself, or nil if it passed cmd on to raft (then the test,
// standing in for raft, receives it and answers).
func send(t *testing.T, h *voteHold, tr *holdTransport, cmd any) *raft.RPCResponse {
	t.Helper()
	resp := make(chan raft.RPCResponse, 1)
	tr.in <- raft.RPC{Command: cmd, RespChan: resp}
	select {
	case r := <-resp:
		return &r
	case rpc := <-h.Consumer():
		if rpc.Command != cmd {
			t.Fatalf("raft got %T, want the %T just sent", rpc.Command, cmd)
		}
		rpc.Respond(nil, nil)
		<-resp
		return nil
	case <-time.After(5 * time.Second):
		t.Fatalf("%T was neither answered nor passed on", cmd)
		return nil
	}
}

func appendEntries(term, commit uint64) *raft.AppendEntriesRequest {
	return &raft.AppendEntriesRequest{Term: term, LeaderCommitIndex: commit}
}

// TestVoteHoldRefusesVotes: while held, vote and pre-vote requests are
// answered "not granted" with the candidate's own term (so it is not
// pushed into a new term) and never reach raft; a leadership transfer to
// this node fails; this node's own vote requests fail before the wire.
func TestVoteHoldRefusesVotes(t *testing.T) {
	h, tr, _ := newTestHold(t, 3)
	r := send(t, h, tr, &raft.RequestVoteRequest{Term: 7, LastLogIndex: 40, LastLogTerm: 6})
	if r == nil {
		t.Fatal("a vote request reached raft while the vote is held")
	}
	if v, ok := r.Response.(*raft.RequestVoteResponse); !ok || v.Granted || v.Term != 7 || r.Error != nil {
		t.Fatalf("vote answer %#v, %v: want not granted, term 7", r.Response, r.Error)
	}
	r = send(t, h, tr, &raft.RequestPreVoteRequest{Term: 8})
	if r == nil {
		t.Fatal("a pre-vote request reached raft while the vote is held")
	}
	if v, ok := r.Response.(*raft.RequestPreVoteResponse); !ok || v.Granted || v.Term != 8 {
		t.Fatalf("pre-vote answer %#v: want not granted, term 8", r.Response)
	}
	if r = send(t, h, tr, &raft.TimeoutNowRequest{}); r == nil || r.Error == nil {
		t.Fatal("a leadership transfer to a held node was not refused")
	}
	if err := h.RequestVote("n1", "a", &raft.RequestVoteRequest{}, &raft.RequestVoteResponse{}); !errors.Is(err, errVoteHeld) {
		t.Errorf("own RequestVote while held: %v, want errVoteHeld", err)
	}
	if err := h.RequestPreVote("n1", "a", &raft.RequestPreVoteRequest{}, &raft.RequestPreVoteResponse{}); !errors.Is(err, errVoteHeld) {
		t.Errorf("own RequestPreVote while held: %v, want errVoteHeld", err)
	}
	if tr.votesSent != 0 {
		t.Errorf("%d vote requests went out while held", tr.votesSent)
	}
	// Everything else reaches raft.
	if r = send(t, h, tr, &raft.InstallSnapshotRequest{}); r != nil {
		t.Fatal("an InstallSnapshot was answered by the hold")
	}
	if !h.Held() || h.refused.Load() != 2 {
		t.Fatalf("held %v, %d refused, want held and 2", h.Held(), h.refused.Load())
	}
}

// TestVoteHoldReleasesAtCommitIndex: the hold ends only once the node
// holds, at the commit index a leader sent after the start, an entry of
// that leader's term; from then on everything passes through.
func TestVoteHoldReleasesAtCommitIndex(t *testing.T) {
	h, tr, vol := newTestHold(t, 3)
	for i := uint64(1); i <= 6; i++ {
		vol.set(i, 3)
	}
	// A deposed leader of an older term than the repair kept: ignored,
	// even though its commit index is held with its term.
	send(t, h, tr, appendEntries(2, 5))
	send(t, h, tr, appendEntries(2, 5))
	if !h.Held() {
		t.Fatal("released on a stale leader's commit index")
	}
	send(t, h, tr, appendEntries(4, 10)) // the target: index 10 of term 4
	send(t, h, tr, appendEntries(4, 10))
	if !h.Held() {
		t.Fatal("released before index 10 is held")
	}
	for i := uint64(7); i <= 9; i++ {
		vol.set(i, 4)
	}
	send(t, h, tr, appendEntries(4, 11))
	if !h.Held() {
		t.Fatal("released at index 9, short of 10")
	}
	if vol.cleared != 0 {
		t.Fatal("the hold was forgotten on the volume while still on")
	}
	vol.set(10, 4)
	send(t, h, tr, appendEntries(4, 11))
	if h.Held() {
		t.Fatal("still held with index 10 of term 4 in the log")
	}
	if vol.cleared != 1 {
		t.Fatalf("the hold's end was recorded %d times, want once", vol.cleared)
	}
	if r := send(t, h, tr, &raft.RequestVoteRequest{Term: 9}); r != nil {
		t.Fatal("a vote request was answered by the hold after it ended")
	}
	if err := h.RequestVote("n1", "a", &raft.RequestVoteRequest{}, &raft.RequestVoteResponse{}); err != nil || tr.votesSent != 1 {
		t.Fatalf("own RequestVote after the hold: %v (%d sent), want it sent", err, tr.votesSent)
	}
}

// TestVoteHoldOlderTermCommit: a new leader whose commit index still
// points at an older term's entry does not end the hold (that index need
// not reach every entry committed before); a later commit index in its own
// term does.
func TestVoteHoldOlderTermCommit(t *testing.T) {
	h, tr, vol := newTestHold(t, 3)
	for i := uint64(1); i <= 8; i++ {
		vol.set(i, 3)
	}
	send(t, h, tr, appendEntries(5, 8)) // index 8 is of term 3
	send(t, h, tr, appendEntries(5, 8))
	send(t, h, tr, appendEntries(5, 12)) // taken as the new target
	if !h.Held() {
		t.Fatal("released on an index of an older term than its leader's")
	}
	for i := uint64(9); i <= 12; i++ {
		vol.set(i, 5)
	}
	send(t, h, tr, appendEntries(5, 12))
	if h.Held() {
		t.Fatal("still held with index 12 of term 5 in the log")
	}
}

// TestVoteHoldAtStart: a repair starts a hold recorded on the volume, with
// the term the repair kept; a restart before the hold ended holds again
// although nothing is left to repair; once the hold's end is recorded, a
// start holds nothing.
func TestVoteHoldAtStart(t *testing.T) {
	store, err := openLogStore(t.TempDir(), LogStoreBolt, 0, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, why, err := voteHoldAtStart(store, ""); err != nil || why != "" {
		t.Fatalf("fresh volume: %q, %v; want no hold", why, err)
	}
	if err := store.SetUint64([]byte(keyCurrentTerm), 6); err != nil {
		t.Fatal(err)
	}
	if term, why, err := voteHoldAtStart(store, "dropped log entries 3-5"); err != nil || term != 6 || why != "dropped log entries 3-5" {
		t.Fatalf("after a repair: term %d, %q, %v; want a hold from term 6", term, why, err)
	}
	if err := store.SetUint64([]byte(keyCurrentTerm), 9); err != nil {
		t.Fatal(err)
	}
	if term, why, err := voteHoldAtStart(store, ""); err != nil || term != 6 || why == "" {
		t.Fatalf("restart before catching up: term %d, %q, %v; want the hold from term 6 again", term, why, err)
	}
	if err := store.SetUint64(stableKeyVoteHold, 0); err != nil { // what release records
		t.Fatal(err)
	}
	if _, why, err := voteHoldAtStart(store, ""); err != nil || why != "" {
		t.Fatalf("after the release: %q, %v; want no hold", why, err)
	}
}

// TestVoteHoldCloseNoLeak: Close ends the hold's goroutine even while an
// RPC waits for raft (it is answered with an error), closes the real
// transport, and may be called again.
func TestVoteHoldCloseNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	_, mem := raft.NewInmemTransport("")
	tr := &holdTransport{Transport: mem, in: make(chan raft.RPC)}
	h := newVoteHold(tr, "n2", 1, &fakeVolume{terms: map[uint64]uint64{}}, "test", quietLogger().WithField("t", 1), func() error { return nil })
	resp := make(chan raft.RPCResponse, 1)
	tr.in <- raft.RPC{Command: appendEntries(1, 1), RespChan: resp} // no one reads Consumer
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case r := <-resp:
		if !errors.Is(r.Error, raft.ErrTransportShutdown) {
			t.Errorf("pending RPC answered %v, want ErrTransportShutdown", r.Error)
		}
	default:
		t.Error("the RPC pending at Close was never answered")
	}
	if !tr.closed {
		t.Error("Close did not close the real transport")
	}
	testwait.For(t, 5*time.Second, "the hold's goroutine to end", func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before", n, before)
		}
		return nil
	})
}
