package integration

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/httpapi"
	"github.com/raftkv/raftkv/internal/testcluster"
)

// TestJoinAndReplication: three members joined the seed's way replicate a
// write to every follower (stale reads) and serve it linearizably anywhere.
func TestJoinAndReplication(t *testing.T) {
	c := testcluster.Start(t, 3)
	l := c.Leader(t)

	idx := c.MustSet(t, l, "greeting", "hello")
	for _, f := range c.Followers(t) {
		waitStale(t, c, f, "greeting", "hello")
		r := c.GetKey(t, f, "greeting", "stale")
		if got, _ := strconv.ParseUint(r.Header.Get(httpapi.HeaderAppliedIndex), 10, 64); got < idx {
			t.Errorf("stale read on %s: %s=%d, want >= %d", c.ID(f), httpapi.HeaderAppliedIndex, got, idx)
		}
		if r.ServedBy() != c.ID(f) {
			t.Errorf("stale read on %s was served by %q, want it served locally", c.ID(f), r.ServedBy())
		}
	}
	for i := range c.Size() {
		mustRead(t, c, i, "greeting", "hello")
		r := c.GetKey(t, i, "greeting", "")
		if r.Uint("mod_index") != idx || r.Uint("create_index") != idx || r.RaftIndex() != idx {
			t.Errorf("read via %s: indexes %s (header %d), want %d", c.ID(i), r.Body, r.RaftIndex(), idx)
		}
	}
}

