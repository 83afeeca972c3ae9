package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	dto "github.com/prometheus/client_model/go"
	"go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/testwait"
)

// failingStore fails log appends with *failWith while it is set, as a full
// or broken volume does.
type failingStore struct {
	logStore
	failWith atomic.Pointer[error]
	failTerm atomic.Bool // also fail saving the current term
}

func (s *failingStore) StoreLogs(logs []*raft.Log) error {
	if p := s.failWith.Load(); p != nil {
		return fmt.Errorf("write /vol/raft.db: %w", *p)
	}
	return s.logStore.StoreLogs(logs)
}

func (s *failingStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *failingStore) SetUint64(key []byte, v uint64) error {
	if s.failTerm.Load() && string(key) == keyCurrentTerm {
		return syscall.ENOSPC
	}
	return s.logStore.SetUint64(key, v)
}

func openFailing(t *testing.T, store string) (*Node, *failingStore) {
	t.Helper()
	var fs *failingStore
	cfg := testConfig(t.TempDir(), store)
	cfg.wrapStore = func(s logStore) logStore {
		fs = &failingStore{logStore: s}
		return fs
	}
	return openLeader(t, cfg), fs
}

// TestFullVolumeWrite: a write whose log append fails for lack of space
// answers ErrStorageUnavailable (503: nothing applied), the node reports
// the fault, and once the volume takes writes again writes succeed, the
// refused one is absent and every acknowledged one is present.
func TestFullVolumeWrite(t *testing.T) {
	for _, store := range []string{LogStoreBolt, LogStoreWAL} {
		t.Run(store, func(t *testing.T) {
			n, fs := openFailing(t, store)
			apply(t, n, &fsm.Command{Op: fsm.OpSet, Key: "before", Value: "1"})
			if err := n.StorageFault(); err != nil {
				t.Fatalf("fault before any failure: %v", err)
			}

			enospc := error(syscall.ENOSPC)
			fs.failWith.Store(&enospc)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			_, err := n.Apply(ctx, &fsm.Command{Op: fsm.OpSet, Key: "refused", Value: "x"})
			cancel()
			if !errors.Is(err, ErrStorageUnavailable) || errors.Is(err, ErrOutcomeUnknown) {
				t.Fatalf("apply on a full volume: %v; want ErrStorageUnavailable (nothing applied)", err)
			}
			if err := n.StorageFault(); !errors.Is(err, ErrStorageUnavailable) {
				t.Fatalf("StorageFault after a failed append: %v", err)
			}
			var m dto.Metric
			if err := n.metrics.storageFailures.WithLabelValues(storeLog).Write(&m); err != nil || m.GetCounter().GetValue() < 1 {
				t.Fatalf("raftkv_storage_failures_total{store=log} = %v (%v) after a failed append", m.GetCounter().GetValue(), err)
			}

			fs.failWith.Store(nil)
			testwait.For(t, 10*time.Second, "a write after space was freed", func() error {
				ctx, cancel := context.WithTimeout(t.Context(), time.Second)
				defer cancel()
				_, err := n.Apply(ctx, &fsm.Command{Op: fsm.OpSet, Key: "after", Value: "2"})
				return err
			})
			if err := n.StorageFault(); err != nil {
				t.Fatalf("fault still reported after a successful write: %v", err)
			}
			for key, want := range map[string]string{"before": "1", "after": "2"} {
				if got, ok := linearizableGet(t, n, key); !ok || got != want {
					t.Errorf("%s = %q (found %v), want %q", key, got, ok, want)
				}
			}
			if _, ok := linearizableGet(t, n, "refused"); ok {
				t.Error("the refused write was applied")
			}
		})
	}
}

