package fsm

// Backups reuse the snapshot format: GET /backup streams exactly what
// Persist writes, and a restore reads it back with the same decoder, so a
// backup is verified as strictly as a snapshot (magic, version, every
// record, key order, CRC-32C trailer) and, in addition, must end at its
// trailer. See DESIGN.md, "Backup and restore".

import (
	"bufio"
	"io"
	"maps"
	"slices"
)

// BackupInfo describes a backup stream that read back intact.
type BackupInfo struct {
	Version  int    // format version of the stream
	Applied  uint64 // the Raft index the state reflects, as written
	Keys     uint64
	Nodes    uint64
	Requests uint64
	// Promotions counts learners marked for promotion (version 3 on).
	Promotions uint64
	// Leases (key leases included) and the keys attached to them
	// (version 5 on).
	Leases, Attached uint64
	Size             int64  // bytes, trailer included
	CRC              uint32 // the CRC-32C in the trailer

	keyBytes int64 // key records without their indexes, for InstallSize
	// leaseBytes: lease and attachment records without the leases' two
	// indexes, for InstallSize.
	leaseBytes int64
}

// Capture is a frozen copy of the whole state, taken in O(1) like a
// snapshot; writing it out does not block Apply.
type Capture struct{ s *snapshot }

// Capture freezes the current state for a backup.
func (f *FSM) Capture() *Capture {
	s, _ := f.Snapshot() // never fails
	return &Capture{s: s.(*snapshot)}
}

// AppliedIndex is the index of the last entry the captured state includes.
func (c *Capture) AppliedIndex() uint64 { return c.s.applied }

// Keys is the number of keys captured.
func (c *Capture) Keys() int { return c.s.tree.Len() }

// Write streams the captured state in the snapshot format and returns the
// CRC-32C written in its trailer.
func (c *Capture) Write(w io.Writer) (uint32, error) {
	return writeSnapshot(w, c.s)
}

func backupInfo(d decodedInfo) BackupInfo {
	return BackupInfo{
		Version:    int(d.header.version),
		Applied:    d.header.applied,
		Keys:       d.header.keyCount,
		Nodes:      d.header.nodeCount,
		Requests:   d.header.reqCount,
		Promotions: d.header.promoteCount,
		Size:       d.size,
		CRC:        d.crc,
		keyBytes:   d.keyBytes,
		Leases:     uint64(d.leases),
		Attached:   uint64(d.attachments),
		leaseBytes: d.leaseBytes,
	}
}

// VerifyBackup reads the whole stream and checks it, holding at most one
// record in memory. An error wraps ErrCorruptSnapshot.
func VerifyBackup(r io.Reader) (BackupInfo, error) {
	d, err := decodeSnapshot(r, snapshotVisitor{reuseKeys: true})
	if err != nil {
		return BackupInfo{}, err
	}
	return backupInfo(d), nil
}

// ScanBackup is VerifyBackup that also hands every key to fn, in key
// order. fn's entries are only trustworthy once ScanBackup returns nil.
func ScanBackup(r io.Reader, fn func(Entry)) (BackupInfo, error) {
	d, err := decodeSnapshot(r, snapshotVisitor{key: func(it item) { fn(it.entry()) }})
	if err != nil {
		return BackupInfo{}, err
	}
	return backupInfo(d), nil
}

// InstallSize is the exact length of what WriteInstall writes for a
// backup described by info: raft's Restore must be told the size first.
func InstallSize(info BackupInfo, index uint64, nodes map[string]string) int64 {
	n := int64(len(snapshotMagic)) + 1 // magic, version
	n += int64(uvarintLen(index) + uvarintLen(uint64(len(nodes))) + uvarintLen(info.Keys) + uvarintLen(0) + uvarintLen(0))
	n += int64(uvarintLen(0) + uvarintLen(index) + uvarintLen(EndSeq)) // no history; its floor is index
	for id, addr := range nodes {
		n += 1 + int64(uvarintLen(uint64(len(id)))+len(id)+uvarintLen(uint64(len(addr)))+len(addr))
	}
	n += info.keyBytes + int64(info.Keys)*2*int64(uvarintLen(index))
	n += int64(uvarintLen(info.Leases)+uvarintLen(info.Attached)) + info.leaseBytes + int64(info.Leases)*2*int64(uvarintLen(index))
	return n + 5 // 'E' and the checksum
}

// WriteInstall reads a backup from src and writes to w the snapshot that
// installs it at Raft index index:
//   - every key keeps its value, and its create and mod index become index
//     (a restore is a new version of every key, so no compare-and-set
//     token from before the restore can match a restored key);
//   - the applied index is index;
//   - the node address table is nodes (the live cluster's, not the one
//     the backup was taken from, whose addresses mean nothing here);
//   - the idempotency table and the promotion marks are empty (a learner
//     still waiting for promotion is made a voter with /promote);
//   - the change history is empty and starts at index: a watcher that
//     resumes from before the restore is told the history is compacted.
//   - leases keep their ids, TTLs, remaining times and keys; their
//     refresh and checkpoint indexes become index.
//
// src is verified again as it is read; on any error what was written is
// incomplete and must be discarded.
func WriteInstall(w io.Writer, src io.Reader, index uint64, nodes map[string]string) (BackupInfo, error) {
	sw := &snapWriter{w: bufio.NewWriterSize(w, 256<<10)}
	d, err := decodeSnapshot(src, snapshotVisitor{
		reuseKeys: true,
		failed:    func() error { return sw.err }, // stop reading once w fails
		header: func(h snapshotHeader) {
			sw.bytes([]byte(snapshotMagic))
			sw.bytes([]byte{snapshotVersion})
			sw.uvarint(index)
			sw.uvarint(uint64(len(nodes)))
			sw.uvarint(h.keyCount)
			sw.uvarint(0) // no remembered requests
			sw.uvarint(0) // no promotion marks
			sw.uvarint(0) // no history: its floor is the end of index,
			sw.uvarint(index)
			sw.uvarint(EndSeq) // so resuming from before the restore is a 410
			for _, id := range slices.Sorted(maps.Keys(nodes)) {
				sw.tag(recNode)
				sw.str(id)
				sw.str(nodes[id])
			}
		},
		key: func(it item) {
			sw.tag(recKey)
			sw.str(it.key())
			sw.str(it.value())
			sw.uvarint(index)
			sw.uvarint(index)
		},
		leaseCount:  func(n uint64) { sw.uvarint(n) },
		attachCount: func(n uint64) { sw.uvarint(n) },
		lease: func(l leaseItem) {
			l.refreshed, l.since = index, index
			sw.lease(l)
		},
		attach: func(a attachItem) { sw.attachment(a) },
	})
	if err != nil {
		return BackupInfo{}, err
	}
	if d.header.version < snapshotLeases {
		sw.uvarint(0) // no leases
		sw.uvarint(0) // no attachments
	}
	if _, err := sw.finish(); err != nil {
		return BackupInfo{}, err
	}
	return backupInfo(d), nil
}
