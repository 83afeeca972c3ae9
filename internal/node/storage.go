package node

// Storage faults: every call raft makes to the log and stable store goes
// through faultStore, and every call to the snapshot store through
// snapshotStore. They class a failed write (was anything written?), record
// it for /ready, turn the one failure raft would answer with a panic
// (saving the current term) into a clean stop, and turn a panic inside a
// store (a damaged volume) into one line and exit status 1 (storeGuard).

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

// StorageError is a failed write to the volume. Unwrap yields
// ErrStorageUnavailable when the error shows nothing was written (no space,
// read-only file system), ErrOutcomeUnknown otherwise (an I/O error may come
// after the bytes reached the disk), and the cause.
type StorageError struct {
	Op       string // "append to the log", "save the term", "write a snapshot", …
	Err      error
	NotSaved bool   // the error proves nothing was written
	Reason   string // what went wrong, for users; empty: the system error's name
}

func (e *StorageError) Error() string {
	reason := e.Reason
	if reason == "" {
		reason = errnoText(e.Err)
	}
	if e.NotSaved {
		return fmt.Sprintf("storage unavailable: could not %s (%s); nothing was applied", e.Op, reason)
	}
	return fmt.Sprintf("storage error: could not %s (%s); the write may or may not be applied", e.Op, reason)
}

// UserMessage is Error: the text names no path or Go type, so the HTTP
// layer may show it whole.
func (e *StorageError) UserMessage() string { return e.Error() }

func (e *StorageError) Unwrap() []error {
	if e.NotSaved {
		return []error{ErrStorageUnavailable, e.Err}
	}
	return []error{ErrOutcomeUnknown, e.Err}
}

// errnoText names the system error without paths or Go types, for users.
func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	if strings.Contains(err.Error(), "no space left on device") {
		return "no space left on device"
	}
	return "I/O error"
}

// nothingWritten reports whether err proves a write never reached the
// disk: the file system refused the space or the write. Other errors
// (EIO, a failed fsync) can come after the data was written.
func nothingWritten(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EROFS) {
		return true
	}
	// Some layers flatten the error chain into text.
	return strings.Contains(err.Error(), "no space left on device")
}

// ioFailure reports whether err is the file system failing (as opposed to
// raft's own sentinels or a programming error).
func ioFailure(err error) bool {
	var errno syscall.Errno
	var pathErr *os.PathError
	return errors.As(err, &errno) || errors.As(err, &pathErr) || nothingWritten(err)
}

// snapshotStore records failed snapshot writes (raft's own, on its
// threshold, and requested ones alike) in the node's storage health, and
// guards every call (storeGuard).
type snapshotStore struct {
	raft.SnapshotStore
	h *storageHealth
	g *storeGuard
}

func (s snapshotStore) Create(version raft.SnapshotVersion, index, term uint64, conf raft.Configuration,
	confIndex uint64, trans raft.Transport) (_ raft.SnapshotSink, err error) {
	defer s.g.guard("write a snapshot", &err)()
	sink, err := s.SnapshotStore.Create(version, index, term, conf, confIndex, trans)
	if err != nil {
		if ioFailure(err) {
			return nil, s.h.fail(storeSnapshot, "write a snapshot", err)
		}
		return nil, err
	}
	return &snapshotSink{SnapshotSink: sink, h: s.h, g: s.g}, nil
}

func (s snapshotStore) List() (_ []*raft.SnapshotMeta, err error) {
	defer s.g.guard("list the snapshots", &err)()
	return s.SnapshotStore.List()
}

func (s snapshotStore) Open(id string) (_ *raft.SnapshotMeta, _ io.ReadCloser, err error) {
	defer s.g.guard("open a snapshot", &err)()
	return s.SnapshotStore.Open(id)
}

type snapshotSink struct {
	raft.SnapshotSink
	h *storageHealth
	g *storeGuard
}

