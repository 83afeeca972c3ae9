package node

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/sirupsen/logrus"
)

// TestLogStoreKinds: each kind keeps what it stored across a reopen, and a
// volume holding one kind is refused by the other instead of silently
// starting an empty log beside it.
func TestLogStoreKinds(t *testing.T) {
	logger := logrus.New()
	logger.SetOutput(os.Stderr)
	logger.SetLevel(logrus.WarnLevel)
	for _, tt := range []struct{ kind, other, file string }{
		{LogStoreBolt, LogStoreWAL, boltFile},
		{LogStoreWAL, LogStoreBolt, walDir},
	} {
		t.Run(tt.kind, func(t *testing.T) {
			dir := t.TempDir()
			s, err := openLogStore(dir, tt.kind, 0, logger)
			if err != nil {
				t.Fatalf("open %s: %v", tt.kind, err)
			}
			logs := []*raft.Log{{Index: 1, Term: 1, Data: []byte("a")}, {Index: 2, Term: 1, Data: []byte("b")}}
			if err := s.StoreLogs(logs); err != nil {
				t.Fatalf("store logs: %v", err)
			}
			if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
				t.Fatalf("set term: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, tt.file)); err != nil {
				t.Fatalf("%s did not create %s: %v", tt.kind, tt.file, err)
			}

			if _, err := openLogStore(dir, tt.other, 0, logger); !errors.Is(err, ErrLogStoreMismatch) {
				t.Fatalf("open %s volume as %s: err %v, want ErrLogStoreMismatch", tt.kind, tt.other, err)
			}

			s, err = openLogStore(dir, tt.kind, 0, logger)
			if err != nil {
				t.Fatalf("reopen %s: %v", tt.kind, err)
			}
			defer s.Close()
			last, err := s.LastIndex()
			if err != nil || last != 2 {
				t.Fatalf("last index after reopen: %d, %v; want 2", last, err)
			}
			var got raft.Log
			if err := s.GetLog(2, &got); err != nil || string(got.Data) != "b" {
				t.Fatalf("log 2 after reopen: %q, %v", got.Data, err)
			}
			if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
				t.Fatalf("term after reopen: %d, %v; want 7", term, err)
			}
		})
	}
}

func TestLogStoreUnknownKind(t *testing.T) {
	if _, err := openLogStore(t.TempDir(), "sqlite", 0, logrus.New()); err == nil {
		t.Fatal("unknown kind opened")
	}
}

// TestWALVolumeHeld: a second opener of a held WAL volume fails instead of
// hanging (raft-wal opens its meta database without a lock timeout).
func TestWALVolumeHeld(t *testing.T) {
	dir := t.TempDir()
	s, err := openLogStore(dir, LogStoreWAL, 0, logrus.New())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	if s2, err := openLogStore(dir, LogStoreWAL, 0, logrus.New()); err == nil {
		s2.Close()
		t.Fatal("a held WAL volume opened twice")
	}
}
