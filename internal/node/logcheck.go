package node

// Log entry checksums. Neither log store checks an entry's bytes when it
// reads them back (bbolt has no page checksums; raft-wal checks only the
// tail it recovers), so a flipped byte in a stored value would be applied
// as if it had been written. Every entry this node stores carries a
// CRC-32C of its index, term, type and data in raft's Extensions field;
// reading an entry whose sum does not match is a corrupt log.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/hashicorp/raft"
	"github.com/sirupsen/logrus"
)

// sumTag starts the Extensions of an entry that carries our checksum.
// Entries written before checksums (or with other extensions) have none and
// are not checked.
const sumTag = "rkv\x01"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func entrySum(l *raft.Log) []byte {
	var hdr [17]byte
	binary.BigEndian.PutUint64(hdr[0:], l.Index)
	binary.BigEndian.PutUint64(hdr[8:], l.Term)
	hdr[16] = byte(l.Type)
	c := crc32.Update(0, castagnoli, hdr[:])
	c = crc32.Update(c, castagnoli, l.Data)
	out := make([]byte, len(sumTag)+4)
	copy(out, sumTag)
	binary.BigEndian.PutUint32(out[len(sumTag):], c)
	return out
}

// sealEntry sets l's checksum, unless l carries extensions of another kind.
func sealEntry(l *raft.Log) {
	if len(l.Extensions) == 0 || bytes.HasPrefix(l.Extensions, []byte(sumTag)) {
		l.Extensions = entrySum(l)
	}
}

// entryIntact reports whether l matches its checksum (true without one).
func entryIntact(l *raft.Log) bool {
	if !bytes.HasPrefix(l.Extensions, []byte(sumTag)) {
		return true
	}
	return bytes.Equal(l.Extensions, entrySum(l))
}

// corruptEntry is the error for entry i failing its checksum.
func corruptEntry(i uint64) error {
	return fmt.Errorf("%w: log entry %d does not match its checksum", ErrCorruptState, i)
}

// checkLog reads the whole log before raft starts. At the first entry that
// fails its checksum (or cannot be read), a node whose configuration names
// another voter drops that entry and all after it, as raft does with a
// conflicting suffix, and the leader sends them again; the only voter
// refuses to start (ErrCorruptState). dropped, when not empty, says which
// entries were dropped (then the node starts with its vote held).
func checkLog(id string, logs logStore, snapConf *raft.Configuration, log *logrus.Entry) (dropped string, err error) {
	first, last, err := logBounds(logs)
	if err != nil {
		return "", err
	}
	if last == 0 {
		return "", nil
	}
	bad := uint64(0)
	var why error
	var conf *raft.Configuration
	if snapConf != nil {
		c := *snapConf
		conf = &c
	}
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			bad, why = i, fmt.Errorf("%w: log entry %d cannot be read: %v", ErrCorruptState, i, err)
			break
		}
		if !entryIntact(&l) {
			bad, why = i, corruptEntry(i)
			break
		}
		if l.Type == raft.LogConfiguration {
			if c, ok := decodeConfiguration(l.Data); ok {
				conf = &c
			}
		}
	}
	if bad == 0 {
		return "", nil
	}
	term, _ := logs.GetUint64([]byte(keyCurrentTerm))
	if conf == nil || !hasOtherVoter(*conf, id) || term == 0 {
		return "", fmt.Errorf("%w, and no other voter holds a copy; restore this node from a backup (raftkv restore --force)", why)
	}
	if err := logs.DeleteRange(bad, last); err != nil {
		return "", fmt.Errorf("%w; dropping entries %d-%d failed: %w", why, bad, last, err)
	}
	log.WithError(why).WithField("dropped", fmt.Sprintf("%d-%d", bad, last)).
		Error("log entry is corrupt; dropped it and the entries after it, the leader sends them again")
	return fmt.Sprintf("dropped log entries %d-%d (entry %d is corrupt)", bad, last, bad), nil
}

// logBounds is the log's first and last index (0, 0 when it is empty).
func logBounds(logs logStore) (first, last uint64, err error) {
	if first, err = logs.FirstIndex(); err != nil {
		return 0, 0, fmt.Errorf("read the log's first index: %w", err)
	}
	if last, err = logs.LastIndex(); err != nil {
		return 0, 0, fmt.Errorf("read the log's last index: %w", err)
	}
	return first, last, nil
}
