package node

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	dto "github.com/prometheus/client_model/go"

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
