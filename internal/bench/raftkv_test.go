package bench

import (
	"context"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testcluster"
)

// A short run against a real in-process single-node raftkv: writes,
// linearizable and stale reads of preloaded keys all succeed.
func TestRunAgainstRealRaftkv(t *testing.T) {
	c := testcluster.Start(t, 1)
	for _, consistency := range []string{Linearizable, Stale} {
		t.Run(consistency, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Targets = []string{c.URL(0)}
			cfg.Requests, cfg.Concurrency, cfg.Warmup = 300, 4, 0
			cfg.Keys, cfg.Ratio, cfg.Consistency = 50, 0.5, consistency
			cfg.Preload = consistency == Linearizable // the second run finds the keys anyway
			cfg.Timeout = 5 * time.Second
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != 300 || res.Errors != 0 || res.NotFound != 0 || res.Failed {
				t.Fatalf("requests %d errors %d (%s) not found %d failed %v", res.Requests, res.Errors, res.errorSummary(), res.NotFound, res.Failed)
			}
			if res.Reads == 0 || res.Writes == 0 || res.ReadLat.Count == 0 || res.WriteLat.Count == 0 {
				t.Fatalf("reads %d writes %d", res.Reads, res.Writes)
			}
			t.Logf("%s: %.0f ops/s, p50 %.2f ms, p99 %.2f ms", consistency, res.Throughput, res.Latency.P50, res.Latency.P99)
		})
	}
}

// The multi-key workloads against a real in-process raftkv, after a
// batched preload: every transaction's compare holds (a failed one would
// count as an error), lists and counts answer 200.
func TestRunWorkloadsAgainstRealRaftkv(t *testing.T) {
	c := testcluster.Start(t, 1)
	base := DefaultConfig()
	base.Targets = []string{c.URL(0)}
	base.Concurrency, base.Warmup, base.Timeout = 4, 0, 5*time.Second
	base.Keys, base.Prefix = 300, "wl/"

	pre := base
	pre.Preload, pre.PreloadBatch, pre.Requests, pre.Ratio = true, 64, 1, 0
	if res, err := Run(context.Background(), pre); err != nil || res.Errors != 0 || res.NotFound != 0 {
		t.Fatalf("batched preload, then one read: %v %+v", err, res)
	}
	for _, wl := range []string{WorkloadList, WorkloadCount, WorkloadTxn} {
		t.Run(wl, func(t *testing.T) {
			cfg := base
			cfg.Workload, cfg.Requests, cfg.ListLimit = wl, 100, 50
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != 100 || res.Errors != 0 || res.Failed {
				t.Fatalf("requests %d errors %d (%s)", res.Requests, res.Errors, res.errorSummary())
			}
			t.Logf("%s: %.0f ops/s, p50 %.2f ms", wl, res.Throughput, res.Latency.P50)
		})
	}
}