// TestForwarding: writes sent to a follower are forwarded to the leader,
// whose answer (index, served-by) comes back unchanged.
func TestForwarding(t *testing.T) {
	c := testcluster.Start(t, 3)
	l := c.Leader(t)
	f := c.Followers(t)[0]
	leaderID := c.ID(l)

	tests := []struct {
		name   string
		method string
		target string
		body   []byte
		header http.Header
		key    string
		want   string // value afterwards; "" means deleted
	}{
		{name: "GET /set", method: http.MethodGet, target: "/set?key=fw1&value=one", key: "fw1", want: "one"},
		{
			name: "POST /set form", method: http.MethodPost, target: "/set",
			body:   []byte(url.Values{"key": {"fw2"}, "value": {"two words"}}.Encode()),
			header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
			key:    "fw2", want: "two words",
		},
		{name: "PUT /kv", method: http.MethodPut, target: "/kv/fw3/nested", body: []byte("three"), key: "fw3/nested", want: "three"},
		{name: "GET /remove", method: http.MethodGet, target: "/remove?key=fw1", key: "fw1"},
		{name: "DELETE /kv", method: http.MethodDelete, target: "/kv/fw3/nested", key: "fw3/nested"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := c.Node(l).FSM().AppliedIndex()
			r := c.MustDo(t, f, tc.method, tc.target, tc.body, tc.header)
			if r.Status != http.StatusOK {
				t.Fatalf("%s %s via follower %s: %s", tc.method, tc.target, c.ID(f), r.Summary())
			}
			if r.ServedBy() != leaderID {
				t.Errorf("served by %q, want the leader %q", r.ServedBy(), leaderID)
			}
			idx := r.Uint("index")
			if idx <= before || r.RaftIndex() != idx {
				t.Errorf("index %d (header %d), want one header-equal index > leader's earlier applied %d", idx, r.RaftIndex(), before)
			}
			if r.String("key") != tc.key {
				t.Errorf("key %q, want %q", r.String("key"), tc.key)
			}
			e, ok := c.Node(l).FSM().Get(tc.key)
			switch {
			case tc.want == "" && ok:
				t.Errorf("leader still has %q=%q", tc.key, e.Value)
			case tc.want != "" && (!ok || e.Value != tc.want || e.ModIndex != idx):
				t.Errorf("leader has %+v (present %v), want value %q at index %d", e, ok, tc.want, idx)
			}
			// The follower sees it too once it has applied the index.
			if tc.want != "" {
				waitStale(t, c, f, tc.key, tc.want)
			} else if r := c.GetKey(t, f, tc.key, ""); r.Status != http.StatusNotFound || r.Code() != "key_not_found" {
				t.Errorf("read of removed %q via follower: %s, want 404 key_not_found", tc.key, r.Summary())
			}
		})
	}

	// Reads at consistency=leader are forwarded to the leader.
	c.MustSet(t, l, "fw4", "four")
	if r := c.GetKey(t, f, "fw4", "leader"); r.Status != http.StatusOK || r.String("value") != "four" || r.ServedBy() != leaderID {
		t.Errorf("consistency=leader via follower: %s served by %q", r.Summary(), r.ServedBy())
	}
	// A linearizable read is served by the follower itself, from its own
	// replica, once it has applied the read index the leader confirmed.
	if r := c.Get(t, f, "/kv/fw4"); r.Status != http.StatusOK || string(r.Body) != "four" || r.ServedBy() != c.ID(f) {
		t.Errorf("GET /kv/fw4 via follower: %s served by %q, want the follower %q", r.Summary(), r.ServedBy(), c.ID(f))
	}
	// Compare-and-set is decided by the leader; the 409 carries the key's
	// current mod_index back through the follower.
	cur := c.MustSet(t, l, "fw-cas", "a")
	r := c.Get(t, f, fmt.Sprintf("/set?key=fw-cas&value=b&cas=%d", cur+1000))
	if r.Status != http.StatusConflict || r.Code() != "cas_failed" || r.Uint("index") != cur || r.ServedBy() != leaderID {
		t.Errorf("failed compare via follower: %s served by %q, want 409 cas_failed index %d", r.Summary(), r.ServedBy(), cur)
	}
	if r := c.Get(t, f, fmt.Sprintf("/set?key=fw-cas&value=b&cas=%d", cur)); r.Status != http.StatusOK || r.Uint("index") <= cur {
		t.Errorf("matching compare via follower: %s, want 200 with a newer index", r.Summary())
	}

	// The Idempotency-Key header survives forwarding: a retry through
	// another follower is answered with the first outcome, not applied.
	idem := http.Header{httpapi.HeaderIdempotencyKey: {"fw-idem-1"}}
	first := c.MustDo(t, f, http.MethodPut, "/kv/fw-idem", []byte("first"), idem)
	retryVia := others(c, l, f)[0]
	again := c.MustDo(t, retryVia, http.MethodPut, "/kv/fw-idem", []byte("first"), idem)
	if first.Status != http.StatusOK || again.Status != http.StatusOK || again.Uint("index") != first.Uint("index") ||
		again.Header.Get(httpapi.HeaderReplayed) != "true" {
		t.Errorf("idempotent retry: first %s, retry %s (replayed %q), want the same index replayed",
			first.Summary(), again.Summary(), again.Header.Get(httpapi.HeaderReplayed))
	}
	// The key reused for another request (value, key, or op), through a
	// follower: the leader's state machine refuses it, 422, and nothing is
	// applied; the first request's retries still replay.
	for _, reuse := range []struct{ method, target, body string }{
		{http.MethodPut, "/kv/fw-idem", "second"},
		{http.MethodPut, "/kv/fw-idem-other", "first"},
		{http.MethodDelete, "/kv/fw-idem", ""},
		{http.MethodGet, "/set?key=fw-idem&value=second&requestId=fw-idem-1", ""},
	} {
		r := c.MustDo(t, retryVia, reuse.method, reuse.target, []byte(reuse.body), idem)
		if r.Status != http.StatusUnprocessableEntity || r.Code() != "idempotency_key_reused" || r.ServedBy() != leaderID ||
			r.Header.Get(httpapi.HeaderReplayed) != "" || !strings.Contains(r.String("error"), "fw-idem-1") {
			t.Errorf("%s %s with a reused key via follower: %s served by %q, want 422 idempotency_key_reused from the leader",
				reuse.method, reuse.target, r.Summary(), r.ServedBy())
		}
	}
	if r := c.MustDo(t, f, http.MethodPut, "/kv/fw-idem", []byte("first"), idem); r.Status != http.StatusOK ||
		r.Uint("index") != first.Uint("index") || r.Header.Get(httpapi.HeaderReplayed) != "true" {
		t.Errorf("retry of the first request after the reuses: %s, want index %d replayed", r.Summary(), first.Uint("index"))
	}
	mustRead(t, c, retryVia, "fw-idem", "first")
	if r := c.GetKey(t, retryVia, "fw-idem-other", ""); r.Status != http.StatusNotFound {
		t.Errorf("the refused reuse wrote fw-idem-other: %s", r.Summary())
	}

	// Removing an absent key is forwarded and answered by the leader.
	if r := c.Get(t, f, "/remove?key=never-set"); r.Status != http.StatusNotFound || r.Code() != "key_not_found" || r.ServedBy() != leaderID {
		t.Errorf("remove of an absent key via follower: %s served by %q", r.Summary(), r.ServedBy())
	}
}

