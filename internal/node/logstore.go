package node

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/sirupsen/logrus"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/raftkv/raftkv/internal/logging"
)

// Log store kinds (RAFT_LOG_STORE).
const (
	// LogStoreBolt keeps the log and stable store in one bbolt file,
	// raft.db. It is the default: raft-boltdb is the long-proven store.
	LogStoreBolt = "boltdb"
	// LogStoreWAL keeps them in hashicorp/raft-wal segment files under wal/.
	// One fsync per append instead of bbolt's two roughly halves the disk
	// latency of every commit (BENCHMARKS.md).
	LogStoreWAL = "wal"
)

// logStore is a Raft log plus stable store in one.
type logStore interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// existingLogStore reports which kind of log dir already holds, "" if none.
func existingLogStore(dir string) (string, error) {
	_, boltErr := os.Stat(filepath.Join(dir, boltFile))
	walEntries, walErr := os.ReadDir(filepath.Join(dir, walDir))
	hasBolt := boltErr == nil
	hasWAL := walErr == nil && len(walEntries) > 0
	switch {
	case hasBolt && hasWAL:
		return "", fmt.Errorf("%w: both %s and %s/ exist in %s", ErrLogStoreMismatch, boltFile, walDir, dir)
	case hasBolt:
		return LogStoreBolt, nil
	case hasWAL:
		return LogStoreWAL, nil
	}
	return "", nil
}

// openLogStore opens the log of the given kind under dir ("" means the
// default), refusing a volume that holds the other kind.
func openLogStore(dir, kind string, walSegmentSize int, logger *logrus.Logger) (logStore, error) {
	if kind == "" {
		kind = LogStoreBolt
	}
	found, err := existingLogStore(dir)
	if err != nil {
		return nil, err
	}
	if found != "" && found != kind {
		return nil, fmt.Errorf("%w: %s holds a %q log but the store is %q; keep RAFT_LOG_STORE=%s, or move the data with /backup and /restore",
			ErrLogStoreMismatch, dir, found, kind, found)
	}
	switch kind {
	case LogStoreBolt:
		path := filepath.Join(dir, boltFile)
		if found != "" {
			if err := scanBolt(path); err != nil {
				var de *DamagedError
				if errors.As(err, &de) {
					return nil, err // names the file and what to do
				}
				return nil, fmt.Errorf("open raft log %s: %w%s", path, err, unreadableHint(err))
			}
		}
		// NoFreelistSync with the map freelist stops bbolt from rewriting its
		// whole free-page list on every commit, which otherwise halves write
		// throughput for good after the first log compaction.
		s, err := raftboltdb.New(raftboltdb.Options{
			Path: path,
			BoltOptions: &bbolt.Options{
				Timeout:        2 * time.Second, // another process holding the volume
				NoFreelistSync: true,
				FreelistType:   bbolt.FreelistMapType,
			},
		})
		if err != nil {
			return nil, fmt.Errorf("open raft log %s: %w%s", path, err, unreadableHint(err))
		}
		return s, nil
	case LogStoreWAL:
		path := filepath.Join(dir, walDir)
		if err := os.MkdirAll(path, 0o750); err != nil {
			return nil, fmt.Errorf("create raft log dir: %w", err)
		}
		return openWAL(path, walSegmentSize, logger)
	}
	return nil, fmt.Errorf("unknown log store %q (want %q or %q)", kind, LogStoreBolt, LogStoreWAL)
}

// logStorePath is the file (bbolt) or directory (raft-wal) of the log
// store of the given kind under dir.
func logStorePath(dir, kind string) string {
	if kind == LogStoreWAL {
		return filepath.Join(dir, walDir)
	}
	return filepath.Join(dir, boltFile)
}

// scanBolt reads every page of the bbolt file at path that a cursor
// reaches (every branch and leaf page of every bucket), read-only and on
// this goroutine, before the store opens it for writing. With
// NoFreelistSync, bbolt's writable open walks the same pages to rebuild
// its freelist on a goroutine of its own, where a damaged page (a wrong
// type or id in its header) panics beyond any recover: the process would
// die with a stack trace and exit status 2. Here the same panic, or a
// fault reading a page past the end of a truncated file, becomes a
// *DamagedError. The walk touches keys only, not the values' overflow
// pages; checkLog reads the values next.
func scanBolt(path string) (err error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if p := recover(); p != nil {
			err = &DamagedError{Op: "read the log", File: path, Panic: fmt.Sprint(p)}
		}
	}()
	return db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bbolt.Bucket) error {
			walkBucket(b, 0)
			return nil
		})
	})
}

// walkBucket visits every key of b and of its nested buckets, down to a
// bounded depth (raft-boltdb nests none).
func walkBucket(b *bbolt.Bucket, depth int) {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil && depth < 4 {
			if child := b.Bucket(k); child != nil {
				walkBucket(child, depth+1)
			}
		}
	}
}

// walStore is a raft-wal log that also releases what WAL.Close leaves
// open: raft-wal v0.4.0 never closes its bbolt meta database, so the
// volume would stay locked until the process exits (an in-process restart
// would hang opening it), and it opens that database without a lock
// timeout, so a second process on the same volume would hang rather than
// fail. A lock file of our own, taken with a deadline, covers the latter.
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
	lock *os.File
}

func openWAL(dir string, segmentSize int, logger *logrus.Logger) (*walStore, error) {
	lock, err := lockFile(filepath.Join(dir, walLockFile), 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", dir, err)
	}
	meta := &metadb.BoltMetaDB{}
	if segmentSize <= 0 {
		segmentSize = wal.DefaultSegmentSize
	}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentSize(segmentSize),
		wal.WithLogger(logging.HCLog(logger, "raft-wal")))
	if err != nil {
		_ = meta.Close()
		_ = lock.Close()
		return nil, fmt.Errorf("open raft log %s: %w%s", dir, err, unreadableHint(err))
	}
	return &walStore{WAL: w, meta: meta, lock: lock}, nil
}

// Close closes the log, its meta database and the volume lock.
func (s *walStore) Close() error {
	err := s.WAL.Close()
	return errors.Join(err, s.meta.Close(), s.lock.Close())
}

// unreadableHint says what to do about a log store that does not open for
// a reason other than another process holding it.
func unreadableHint(err error) string {
	if errors.Is(err, bolterrors.ErrTimeout) || errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
		return ""
	}
	if nothingWritten(err) {
		return "; the volume is full or read-only: free space and start the node again"
	}
	return "; the log store is unreadable: " + damagedHint
}
