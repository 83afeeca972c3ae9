package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// oracle is the exact nearest-rank percentile of sorted.
func oracle(sorted []int64, p float64) int64 {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(rank, 1)
	return sorted[rank-1]
}

func TestBucketLayout(t *testing.T) {
	// Buckets are contiguous, ordered, and each value falls into the
	// bucket whose range holds it.
	prevEnd := int64(0)
	for i := 0; i < numBuckets; i++ {
		low, width := bucketRange(i)
		if low < 0 || low+width < low {
			break // past int64
		}
		if low != prevEnd {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, low, prevEnd)
		}
		if i >= 2*subCount && float64(width)/float64(low) > 1.0/subCount {
			t.Fatalf("bucket %d: width %d is more than 1/%d of %d", i, width, subCount, low)
		}
		for _, v := range []int64{low, low + width - 1, low + width/2} {
			if got := bucketOf(v); got != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, got, i)
			}
		}
		prevEnd = low + width
	}
	if b := bucketOf(math.MaxInt64); b >= numBuckets {
		t.Fatalf("bucketOf(MaxInt64) = %d, beyond %d buckets", b, numBuckets)
	}
}

func TestHistogramPercentilesMatchOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	tests := []struct {
		name string
		n    int
		gen  func() int64
	}{
		{"one sample", 1, func() int64 { return 1234567 }},
		{"small exact values", 1000, func() int64 { return r.Int64N(256) }},
		{"uniform 0-10ms", 20000, func() int64 { return r.Int64N(int64(10 * time.Millisecond)) }},
		{"lognormal around 1ms", 50000, func() int64 {
			return int64(math.Exp(r.NormFloat64()*0.8) * float64(time.Millisecond))
		}},
		{"bimodal with a tail", 30000, func() int64 {
			switch x := r.Float64(); {
			case x < 0.7:
				return 300_000 + r.Int64N(100_000)
			case x < 0.99:
				return 2_000_000 + r.Int64N(1_000_000)
			default:
				return 200_000_000 + r.Int64N(2_000_000_000)
			}
		}},
		{"all equal", 500, func() int64 { return 987654 }},
		{"huge", 100, func() int64 { return math.MaxInt64 - r.Int64N(1<<40) }},
	}
	percentiles := []float64{0, 0.1, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			vals := make([]int64, tc.n)
			var sum float64
			for i := range vals {
				vals[i] = tc.gen()
				sum += float64(vals[i])
				h.Record(time.Duration(vals[i]))
			}
			slices.Sort(vals)
			if h.Count() != uint64(tc.n) || int64(h.Min()) != vals[0] || int64(h.Max()) != vals[len(vals)-1] {
				t.Fatalf("count/min/max = %d/%d/%d, want %d/%d/%d", h.Count(), h.Min(), h.Max(), tc.n, vals[0], vals[len(vals)-1])
			}
			if want := sum / float64(tc.n); math.Abs(float64(h.Mean())-want) > want*1e-9+1 {
				t.Fatalf("mean %d, want %.0f", h.Mean(), want)
			}
			for _, p := range percentiles {
				want := oracle(vals, p)
				got := int64(h.Percentile(p))
				if diff := math.Abs(float64(got - want)); diff > float64(want)/(2*subCount) {
					t.Errorf("p%v = %d, oracle %d: off by %.3f%%", p, got, want, 100*diff/float64(want))
				}
				if want < 2*subCount && got != want {
					t.Errorf("p%v = %d, want exactly %d", p, got, want)
				}
			}
		})
	}
}

func TestHistogramMergeEqualsSingle(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var whole Histogram
	parts := make([]Histogram, 4)
	for i := range 10000 {
		d := time.Duration(r.Int64N(int64(50 * time.Millisecond)))
		whole.Record(d)
		parts[i%len(parts)].Record(d)
	}
	var merged Histogram
	merged.Merge(&Histogram{}) // merging an empty one changes nothing
	for i := range parts {
		merged.Merge(&parts[i])
	}
	if merged != whole {
		t.Fatalf("merged histogram differs from one recorded directly")
	}
}

func TestHistogramEmptyAndNegative(t *testing.T) {
	var h Histogram
	if h.Percentile(50) != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram should answer 0")
	}
	h.Record(-5)
	if h.Count() != 1 || h.Max() != 0 || h.Percentile(99) != 0 {
		t.Fatalf("negative duration should count as 0: %d %d %d", h.Count(), h.Max(), h.Percentile(99))
	}
}