// TestLinearizableReadAfterWrite: a default read through any node right
// after an acknowledged write through another never sees an older value.
func TestLinearizableReadAfterWrite(t *testing.T) {
	c := testcluster.Start(t, 3)
	seed := time.Now().UnixNano()
	t.Logf("random seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	for i := range 50 {
		w := rng.IntN(c.Size())
		rd := (w + 1 + rng.IntN(c.Size()-1)) % c.Size()
		want := strconv.Itoa(i)
		c.MustSet(t, w, "counter", want)
		r := c.GetKey(t, rd, "counter", "")
		if r.Status != http.StatusOK || r.String("value") != want {
			t.Fatalf("iteration %d: wrote %s via %s, read via %s: %s", i, want, c.ID(w), c.ID(rd), r.Summary())
		}
	}
}

// TestJoinSemantics: /join is idempotent for an existing member, refuses to
// hand a member's Raft address to another id, and does not move a member to
// an address where nothing answers.
func TestJoinSemantics(t *testing.T) {
	c := testcluster.Start(t, 3)
	l := c.Leader(t)
	f := c.Followers(t)[0]
	before := members(t, c, l)

	t.Run("same id and address is unchanged", func(t *testing.T) {
		for _, via := range []int{l, f} {
			r := c.Get(t, via, fmt.Sprintf("/join?nodeId=%s&raftPort=%d", c.ID(f), c.RaftPort(f)))
			if r.Status != http.StatusOK || r.String("change") != "unchanged" {
				t.Fatalf("rejoin via %s: %s, want 200 unchanged", c.ID(via), r.Summary())
			}
			if r.String("raft_addr") != c.RaftAddr(f) {
				t.Errorf("rejoin via %s: raft_addr %q, want %q (the caller's IP)", c.ID(via), r.String("raft_addr"), c.RaftAddr(f))
			}
		}
		if after := members(t, c, l); !reflect.DeepEqual(before, after) {
			t.Fatalf("configuration changed:\nbefore %+v\nafter  %+v", before, after)
		}
	})

	t.Run("another member's address under a new id", func(t *testing.T) {
		r := c.Post(t, f, fmt.Sprintf("/join?nodeId=intruder&raftAddr=%s", c.RaftAddr(f)))
		if r.Status != http.StatusConflict || r.Code() != "address_in_use" {
			t.Fatalf("join of intruder at %s: %s, want 409 address_in_use", c.RaftAddr(f), r.Summary())
		}
		if after := members(t, c, l); !reflect.DeepEqual(before, after) {
			t.Fatalf("configuration changed:\nbefore %+v\nafter  %+v", before, after)
		}
	})

	t.Run("same id at an address where nothing answers is refused", func(t *testing.T) {
		// A mistyped port: the leader contacts the joiner first, so the
		// member is not moved to where it cannot serve (before, it was
		// moved and answered 200 "updated"). Moving to a live address is
		// TestRestartMoved's.
		moved := "127.0.0.1:1"
		r := c.Post(t, l, fmt.Sprintf("/join?nodeId=%s&raftAddr=%s", c.ID(f), moved))
		if r.Status != http.StatusConflict || r.Code() != "joiner_unreachable" {
			t.Fatalf("move %s to %s: %s, want 409 joiner_unreachable", c.ID(f), moved, r.Summary())
		}
		if after := members(t, c, l); !reflect.DeepEqual(before, after) {
			t.Fatalf("configuration changed:\nbefore %+v\nafter  %+v", before, after)
		}
		c.MustSet(t, l, "after-refused-move", "ok")
		waitStale(t, c, f, "after-refused-move", "ok")
	})
}