func (s *snapshotSink) Write(p []byte) (n int, err error) {
	defer s.g.guard("write a snapshot", &err)()
	n, err = s.SnapshotSink.Write(p)
	if err != nil && ioFailure(err) {
		return n, s.h.fail(storeSnapshot, "write a snapshot", err)
	}
	return n, err
}

func (s *snapshotSink) Close() (err error) {
	defer s.g.guard("write a snapshot", &err)()
	err = s.SnapshotSink.Close()
	if err != nil && ioFailure(err) {
		return s.h.fail(storeSnapshot, "write a snapshot", err)
	}
	return err
}

func (s *snapshotSink) Cancel() (err error) {
	defer s.g.guard("write a snapshot", &err)()
	return s.SnapshotSink.Cancel()
}

// storageHealth remembers the latest storage failure until a write
// succeeds again; /ready reports it.
type storageHealth struct {
	mu    sync.Mutex
	err   *StorageError
	since time.Time
	// last is the error of the most recent failed log append, handed from
	// the store beneath raft's LogCache (which flattens errors into text)
	// to the wrapper above it. raft appends from one goroutine at a time.
	last *StorageError
	// stopping is set once a fault made the node call fatal.
	stopping bool
	log      *logrus.Entry
	failures *prometheus.CounterVec // raftkv_storage_failures_total; nil in tests of the store alone
}

// Stores, as raftkv_storage_failures_total labels them.
const (
	storeLog      = "log"
	storeStable   = "stable"
	storeSnapshot = "snapshot"
)

func (h *storageHealth) fail(store, op string, err error) *StorageError {
	if h.failures != nil {
		h.failures.WithLabelValues(store).Inc()
	}
	se := &StorageError{Op: op, Err: err, NotSaved: nothingWritten(err)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		h.since = time.Now()
		h.log.WithError(err).WithField("op", op).Error("storage failure: writes are refused until the volume accepts them again")
	}
	h.err = se
	return se
}

func (h *storageHealth) ok() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		h.log.WithField("after", time.Since(h.since).Round(time.Millisecond)).Info("storage writes succeed again")
		h.err = nil
	}
}

func (h *storageHealth) takeLast() *StorageError {
	h.mu.Lock()
	defer h.mu.Unlock()
	se := h.last
	h.last = nil
	return se
}

// fault is the current storage failure, nil when the last write succeeded.
func (h *storageHealth) fault() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		return nil
	}
	reason := h.err.Reason
	if reason == "" {
		reason = errnoText(h.err.Err)
	}
	return storageFault(fmt.Sprintf("%v: the last write to the volume failed %s ago (%s)",
		ErrStorageUnavailable, time.Since(h.since).Round(time.Second), reason))
}

// storageFault is StorageFault's error: ErrStorageUnavailable in words fit
// for users (the HTTP layer shows a UserMessage whole).
type storageFault string

func (f storageFault) Error() string       { return string(f) }
func (f storageFault) UserMessage() string { return string(f) }
func (f storageFault) Unwrap() error       { return ErrStorageUnavailable }

// StorageFault is nil while this node's volume takes writes, else an error
// wrapping ErrStorageUnavailable that says since when it has not.
func (n *Node) StorageFault() error { return n.health.fault() }

// faultStore is the log and stable store as raft sees it. Every method
// runs under g.guard.
type faultStore struct {
	logStore
	h *storageHealth
	g *storeGuard
	// fatal stops the process: raft panics when it cannot save the term,
	// and a panic's exit status (2) is one supervisors do not restart.
	fatal func(error)
}

func (s *faultStore) FirstIndex() (_ uint64, err error) {
	defer s.g.guard("read the log", &err)()
	return s.logStore.FirstIndex()
}

func (s *faultStore) LastIndex() (_ uint64, err error) {
	defer s.g.guard("read the log", &err)()
	return s.logStore.LastIndex()
}

