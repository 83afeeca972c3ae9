package bench

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeTxn answers POST /txn like raftkv: it stores the puts of every
// transaction and answers "succeeded":false to every failEvery-th one
// (when failEvery > 0); lists and counts answer a fixed body.
type fakeTxn struct {
	failEvery int

	mu      sync.Mutex
	txns    int
	putsPer map[int]int // transactions by number of puts
	keys    map[string]bool
	lists   []string // request URIs of GETs
	bad     []string
}

func (f *fakeTxn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method == http.MethodGet {
		f.lists = append(f.lists, r.URL.RequestURI())
		w.Write([]byte(`{"index":3,"items":[],"more":false}`))
		return
	}
	var req struct {
		Success []struct{ Op, Key, Value string }
	}
	if r.URL.Path != "/txn" || json.Unmarshal(body, &req) != nil {
		f.bad = append(f.bad, r.URL.Path+" "+string(body))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	f.txns++
	f.putsPer[len(req.Success)]++
	for _, op := range req.Success {
		f.keys[op.Key] = true
	}
	if f.failEvery > 0 && f.txns%f.failEvery == 0 {
		w.Write([]byte(`{"succeeded":false,"index":7,"results":[]}`))
		return
	}
	w.Write([]byte(`{"succeeded":true,"index":7,"results":[{},{}]}`))
}

func newFakeTxn(t *testing.T, failEvery int) (*fakeTxn, *httptest.Server) {
	f := &fakeTxn{failEvery: failEvery, putsPer: map[int]int{}, keys: map[string]bool{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// A batched preload writes every key once in transactions of PreloadBatch
// puts (the last one shorter); then the txn workload's transactions are
// writes of two puts each, and a failed compare counts as an error.
func TestRunPreloadBatchAndTxn(t *testing.T) {
	f, srv := newFakeTxn(t, 10)
	cfg := testConfig(srv.URL)
	cfg.Preload, cfg.PreloadBatch, cfg.Keys = true, 16, 100
	cfg.Workload, cfg.Requests, cfg.Ratio = WorkloadTxn, 200, 0 // the txn workload overrides the ratio
	res := mustRun(t, context.Background(), cfg)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bad) > 0 {
		t.Fatalf("bad requests: %q", f.bad)
	}
	// 100 keys: 6 batches of 16 and one of 4, then 200 transactions of 2.
	if f.putsPer[16] != 6 || f.putsPer[4] != 1 || f.putsPer[2] != 200 || len(f.keys) != 100 {
		t.Errorf("transactions by size %v, %d keys written", f.putsPer, len(f.keys))
	}
	// The fake's 10th, 20th, ... transactions failed their compare; 7 of
	// them were preload batches, which the preload retried.
	if res.Requests != 200 || res.Writes != 200 || res.Reads != 0 || res.Errors == 0 || res.StatusErrors["200"] != res.Errors {
		t.Errorf("requests %d writes %d reads %d errors %d (%v)", res.Requests, res.Writes, res.Reads, res.Errors, res.StatusErrors)
	}
	if res.Workload != WorkloadTxn || res.Ratio != 1 {
		t.Errorf("result says workload %q, ratio %v", res.Workload, res.Ratio)
	}
}

func TestRunListAndCount(t *testing.T) {
	for _, wl := range []string{WorkloadList, WorkloadCount} {
		f, srv := newFakeTxn(t, 0)
		cfg := testConfig(srv.URL)
		cfg.Workload, cfg.Requests, cfg.Ratio, cfg.Prefix = wl, 20, 1, "p/" // lists and counts override the ratio
		res := mustRun(t, context.Background(), cfg)
		if res.Reads != 20 || res.Writes != 0 || res.Errors != 0 || res.NotFound != 0 {
			t.Errorf("%s: reads %d writes %d errors %d not found %d", wl, res.Reads, res.Writes, res.Errors, res.NotFound)
		}
		f.mu.Lock()
		if len(f.lists) != 20 || !strings.HasPrefix(f.lists[0], "/kv/p/?recurse&") {
			t.Errorf("%s: requests %q", wl, f.lists)
		}
		f.mu.Unlock()
	}
}
