package node

// Snapshots of the replicated state: taking one now (Snapshot) and the
// online restore, which installs a backup as a snapshot on the leader.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/fsm"
)

// Snapshot asks raft for a snapshot now. created is false when nothing was
// applied since the last one.
func (n *Node) Snapshot(ctx context.Context) (index uint64, created bool, err error) {
	// raft refuses only when nothing was applied since this process
	// started; otherwise it writes a duplicate of the latest snapshot.
	if last := parseUint(n.raft.Stats()["last_snapshot_index"]); last > 0 && last >= n.fsm.AppliedIndex() {
		return last, false, nil
	}
	f := n.raft.Snapshot()
	err = await(ctx, f)
	switch {
	case errors.Is(err, raft.ErrNothingNewToSnapshot):
		return parseUint(n.raft.Stats()["last_snapshot_index"]), false, nil
	case err != nil && nothingWritten(err):
		// raft reports the sink's error as text; the snapshot was cancelled
		// and no state changed.
		return 0, false, fmt.Errorf("snapshot: %w", &StorageError{Op: "write a snapshot", Err: err, NotSaved: true})
	case err != nil:
		return 0, false, mapRaftError("snapshot", err)
	}
	meta, rc, err := f.Open()
	if err != nil {
		return 0, true, fmt.Errorf("open new snapshot: %w", err)
	}
	_ = rc.Close()
	return meta.Index, true, nil
}

// restoreIndexSlack is how far past the log's last index a restore is
// installed. raft installs a user snapshot at max(last index, meta index)+1,
// and the install stream must name that index before raft reads it (every
// key's create and mod index becomes it). Entries appended between reading
// the last index and raft's main loop taking the restore would push raft's
// choice up; the slack absorbs them. raft appends at most one batch (≤ 64
// entries with BatchApplyCh) per loop turn, so 4096 needs dozens of turns
// that all lose a coin toss to the waiting restore. Restore checks the
// outcome anyway.
const restoreIndexSlack = 4096

// restoreState serialises restores and owns the upload directory.
type restoreState struct {
	mu       sync.Mutex  // held while a restore runs
	online   atomic.Bool // raft.Restore runs (onlineRestoreFailed)
	dirOnce  sync.Once
	dir      string
	dirError error
}

// UploadDir is a directory under the volume for spooling uploaded backups.
// The first call of a process empties it: files left there belong to
// uploads a crash interrupted.
func (n *Node) UploadDir() (string, error) {
	st := &n.restore
	st.dirOnce.Do(func() {
		st.dir = filepath.Join(n.cfg.Dir, uploadsDir)
		if err := os.RemoveAll(st.dir); err != nil {
			st.dirError = fmt.Errorf("clear %s: %w", st.dir, err)
			return
		}
		if err := os.MkdirAll(st.dir, 0o750); err != nil {
			st.dirError = fmt.Errorf("create %s: %w", st.dir, err)
		}
	})
	return st.dir, st.dirError
}

// RestoreResult is the outcome of a restore.
type RestoreResult struct {
	// Index is the first log index at which reads see the restored data:
	// the leader's registration right after the install (or the install
	// itself if that registration failed).
	Index uint64 `json:"index"`
	// SnapshotIndex is the index the backup was installed at; every
	// restored key has it as its create and mod index.
	SnapshotIndex uint64 `json:"snapshot_index"`
	Keys          uint64 `json:"keys"`
}

// Restore replaces the whole replicated state with the backup read from
// src, which the caller has verified (info is fsm.VerifyBackup's answer).
// It runs on the leader: raft writes the install stream as a snapshot
// here, restores the FSM from it, and followers install it when
// replication meets the gap in the log. Nothing changes unless the whole
// stream reaches raft intact. Writes in flight when it runs fail with an
// unknown outcome (raft aborts them); reads after it see only the backup.
func (n *Node) Restore(ctx context.Context, src io.ReadSeeker, info fsm.BackupInfo) (RestoreResult, error) {
	if n.raft.State() != raft.Leader {
		return RestoreResult{}, ErrNotLeader
	}
	st := &n.restore
	if !st.mu.TryLock() {
		return RestoreResult{}, ErrRestoreInProgress
	}
	defer st.mu.Unlock()
	// An established leader has committed its configuration and its
	// registration, so raft will not refuse for a pending change.
	if err := n.waitReady(ctx); err != nil {
		return RestoreResult{}, err
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return RestoreResult{}, fmt.Errorf("rewind backup: %w", err)
	}

	// The live address table goes into the snapshot: the backup's own
	// names the nodes of the cluster it came from.
	nodes := n.fsm.Nodes()
	metaIndex := n.raft.LastIndex() + restoreIndexSlack
	index := metaIndex + 1
	meta := &raft.SnapshotMeta{
		Version: raft.SnapshotVersionMax,
		Index:   metaIndex,
		Size:    fsm.InstallSize(info, index, nodes),
	}
	log := n.log.WithFields(logrus.Fields{"keys": info.Keys, "bytes": info.Size, "index": index})
	log.Info("restoring a backup")

	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		_, err := fsm.WriteInstall(pw, src, index, nodes)
		pw.CloseWithError(err) // nil: raft reads EOF
		written <- err
	}()
	st.online.Store(true)
	err := n.raft.Restore(meta, pr, timeLeft(ctx))
	st.online.Store(false)
	// raft may stop reading early (timeout, shutdown); unblock the writer.
	pr.CloseWithError(errors.New("restore ended"))
	if werr := <-written; werr != nil && err != nil {
		err = fmt.Errorf("%w (writing the install stream: %v)", err, werr)
	}
	if err != nil {
		log.WithError(err).Warn("restore failed")
		if strings.Contains(err.Error(), "cannot restore snapshot now") {
			// raft refuses while a configuration change is uncommitted.
			return RestoreResult{}, fmt.Errorf("restore: %w (%v)", ErrUnavailable, err)
		}
		if nothingWritten(err) {
			// The snapshot sink failed before raft changed anything.
			return RestoreResult{}, fmt.Errorf("restore: %w", &StorageError{Op: "write the restored snapshot", Err: err, NotSaved: true})
		}
		return RestoreResult{}, mapRaftError("restore", err)
	}
	if got := parseUint(n.raft.Stats()["last_snapshot_index"]); got != index {
		// Not expected (see restoreIndexSlack). Keys then carry an index
		// below the snapshot's, still above every index acknowledged
		// before the restore, so compare-and-set stays sound.
		log.WithField("snapshot_index", got).Error("restore installed at an unexpected index")
	}

	res := RestoreResult{Index: index, SnapshotIndex: index, Keys: info.Keys}
	// The FSM does not see the no-op raft commits after a restore, so a
	// linearizable read would wait for the next command; registering now
	// is that command, and refreshes this node's address too.
	reg, err := n.Apply(ctx, &fsm.Command{Op: fsm.OpRegisterNode, NodeID: n.cfg.ID, HTTPAddr: n.cfg.HTTPAdvertise})
	if err != nil {
		log.WithError(err).Warn("restored, but the registration after it failed; reads wait for the next write")
	} else {
		res.Index = reg.Index
	}
	log.WithField("read_index", res.Index).Info("backup restored")
	return res, nil
}
