package fsm

import (
	"strings"

	"github.com/google/btree"
)

// treeT is the state's ordered tree.
type treeT = *btree.BTreeG[item]

// listPrefix returns up to limit entries whose keys start with prefix, in
// key order, and whether more follow.
func listPrefix(tree treeT, prefix string, limit int) (items []Entry, more bool) {
	tree.AscendGreaterOrEqual(probe(prefix), func(it item) bool {
		if !strings.HasPrefix(it.key(), prefix) {
			return false
		}
		if len(items) == limit {
			more = true
			return false
		}
		items = append(items, it.entry())
		return true
	})
	return items, more
}

// deletePrefix removes every key that starts with prefix and returns how
// many and their data bytes.
func deletePrefix(tree treeT, prefix string) (n uint64, freed int64) {
	var keys []string
	tree.AscendGreaterOrEqual(probe(prefix), func(it item) bool {
		if !strings.HasPrefix(it.key(), prefix) {
			return false
		}
		keys = append(keys, it.key())
		return true
	})
	for _, k := range keys {
		if old, ok := tree.Delete(probe(k)); ok {
			freed += int64(len(old.kv))
			n++
		}
	}
	return n, freed
}