func (s *faultStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *faultStore) StoreLogs(logs []*raft.Log) (err error) {
	defer s.g.guard("append to the log", &err)()
	for _, l := range logs {
		sealEntry(l) // logcheck.go
	}
	if err := s.logStore.StoreLogs(logs); err != nil {
		if errors.Is(err, wal.ErrSealed) {
			return s.walStuck(err)
		}
		se := s.h.fail(storeLog, "append to the log", err)
		s.h.mu.Lock()
		s.h.last = se
		s.h.mu.Unlock()
		return se
	}
	s.h.ok()
	return nil
}

// GetLog checks the entry's checksum. A mismatch at run time stops the
// node (raft would apply the entry, or panic on the error); at the next
// start checkLog repairs or refuses the log.
func (s *faultStore) GetLog(index uint64, l *raft.Log) (err error) {
	defer s.g.guard("read the log", &err)()
	if err := s.logStore.GetLog(index, l); err != nil {
		if ioFailure(err) {
			// raft panics when it cannot read an entry it must apply.
			s.g.stop(fmt.Errorf("%w: could not read log entry %d from %s (%s)", ErrStorageUnavailable, index, s.g.file, errnoText(err)))
		}
		return err
	}
	if !entryIntact(l) {
		err := corruptEntry(index)
		s.fatal(err)
		return err
	}
	return nil
}

func (s *faultStore) DeleteRange(min, max uint64) (err error) {
	defer s.g.guard("compact the log", &err)()
	if err := s.logStore.DeleteRange(min, max); err != nil {
		return s.h.fail(storeLog, "compact the log", err)
	}
	return nil
}

func (s *faultStore) Get(key []byte) (_ []byte, err error) {
	defer s.g.guard("read "+string(key), &err)()
	return s.logStore.Get(key)
}

func (s *faultStore) GetUint64(key []byte) (_ uint64, err error) {
	defer s.g.guard("read "+string(key), &err)()
	return s.logStore.GetUint64(key)
}

func (s *faultStore) Set(key, val []byte) (err error) {
	defer s.g.guard("save "+string(key), &err)()
	if err := s.logStore.Set(key, val); err != nil {
		return s.h.fail(storeStable, "save "+string(key), err)
	}
	s.h.ok()
	return nil
}

func (s *faultStore) SetUint64(key []byte, val uint64) (err error) {
	defer s.g.guard("save "+string(key), &err)()
	if err := s.logStore.SetUint64(key, val); err != nil {
		se := s.h.fail(storeStable, "save "+string(key), err)
		if string(key) == keyCurrentTerm {
			s.fatal(se)
		}
		return se
	}
	s.h.ok()
	return nil
}

// storeGuard turns a panic inside a store into an error and, once raft
// runs, a stop. bbolt panics where a file system would answer an error: a
// page of the wrong type, a page id past the end of the file, a broken
// freelist (all of them a damaged raft.db); and a read of a mapped page
// that the file no longer holds (truncated) or the disk cannot return
// faults, which guard turns into a panic too (debug.SetPanicOnFault).
// Left alone, either kills the process with a stack trace and exit status
// 2, which the shipped systemd unit does not restart. guard logs one line
// and calls fatal (exit 1) before it returns the error, so raft, which
// panics on some read errors (applying an entry it cannot read), never
// sees it. Before raft starts (running false) the error is only returned:
// Open fails with it, and the process exits 1 the same way.
type storeGuard struct {
	file        string // the store's file or directory, for the line
	store       string // the raftkv_storage_failures_total label
	*guardState        // shared by the node's guards: one stop
}

// guardState is what a node's storeGuards share.
type guardState struct {
	running  atomic.Bool                  // raft runs: a panic stops the node
	damaged  atomic.Pointer[DamagedError] // the first panic recovered
	fatal    func(error)
	once     sync.Once
	failures *prometheus.CounterVec // nil in tests of the store alone
}

