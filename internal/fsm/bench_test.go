package fsm

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var benchValue = strings.Repeat("v", 100)

func benchKey(i int) string { return fmt.Sprintf("key-%08d", i) }

func BenchmarkCommandEncode(b *testing.B) {
	c := Command{Op: OpSet, Key: benchKey(42), Value: benchValue}
	buf := make([]byte, 0, c.EncodedSize())
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		buf = c.Encode(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkCommandDecode(b *testing.B) {
	c := Command{Op: OpSet, Key: benchKey(42), Value: benchValue}
	enc := c.Encode(nil)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := DecodeCommand(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyBatch applies batches of sets with 100-byte values over a
// pool of 100k keys, so the tree holds up to 100k keys and most sets after
// warm-up overwrite. One op is one batch.
func BenchmarkApplyBatch(b *testing.B) {
	const pool = 100_000
	data := make([][]byte, pool)
	for i := range data {
		data[i] = (&Command{Op: OpSet, Key: benchKey(i), Value: benchValue}).Encode(nil)
	}
	for _, size := range []int{1, 64} {
		b.Run(fmt.Sprint("batch=", size), func(b *testing.B) {
			f := New()
			logs := make([]*raft.Log, size)
			for i := range logs {
				logs[i] = &raft.Log{Type: raft.LogCommand}
			}
			var index uint64
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for _, l := range logs {
					index++
					l.Index = index
					l.Data = data[(index*7919)%pool]
				}
				f.ApplyBatch(logs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/entry")
		})
	}
}

func BenchmarkGet(b *testing.B) {
	const n = 100_000
	f := buildBenchFSM(b, n)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = benchKey(i)
	}
	b.ReportAllocs()
	i := 0
	b.ResetTimer()
	for range b.N {
		if _, ok := f.Get(keys[i]); !ok {
			b.Fatalf("Get(%q) missing", keys[i])
		}
		i = (i + 7919) % n
	}
}

// buildBenchFSM applies n sets of 100-byte values in batches of 1024.
func buildBenchFSM(b *testing.B, n int) *FSM {
	b.Helper()
	f := New()
	const batch = 1024
	logs := make([]*raft.Log, 0, batch)
	for i := range n {
		logs = append(logs, setLog(uint64(i+1), benchKey(i), benchValue))
		if len(logs) == batch || i == n-1 {
			f.ApplyBatch(logs)
			logs = logs[:0]
		}
	}
	if got := f.Stats().Keys; got != n {
		b.Fatalf("built %d keys, want %d", got, n)
	}
	return f
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkSnapshotPersistRestore times one Snapshot+Persist into memory
// and one Restore into a fresh FSM per op, and reports each part and the
// FSM's heap footprint. The FSM is built once per size, outside the timer.
func BenchmarkSnapshotPersistRestore(b *testing.B) {
	for _, size := range []struct {
		name string
		keys int
	}{
		{"keys=10k", 10_000},
		{"keys=1M", 1_000_000},
	} {
		var (
			f         *FSM
			heapBytes uint64
			snapBytes int
		)
		b.Run(size.name, func(b *testing.B) {
			if size.keys >= 1_000_000 && testing.Short() {
				b.Skip("1M keys skipped in -short mode")
			}
			if f == nil { // the sub-benchmark body runs several times
				before := heapInUse()
				f = buildBenchFSM(b, size.keys)
				heapBytes = heapInUse() - before
			}
			sink := newMemSink()
			var persistTime, restoreTime time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				s, err := f.Snapshot()
				if err != nil {
					b.Fatal(err)
				}
				sink.buf.Reset()
				sink.closed = false
				if err := s.Persist(sink); err != nil {
					b.Fatal(err)
				}
				s.Release()
				mid := time.Now()
				dst := New()
				if err := dst.Restore(readCloser(sink.buf.Bytes())); err != nil {
					b.Fatal(err)
				}
				restoreTime += time.Since(mid)
				persistTime += mid.Sub(start)
				if dst.AppliedIndex() != f.AppliedIndex() {
					b.Fatalf("restored applied index %d, want %d", dst.AppliedIndex(), f.AppliedIndex())
				}
			}
			b.StopTimer()
			snapBytes = sink.buf.Len()
			if !bytes.HasPrefix(sink.buf.Bytes(), []byte(snapshotMagic)) {
				b.Fatal("sink holds no snapshot")
			}
			b.ReportMetric(float64(persistTime.Nanoseconds())/float64(b.N), "persist-ns/op")
			b.ReportMetric(float64(restoreTime.Nanoseconds())/float64(b.N), "restore-ns/op")
			b.ReportMetric(float64(heapBytes), "fsm-heap-B")
			b.ReportMetric(float64(snapBytes), "snapshot-B")
		})
		f = nil // let the large FSM go before the next size
	}
}

// BenchmarkApplyTxn applies a bank transfer (two compares, two puts) to a
// 100k-key state, against two plain sets of the same keys: the cost of a
// transaction's decoding and copy-on-write clone.
func BenchmarkApplyTxn(b *testing.B) {
	const n = 100_000
	f := buildBenchFSM(b, n)
	index := f.AppliedIndex()
	for _, quota := range []uint64{0, 1 << 40} {
		b.Run(fmt.Sprint("txn/quota=", quota), func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				a, c := benchKey(i%n), benchKey((i*7919+1)%n)
				ea, _ := f.Get(a)
				ec, _ := f.Get(c)
				index++
				f.Apply(txnLogBench(index, quota, Txn{
					Compare: []Compare{{Key: a, Target: TargetModIndex, Op: CmpEqual, Index: ea.ModIndex}, {Key: c, Target: TargetModIndex, Op: CmpEqual, Index: ec.ModIndex}},
					Success: []TxnOp{{Kind: TxnPut, Key: a, Value: benchValue}, {Kind: TxnPut, Key: c, Value: benchValue}},
				}))
			}
		})
	}
	b.Run("two-sets", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			a, c := benchKey(i%n), benchKey((i*7919+1)%n)
			index += 2
			f.ApplyBatch([]*raft.Log{
				{Index: index - 1, Type: raft.LogCommand, Data: (&Command{Op: OpSet, Key: a, Value: benchValue}).Encode(nil)},
				{Index: index, Type: raft.LogCommand, Data: (&Command{Op: OpSet, Key: c, Value: benchValue}).Encode(nil)},
			})
		}
	})
}

func txnLogBench(index, quota uint64, t Txn) *raft.Log {
	return &raft.Log{Index: index, Type: raft.LogCommand, Data: (&Command{Op: OpTxn, Txn: &t, Quota: quota}).Encode(nil)}
}
