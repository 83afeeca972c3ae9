package fsm

import (
	"testing"

	"github.com/hashicorp/raft"
)

// BenchmarkList reads pages of 1,000 keys (100-byte values) from a
// 100k-key state, each page at a different place: live under the read
// lock, from a View, and names only.
func BenchmarkList(b *testing.B) {
	const n = 100_000
	f := buildBenchFSM(b, n)
	v := f.View()
	for _, c := range []struct {
		name string
		list func(ListQuery) ListPage
		keys bool
	}{{"live", f.List, false}, {"view", v.List, false}, {"view-keys", v.List, true}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for range b.N {
				p := c.list(ListQuery{Prefix: "key-", After: benchKey(i), Limit: 1000, KeysOnly: c.keys})
				if len(p.Items) != 1000 {
					b.Fatalf("page of %d", len(p.Items))
				}
				i = (i + 7919) % (n - 2000)
			}
		})
	}
}

// BenchmarkCount counts a prefix that holds all 100k keys (the walk; ""
// would be answered from the kept totals).
func BenchmarkCount(b *testing.B) {
	const n = 100_000
	f := buildBenchFSM(b, n)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if u := f.Count("key-"); u.Count != n {
			b.Fatalf("count %d", u.Count)
		}
	}
}

// BenchmarkDeletePrefix deletes 10k keys of a 100k-key state in one
// command; the state is rebuilt outside the timer.
func BenchmarkDeletePrefix(b *testing.B) {
	const n = 100_000
	for range b.N {
		b.StopTimer()
		f := buildBenchFSM(b, n)
		b.StartTimer()
		res := f.Apply(&raft.Log{Index: n + 1, Type: raft.LogCommand, Data: (&Command{Op: OpDeletePrefix, Key: "key-0001"}).Encode(nil)}).(*Result)
		if res.Current != 10_000 {
			b.Fatalf("deleted %d", res.Current)
		}
	}
}