// guard is deferred as `defer g.guard(op, &err)()` at the top of every
// store method with a named error result.
func (g *storeGuard) guard(op string, err *error) func() {
	old := debug.SetPanicOnFault(true)
	return func() {
		p := recover()
		debug.SetPanicOnFault(old)
		if p == nil {
			return
		}
		de := &DamagedError{Op: op, File: g.file, Panic: fmt.Sprint(p)}
		*err = de
		if g.guardState == nil {
			return
		}
		g.damaged.CompareAndSwap(nil, de)
		if g.failures != nil {
			g.failures.WithLabelValues(g.store).Inc()
		}
		// Concurrent callers wait in stop until the first one's fatal
		// returns, which the real one never does.
		g.stop(de)
	}
}

// stop calls fatal with err once raft runs, once for the node; before,
// the caller's error fails Open.
func (g *storeGuard) stop(err error) {
	if g == nil || g.guardState == nil || !g.running.Load() {
		return
	}
	g.once.Do(func() { g.fatal(err) })
}

// DamagedError is a panic inside a store, recovered (storeGuard): the
// store's file is damaged in a way its library does not report as an
// error. It wraps ErrCorruptState and ErrStorageUnavailable.
type DamagedError struct {
	Op    string // what the node was doing: "append to the log", "read CurrentTerm", …
	File  string // the store's file or directory
	Panic string // what the library said
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("%v: could not %s: %s is damaged (%s); %s", ErrCorruptState, e.Op, e.File, e.Panic, damagedHint)
}

func (e *DamagedError) Unwrap() []error { return []error{ErrCorruptState, ErrStorageUnavailable} }

// damagedHint is what to do about a volume whose log store cannot be read.
const damagedHint = "if the other members hold the data, move this volume aside and start the node " +
	"with an empty one (leave and join it again), otherwise restore from a backup (raftkv restore --force)"

// walStuck handles raft-wal refusing an append because its segment is
// full and the next one could not be created (its background rotation
// failed, as on a full volume; raft-wal only logs "rotate error"). Nothing
// was written (the check comes before any write), so the write answers
// 503; but raft-wal never retries the rotation, so the store refuses every
// append until it is reopened. The node stops (exit 1) for its supervisor
// to restart it; the restart fails the same way until space is freed.
func (s *faultStore) walStuck(err error) error {
	se := s.h.fail(storeLog, "append to the log", err)
	s.h.mu.Lock() // se is h.err: fault reads it under the lock
	se.NotSaved = true
	se.Reason = "raft-wal could not start a new segment, most likely for lack of space"
	s.h.last = se
	first := !s.h.stopping
	s.h.stopping = true
	s.h.mu.Unlock()
	if first {
		// Not on raft's goroutine: raft first answers the write (503).
		go s.fatal(fmt.Errorf("%w: the log store accepts no more entries until the node restarts", se))
	}
	return se
}

// keyCurrentTerm is the stable-store key raft panics on when it cannot
// save it (raft.go setCurrentTerm).
const keyCurrentTerm = "CurrentTerm"

// classedLogs sits above raft's LogCache, which reports a failed append as
// text; it hands raft the StorageError instead, so an Apply future carries
// the class.
type classedLogs struct {
	raft.LogStore
	h *storageHealth
}

func (c classedLogs) StoreLog(l *raft.Log) error { return c.StoreLogs([]*raft.Log{l}) }

func (c classedLogs) StoreLogs(logs []*raft.Log) error {
	err := c.LogStore.StoreLogs(logs)
	if err != nil {
		if se := c.h.takeLast(); se != nil {
			return se
		}
	}
	return err
}

// exitOnStorageFailure is the default Config.OnFatal: one clear line, exit 1.
func exitOnStorageFailure(log *logrus.Entry) func(error) {
	return func(err error) {
		var de *DamagedError
		if errors.As(err, &de) {
			log.WithError(err).Error("cannot continue: the volume is damaged; stopping (exit 1)")
		} else {
			log.WithError(err).Error("cannot continue after a storage failure; stopping (exit 1) so the supervisor restarts the node once the volume takes writes")
		}
		os.Exit(1)
	}
}