// TestFailedWriteOutcomeUnknown: an I/O error that may come after the bytes
// reached the disk is not "nothing applied": it answers ErrOutcomeUnknown.
func TestFailedWriteOutcomeUnknown(t *testing.T) {
	n, fs := openFailing(t, LogStoreBolt)
	eio := error(syscall.EIO)
	fs.failWith.Store(&eio)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := n.Apply(ctx, &fsm.Command{Op: fsm.OpSet, Key: "k", Value: "v"})
	if !errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, ErrStorageUnavailable) {
		t.Fatalf("apply with an I/O error: %v; want ErrOutcomeUnknown", err)
	}
	if err := n.StorageFault(); !errors.Is(err, ErrStorageUnavailable) {
		t.Fatalf("StorageFault after an I/O error: %v", err)
	}
}

// TestTermSaveFailureIsFatal: raft panics when it cannot save its term; the
// store stops the node through OnFatal first, so the process exits 1 with
// one line rather than 2 with a stack.
func TestTermSaveFailureIsFatal(t *testing.T) {
	inner, err := openLogStore(t.TempDir(), LogStoreBolt, 0, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	failing := &failingStore{logStore: inner}
	failing.failTerm.Store(true)
	var fatal error
	s := &faultStore{logStore: failing, h: &storageHealth{log: quietLogger().WithField("t", 1)}, fatal: func(err error) { fatal = err }}
	if err := s.SetUint64([]byte("LastVoteTerm"), 3); err != nil || fatal != nil {
		t.Fatalf("another key: err %v, fatal %v", err, fatal)
	}
	err = s.SetUint64([]byte(keyCurrentTerm), 3)
	if !errors.Is(err, ErrStorageUnavailable) || !errors.Is(fatal, ErrStorageUnavailable) {
		t.Fatalf("saving the term on a full volume: err %v, fatal %v; want both ErrStorageUnavailable", err, fatal)
	}
}

// TestWALSealedStops: raft-wal refusing appends because it could not start
// a new segment (a full volume at rotation) answers the write as not
// applied and stops the node for a restart, since raft-wal never retries.
func TestWALSealedStops(t *testing.T) {
	var fs *failingStore
	fatal := make(chan error, 1)
	cfg := testConfig(t.TempDir(), LogStoreWAL)
	cfg.OnFatal = func(err error) { fatal <- err }
	cfg.wrapStore = func(s logStore) logStore {
		fs = &failingStore{logStore: s}
		return fs
	}
	n := openLeader(t, cfg)
	sealed := error(wal.ErrSealed)
	fs.failWith.Store(&sealed)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := n.Apply(ctx, &fsm.Command{Op: fsm.OpSet, Key: "k", Value: "v"})
	if !errors.Is(err, ErrStorageUnavailable) {
		t.Fatalf("apply on a sealed WAL: %v, want ErrStorageUnavailable", err)
	}
	select {
	case err := <-fatal:
		if !errors.Is(err, wal.ErrSealed) {
			t.Fatalf("fatal: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the node did not stop on a WAL that accepts no more entries")
	}
}

// panicStore panics in every method, as bbolt does on a damaged page.
type panicStore struct{ logStore }

func (panicStore) FirstIndex() (uint64, error)      { panic("invalid page type: 7: 0") }
func (panicStore) LastIndex() (uint64, error)       { panic("invalid page type: 7: 0") }
func (panicStore) GetLog(uint64, *raft.Log) error   { panic("invalid page type: 7: 0") }
func (panicStore) StoreLogs([]*raft.Log) error      { panic("invalid page type: 7: 0") }
func (panicStore) DeleteRange(uint64, uint64) error { panic("invalid page type: 7: 0") }
func (panicStore) Set([]byte, []byte) error         { panic("invalid page type: 7: 0") }
func (panicStore) Get([]byte) ([]byte, error)       { panic("invalid page type: 7: 0") }
func (panicStore) SetUint64([]byte, uint64) error   { panic("invalid page type: 7: 0") }
func (panicStore) GetUint64([]byte) (uint64, error) { panic("invalid page type: 7: 0") }
func (panicStore) Close() error                     { return nil }

// panicSnapshots panics in every method of the snapshot store.
type panicSnapshots struct{ raft.SnapshotStore }

func (panicSnapshots) Create(raft.SnapshotVersion, uint64, uint64, raft.Configuration, uint64, raft.Transport) (raft.SnapshotSink, error) {
	panic("snapshot store panicked")
}
func (panicSnapshots) List() ([]*raft.SnapshotMeta, error) { panic("snapshot store panicked") }
func (panicSnapshots) Open(string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	panic("snapshot store panicked")
}

// TestStorePanicIsFatal: a panic inside the log, stable or snapshot store
// (bbolt on a damaged page) comes back as a DamagedError, classed as
// ErrCorruptState and ErrStorageUnavailable, and once raft runs it calls
// the fatal callback (exit 1) exactly once, before raft sees the error.
// Before raft runs, only the error: Open fails with it.
func TestStorePanicIsFatal(t *testing.T) {
	var fatals []error
	gs := &guardState{fatal: func(err error) { fatals = append(fatals, err) }}
	h := &storageHealth{log: quietLogger().WithField("t", 1)}
	fs := &faultStore{logStore: panicStore{}, h: h, g: &storeGuard{file: "/vol/raft.db", store: storeLog, guardState: gs},
		fatal: func(err error) { t.Fatalf("the checksum/term fatal path was taken: %v", err) }}
	ss := snapshotStore{SnapshotStore: panicSnapshots{}, h: h, g: &storeGuard{file: "/vol/snapshots", store: storeSnapshot, guardState: gs}}
	calls := map[string]func() error{
		"FirstIndex":  func() error { _, err := fs.FirstIndex(); return err },
		"LastIndex":   func() error { _, err := fs.LastIndex(); return err },
		"GetLog":      func() error { return fs.GetLog(1, &raft.Log{}) },
		"StoreLog":    func() error { return fs.StoreLog(&raft.Log{Index: 1}) },
		"StoreLogs":   func() error { return fs.StoreLogs([]*raft.Log{{Index: 1}}) },
		"DeleteRange": func() error { return fs.DeleteRange(1, 2) },
		"Set":         func() error { return fs.Set([]byte("k"), []byte("v")) },
		"Get":         func() error { _, err := fs.Get([]byte("k")); return err },
		"SetUint64":   func() error { return fs.SetUint64([]byte(keyCurrentTerm), 1) },
		"GetUint64":   func() error { _, err := fs.GetUint64([]byte(keyCurrentTerm)); return err },
		"snapshot Create": func() error {
			_, err := ss.Create(raft.SnapshotVersionMax, 1, 1, raft.Configuration{}, 1, nil)
			return err
		},
		"snapshot List": func() error { _, err := ss.List(); return err },
		"snapshot Open": func() error { _, _, err := ss.Open("x"); return err },
	}
	check := func(name string, err error) {
		t.Helper()
		var de *DamagedError
		if !errors.As(err, &de) || !errors.Is(err, ErrCorruptState) || !errors.Is(err, ErrStorageUnavailable) {
			t.Errorf("%s on a panicking store: %v, want a DamagedError", name, err)
			return
		}
		if de.File == "" || !strings.Contains(err.Error(), "restore from a backup") {
			t.Errorf("%s: %q names no file or no remedy", name, err)
		}
		if debug.SetPanicOnFault(false) {
			t.Errorf("%s left SetPanicOnFault on for the caller's goroutine", name)
		}
	}
	for name, call := range calls { // before raft runs: an error, no stop
		check(name, call())
	}
	if len(fatals) != 0 {
		t.Fatalf("fatal called before raft runs: %v", fatals)
	}
	gs.running.Store(true)
	for name, call := range calls {
		check(name, call())
	}
	if len(fatals) != 1 {
		t.Fatalf("fatal called %d times, want once: %v", len(fatals), fatals)
	}
	if !errors.Is(fatals[0], ErrCorruptState) {
		t.Fatalf("fatal: %v, want ErrCorruptState", fatals[0])
	}
}

// TestScanBoltDamagedPage: a bbolt file with one page header damaged (its
// type cleared) does not open: the scan reports the damage as an error,
// where bbolt's own open (with NoFreelistSync) panics on a goroutine of
// its own and kills the process with exit status 2.
func TestScanBoltDamagedPage(t *testing.T) {
	dir := t.TempDir()
	s, err := openLogStore(dir, LogStoreBolt, 0, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := range 2000 {
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Term: 1, Data: bytes.Repeat([]byte("v"), 100)})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, boltFile)
	if err := scanBolt(path); err != nil {
		t.Fatalf("scan of an intact file: %v", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var root uint64
	_ = db.View(func(tx *bbolt.Tx) error {
		root = uint64(tx.Bucket([]byte("logs")).Root())
		return nil
	})
	pageSize := db.Info().PageSize
	_ = db.Close()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A page header is id (8 bytes), flags (2), count (2), overflow (4).
	if _, err := f.WriteAt([]byte{0, 0}, int64(root)*int64(pageSize)+8); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	_, err = openLogStore(dir, LogStoreBolt, 0, quietLogger())
	var de *DamagedError
	if !errors.As(err, &de) || !errors.Is(err, ErrCorruptState) || !strings.Contains(err.Error(), "restore from a backup") {
		t.Fatalf("open of a file with a damaged page: %v, want a DamagedError", err)
	}
	t.Logf("open: %v", err)
}

// panicReader panics on Read, as a snapshot decoder meeting bytes it does
// not expect might.
type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("index out of range") }
func (panicReader) Close() error             { return nil }

// TestFSMRestorePanicIsError: a panic while the FSM restores a snapshot
// fails the restore with ErrCorruptState (raft answers a failed install
// with an error) and is reported to restoreFailed, which stops the node
// during an online restore (raft panics on that path).
func TestFSMRestorePanicIsError(t *testing.T) {
	var reported error
	f := instrumentedFSM{FSM: fsm.New(), m: newMetrics(), restoreFailed: func(err error) { reported = err }}
	err := f.Restore(panicReader{})
	if !errors.Is(err, ErrCorruptState) || reported != err {
		t.Fatalf("restore that panics: %v (reported %v), want ErrCorruptState reported", err, reported)
	}
}

// readFailStore answers every GetLog with err.
type readFailStore struct {
	logStore
	err error
}

func (s readFailStore) GetLog(uint64, *raft.Log) error { return s.err }

// TestLogReadErrorIsFatal: an I/O error reading a log entry stops the node
// once raft runs (raft panics when it cannot read an entry it must
// apply); a missing entry (raft.ErrLogNotFound, which raft handles by
// sending a snapshot) does not.
func TestLogReadErrorIsFatal(t *testing.T) {
	for _, tt := range []struct {
		err   error
		fatal bool
	}{
		{&os.PathError{Op: "read", Path: "/vol/wal/00001.wal", Err: syscall.EIO}, true},
		{raft.ErrLogNotFound, false},
	} {
		var fatal error
		gs := &guardState{fatal: func(err error) { fatal = err }}
		gs.running.Store(true)
		fs := &faultStore{logStore: readFailStore{err: tt.err}, h: &storageHealth{log: quietLogger().WithField("t", 1)},
			g: &storeGuard{file: "/vol/wal", store: storeLog, guardState: gs}}
		if err := fs.GetLog(7, &raft.Log{}); !errors.Is(err, tt.err) {
			t.Errorf("GetLog: %v, want %v", err, tt.err)
		}
		if got := fatal != nil; got != tt.fatal {
			t.Errorf("%v: fatal %v, want fatal %v", tt.err, fatal, tt.fatal)
		}
		if tt.fatal && !errors.Is(fatal, ErrStorageUnavailable) {
			t.Errorf("fatal: %v, want ErrStorageUnavailable", fatal)
		}
	}
}
