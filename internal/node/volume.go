package node

// The volume: the one list of what a node keeps on disk, its lock, and the
// offline restore (RestoreVolume), which rewrites a volume from a backup.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/logging"
)

// The volume (Config.Dir) holds everything a node keeps on disk. These are
// the only names node creates there; the store opener, the upload spool and
// RestoreVolume all use them.
const (
	boltFile     = "raft.db"           // LogStoreBolt: log and stable store in one bbolt file (bbolt flocks it)
	walDir       = "wal"               // LogStoreWAL: raft-wal segments and meta database
	walLockFile  = "LOCK"              // under walDir: the flock a wal store holds (see walStore)
	snapshotsDir = "snapshots"         // raft.FileSnapshotStore's directory under the volume; raft fixes the name
	uploadsDir   = "restore-uploads"   // uploaded backups spooled before a restore (UploadDir)
	corruptDir   = "snapshots-corrupt" // snapshots that failed their check at start, set aside (snapcheck.go)
)

// volumeEntries are the volume's entries node owns: RestoreVolume with
// force removes exactly these, and TestVolumeEntries checks that a node
// writes nothing else.
var volumeEntries = []string{boltFile, walDir, snapshotsDir, uploadsDir, corruptDir}

// volumeLocks are the files a running node holds an exclusive flock on,
// one per log store kind.
var volumeLocks = []string{boltFile, filepath.Join(walDir, walLockFile)}

// RestoredVolume is what RestoreVolume wrote.
type RestoredVolume struct {
	Backup  fsm.BackupInfo // the backup's keys, size and the index it was taken at
	Index   uint64         // the snapshot's index (Backup.Applied+1), every key's create and mod index
	Removed []string       // paths removed to make room (with force)
}

// RestoreVolume is the offline restore: it turns a backup (as GET /backup
// writes it) into the volume cfg.Dir of a new one-node cluster whose only
// member is cfg.ID at cfg.RaftAdvertise (HTTP address cfg.HTTPAdvertise).
// Open on that volume then starts the node with the backup's data; other
// nodes join it with empty volumes. backup is verified whole before
// anything is written. A volume that is not empty is refused with
// ErrVolumeNotEmpty unless force is set; force removes the node's state
// (volumeEntries, whatever the log store) and nothing else, and refuses a
// volume a running node holds. Removed lists what went, on error too.
func RestoreVolume(cfg Config, backup io.ReadSeeker, force bool) (RestoredVolume, error) {
	var res RestoredVolume
	if cfg.ID == "" || cfg.RaftAdvertise == "" {
		return res, errors.New("restore volume: the node id and Raft address are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = logrus.StandardLogger()
	}
	info, err := fsm.VerifyBackup(bufio.NewReaderSize(backup, 1<<20))
	if err != nil {
		return res, fmt.Errorf("not a valid backup, nothing written: %w", err)
	}
	res.Backup = info
	unlock, err := clearVolume(cfg.Dir, force, &res.Removed)
	if err != nil {
		return res, err
	}
	defer unlock()
	if _, err := backup.Seek(0, io.SeekStart); err != nil {
		return res, fmt.Errorf("rewind backup: %w", err)
	}

	// One past the backup's index, as if the cluster had gone on by one
	// entry; every key takes it as its create and mod index, as an online
	// restore does (internal/fsm/DESIGN.md).
	res.Index = info.Applied + 1
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: raft.ServerAddress(cfg.RaftAdvertise),
	}}}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, cfg.SnapshotRetain, logging.HCLog(cfg.Logger, "raft").Named("snapshot"))
	if err != nil {
		return res, fmt.Errorf("open snapshot store: %w", err)
	}
	// The transport only encodes the legacy peer list in the snapshot's
	// metadata; nothing is dialled.
	_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.RaftAdvertise))
	defer trans.Close()
	// Like raft.RecoverCluster: a snapshot whose configuration is the new
	// membership, committed at index 1, at the term the data was written in.
	sink, err := snaps.Create(raft.SnapshotVersionMax, res.Index, 1, conf, 1, trans)
	if err != nil {
		return res, fmt.Errorf("create snapshot: %w", err)
	}
	nodes := map[string]string{cfg.ID: cfg.HTTPAdvertise}
	if _, err := fsm.WriteInstall(sink, bufio.NewReaderSize(backup, 1<<20), res.Index, nodes); err != nil {
		_ = sink.Cancel()
		return res, fmt.Errorf("write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return res, fmt.Errorf("write snapshot: %w", err)
	}
	return res, nil
}

// clearVolume makes sure dir exists and holds no node state. With force it
// removes that state (and nothing else) after taking the volume's locks,
// appending each removed path to removed; unlock releases the locks.
func clearVolume(dir string, force bool, removed *[]string) (unlock func(), err error) {
	unlock = func() {}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return unlock, os.MkdirAll(dir, 0o750)
	case err != nil:
		return unlock, fmt.Errorf("volume: %w", err)
	case len(entries) == 0:
		return unlock, nil
	case !force:
		return unlock, fmt.Errorf("%w: %s", ErrVolumeNotEmpty, dir)
	}
	var held []*os.File
	unlock = func() {
		for _, f := range held {
			_ = f.Close()
		}
	}
	for _, name := range volumeLocks {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		f, err := lockFile(p, 500*time.Millisecond)
		if err != nil {
			unlock()
			return func() {}, err
		}
		held = append(held, f)
	}
	for _, name := range volumeEntries {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			unlock()
			return func() {}, fmt.Errorf("remove %s: %w", p, err)
		}
		*removed = append(*removed, p)
	}
	return unlock, nil
}

// lockFile takes an exclusive flock on path, retrying until timeout:
// another process still holding the volume is reported, not waited on forever.
func lockFile(path string, timeout time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s (is another raftkv using this volume?): %w", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
