package fsm

// Leases in snapshot streams (version snapshotLeases and later), after the
// key records: a lease count and 'L' records, ids strictly ascending, then
// an attachment count and 'A' records, (lease, key) strictly ascending,
// each naming a lease before it and a key of the stream, each key at most
// once; a key lease (ofKey) has exactly one key.

import (
	"fmt"

	"github.com/google/btree"
)

const (
	recLease  = 'L'
	recAttach = 'A'
)

func (s *snapWriter) leases(leases *btree.BTreeG[leaseItem], attach *btree.BTreeG[attachItem]) {
	s.uvarint(uint64(leases.Len()))
	leases.Ascend(func(l leaseItem) bool {
		s.lease(l)
		return s.err == nil
	})
	s.uvarint(uint64(attach.Len()))
	attach.Ascend(func(a attachItem) bool {
		s.attachment(a)
		return s.err == nil
	})
}

func (s *snapWriter) lease(l leaseItem) {
	s.tag(recLease)
	s.uvarint(l.id)
	s.uvarint(l.ttl)
	s.uvarint(l.refreshed)
	s.uvarint(l.remaining)
	s.uvarint(l.since)
	ofKey := uint64(0)
	if l.ofKey {
		ofKey = 1
	}
	s.uvarint(ofKey)
}

func (s *snapWriter) attachment(a attachItem) {
	s.tag(recAttach)
	s.uvarint(a.id)
	s.str(a.key)
}

// maxSnapshotLeases bounds a stream's lease count: a restore must not
// exceed what Apply allows.
const maxSnapshotLeases = MaxLeases

func (s *snapReader) readLeases(info *decodedInfo, v snapshotVisitor) {
	n := s.uvarint()
	if s.err == nil && n > maxSnapshotLeases {
		s.fail("%d leases, at most %d", n, maxSnapshotLeases)
	}
	if s.err == nil && v.leaseCount != nil {
		v.leaseCount(n)
	}
	ids := make(map[uint64]bool) // looked up only
	var prev uint64
	for i := uint64(0); i < n && s.err == nil; i++ {
		if t := s.byte(); t != recLease {
			s.fail("record %q where a lease was expected", t)
			break
		}
		l := leaseItem{id: s.uvarint(), ttl: s.uvarint(), refreshed: s.uvarint(), remaining: s.uvarint(), since: s.uvarint()}
		ofKey := s.uvarint()
		l.ofKey = ofKey == 1
		if s.err != nil {
			break
		}
		switch {
		case l.id == 0 || l.id <= prev:
			s.fail("lease %d out of order", l.id)
		case !validTTL(l.ttl) || l.remaining > l.ttl:
			s.fail("lease %d: ttl %d ms, remaining %d ms", l.id, l.ttl, l.remaining)
		case ofKey > 1:
			s.fail("lease %d: key flag %d", l.id, ofKey)
		}
		prev = l.id
		ids[l.id] = true
		info.leases++
		info.leaseBytes += 1 + int64(uvarintLen(l.id)+uvarintLen(l.ttl)+uvarintLen(l.remaining)+1)
		if s.err == nil && v.lease != nil {
			v.lease(l)
		}
	}
	if s.err != nil {
		return
	}
	n = s.uvarint()
	if s.err == nil && v.attachCount != nil {
		v.attachCount(n)
	}
	var last attachItem
	for i := uint64(0); i < n && s.err == nil; i++ {
		if t := s.byte(); t != recAttach {
			s.fail("record %q where a lease attachment was expected", t)
			break
		}
		a := attachItem{id: s.uvarint(), key: s.str()}
		if s.err != nil {
			break
		}
		if !ids[a.id] || (i > 0 && !attachLess(last, a)) {
			s.fail("attachment of %q to lease %d: unknown lease or out of order", a.key, a.id)
			break
		}
		last = a
		info.attachments++
		info.leaseBytes += 1 + int64(uvarintLen(a.id)+uvarintLen(uint64(len(a.key)))+len(a.key))
		if v.attach != nil {
			v.attach(a)
		}
	}
}

// restoreAttach records an attachment read back, refusing one whose key
// is not in the stream or is attached twice.
func (st *restoredState) restoreAttach(a attachItem) error {
	if !st.tree.Has(probe(a.key)) {
		return fmt.Errorf("%w: key %q attached to lease %d is not in the snapshot", ErrCorruptSnapshot, a.key, a.id)
	}
	if st.keyLease.Has(a) {
		return fmt.Errorf("%w: key %q attached to two leases", ErrCorruptSnapshot, a.key)
	}
	st.keyLease.ReplaceOrInsert(a)
	st.attach.ReplaceOrInsert(a)
	return nil
}

// checkKeyLeases refuses a key lease without exactly one key.
func (st *restoredState) checkKeyLeases() error {
	var err error
	st.leases.Ascend(func(l leaseItem) bool {
		if !l.ofKey {
			return true
		}
		n := 0
		st.attach.AscendGreaterOrEqual(attachItem{id: l.id}, func(a attachItem) bool {
			if a.id != l.id || n > 1 {
				return false
			}
			n++
			return true
		})
		if n != 1 {
			err = fmt.Errorf("%w: key lease %d has %d keys", ErrCorruptSnapshot, l.id, n)
		}
		return err == nil
	})
	return err
}
