package integration

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/internal/testcluster"
)

type txnAnswer struct {
	Succeeded bool             `json:"succeeded"`
	Index     uint64           `json:"index"`
	Results   []map[string]any `json:"results"`
}

func postTxn(t *testing.T, c *testcluster.Cluster, i int, body string, header http.Header) (testcluster.Response, txnAnswer) {
	t.Helper()
	r := c.MustDo(t, i, http.MethodPost, "/txn", []byte(body), header)
	var a txnAnswer
	if r.Status == http.StatusOK {
		if err := r.Decode(&a); err != nil {
			t.Fatalf("answer %s: %v", r.Body, err)
		}
	}
	return r, a
}

// TestTxnThroughFollower: a transaction sent to a follower runs on the
// leader as one entry; the success and the failure branch; a retry with
// the same Idempotency-Key runs nothing again.
func TestTxnThroughFollower(t *testing.T) {
	c := testcluster.Start(t, 3)
	l, f := c.Leader(t), c.Followers(t)[0]
	ia := c.MustSet(t, l, "acct/a", "100")
	c.MustSet(t, l, "acct/b", "0")

	transfer := `{"compare": [{"key": "acct/a", "target": "mod_index", "op": "=", "mod_index": ` + uintStr(ia) + `}],
	  "success": [{"op": "put", "key": "acct/a", "value": "60"}, {"op": "put", "key": "acct/b", "value": "40"}],
	  "failure": [{"op": "get", "key": "acct/a"}]}`
	hdr := http.Header{"Idempotency-Key": {"transfer-1"}}
	r, a := postTxn(t, c, f, transfer, hdr)
	if r.Status != http.StatusOK || !a.Succeeded || r.ServedBy() != c.ID(l) || r.RaftIndex() != a.Index || len(a.Results) != 2 {
		t.Fatalf("transfer via follower: %s", r.Summary())
	}
	mustRead(t, c, f, "acct/a", "60")
	mustRead(t, c, f, "acct/b", "40")
	if e, _ := c.Node(l).FSM().Get("acct/b"); e.ModIndex != a.Index {
		t.Fatalf("acct/b at %d, want the txn's index %d", e.ModIndex, a.Index)
	}

	// The retry (through another node) answers the first outcome and
	// applies nothing: a re-run would now take the failure branch.
	applied := c.Node(l).FSM().AppliedIndex()
	r2, a2 := postTxn(t, c, c.Followers(t)[1], transfer, hdr)
	if r2.Status != http.StatusOK || r2.Header.Get("X-Raft-Replayed") != "true" || !a2.Succeeded || a2.Index != a.Index {
		t.Fatalf("retry: %s", r2.Summary())
	}
	if e, _ := c.Node(l).FSM().Get("acct/a"); e.Value != "60" || e.ModIndex != a.Index {
		t.Fatalf("retry re-applied: %+v", e)
	}
	if got := c.Node(l).FSM().AppliedIndex(); got > applied+1 {
		t.Fatalf("retry appended %d entries", got-applied)
	}

	// Without the key, the same transaction now fails its compare: 200,
	// succeeded false, the failure branch's read, nothing written.
	r3, a3 := postTxn(t, c, f, transfer, nil)
	if r3.Status != http.StatusOK || a3.Succeeded || len(a3.Results) != 1 || a3.Results[0]["value"] != "60" {
		t.Fatalf("stale compare: %s", r3.Summary())
	}
	mustRead(t, c, l, "acct/b", "40")

	// Bad input on a follower: 400, nothing proposed anywhere.
	before := c.Node(l).FSM().AppliedIndex()
	r4 := c.MustDo(t, f, http.MethodPost, "/txn", []byte(`{"success": [{"op": "increment", "key": "acct/a"}]}`), nil)
	if r4.Status != http.StatusBadRequest || r4.Code() != "bad_request" || !strings.Contains(r4.String("error"), "increment") {
		t.Fatalf("unknown op: %s", r4.Summary())
	}
	if got := c.Node(l).FSM().AppliedIndex(); got != before {
		t.Fatalf("a refused txn moved the leader's applied index %d -> %d", before, got)
	}
}

// TestQuotaThroughFollower: with MAX_DATA_BYTES, a write through a
// follower that would grow the data past it is a 507 naming the quota;
// a delete heals the store and the same write then applies.
func TestQuotaThroughFollower(t *testing.T) {
	const quota = 64
	c := testcluster.Start(t, 3, testcluster.WithMaxDataBytes(quota))
	l, f := c.Leader(t), c.Followers(t)[0]
	fill := strings.Repeat("x", quota-len("fill"))
	c.MustSet(t, l, "fill", fill) // exactly the quota
	for name, try := range map[string]func() testcluster.Response{
		"PUT": func() testcluster.Response { return c.MustDo(t, f, http.MethodPut, "/kv/new", []byte("v"), nil) },
		"txn": func() testcluster.Response {
			r, _ := postTxn(t, c, f, `{"success": [{"op": "delete", "key": "nothing"}, {"op": "put", "key": "new", "value": "v"}]}`, nil)
			return r
		},
	} {
		r := try()
		if r.Status != http.StatusInsufficientStorage || r.Code() != "quota_exceeded" ||
			!strings.Contains(r.String("error"), "MAX_DATA_BYTES=64") || !strings.Contains(r.String("error"), "64 bytes now") {
			t.Fatalf("%s over the quota via follower: %s", name, r.Summary())
		}
	}
	if _, ok := c.Node(l).FSM().Get("new"); ok {
		t.Fatal("a refused write applied")
	}
	st := c.Status(t, f)
	if st.Uint("max_data_bytes") != quota {
		t.Fatalf("/status: %s", st.Body)
	}
	// Delete (a shrinking write) goes through at the quota; then the
	// write that was refused applies.
	if r := c.MustDo(t, f, http.MethodDelete, "/kv/fill", nil, nil); r.Status != http.StatusOK {
		t.Fatalf("delete at the quota: %s", r.Summary())
	}
	r, a := postTxn(t, c, f, `{"success": [{"op": "put", "key": "new", "value": "v"}]}`, nil)
	if r.Status != http.StatusOK || !a.Succeeded {
		t.Fatalf("after the delete: %s", r.Summary())
	}
	mustRead(t, c, f, "new", "v")
}

func uintStr(n uint64) string { return strconv.FormatUint(n, 10) }
