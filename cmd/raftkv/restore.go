package main

// `raftkv restore` is the offline restore for a cluster that is gone: it
// turns a backup (GET /backup) into a volume from which this node starts as
// a one-node cluster holding the backup's data. The other nodes then join
// it with empty volumes and receive the data as a snapshot.

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/logging"
)

const restoreUsage = `usage: raftkv restore [--force] [--volume DIR] FILE

Writes the backup FILE (from GET /backup) into the volume DIR as the state
of a new one-node cluster whose only member is this node, as configured by
the same environment as the server (RAFT_NODE_ID, ADVERTISE_ADDR,
RAFT_SERVER_PORT, HTTP_SERVER_PORT). Start raftkv on that volume next, then
join the other nodes with empty volumes.

  --volume DIR  the node's volume (default: RAFT_VOLUME_DIR)
  --force       replace the raftkv state (raft.db, snapshots/) in a
                volume that is not empty
`

// volumeEntries are the files and directories a node keeps in its volume;
// --force removes exactly these.
var volumeEntries = []string{"raft.db", "snapshots", "restore-uploads"}

// restoreMain runs the subcommand and returns the exit code: 0 done, 1
// failed (nothing written unless it says so), 2 bad usage or configuration.
func restoreMain(args []string) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() { fmt.Fprint(os.Stderr, restoreUsage) }
	volume := fs.String("volume", "", "")
	force := fs.Bool("force", false, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "raftkv restore: configuration: %v\n", err)
		return 2
	}
	if *volume != "" {
		cfg.VolumeDir = *volume
	}
	if err := offlineRestore(cfg, fs.Arg(0), *force, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "raftkv restore: %v\n", err)
		return 1
	}
	return 0
}

func offlineRestore(cfg config.Config, file string, force bool, out io.Writer) error {
	start := time.Now()
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(out, "verifying %s ...\n", file)
	info, err := fsm.VerifyBackup(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return fmt.Errorf("%s is not a valid backup, nothing written: %w", file, err)
	}
	if err := prepareVolume(cfg.VolumeDir, force, out); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}

	// One past the backup's index, as if the cluster had gone on by one
	// entry; every key takes it as its create and mod index, as an online
	// restore does (internal/fsm/DESIGN.md).
	index := info.Applied + 1
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(cfg.NodeID), Address: raft.ServerAddress(cfg.RaftAdvertise()),
	}}}
	logger, err := logging.New("warn", cfg.LogFormat, os.Stderr)
	if err != nil {
		return err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.VolumeDir, cfg.SnapshotRetain, logging.HCLog(logger, "raft").Named("snapshot"))
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	// The transport only encodes the legacy peer list in the snapshot's
	// metadata; nothing is dialled.
	_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.RaftAdvertise()))
	defer trans.Close()
	// Like raft.RecoverCluster: a snapshot whose configuration is the new
	// membership, committed at index 1, at the term the data was written in.
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, 1, conf, 1, trans)
	if err != nil {
		return fmt.Errorf("create snapshot: %w", err)
	}
	nodes := map[string]string{cfg.NodeID: cfg.HTTPAdvertise()}
	if _, err := fsm.WriteInstall(sink, bufio.NewReaderSize(f, 1<<20), index, nodes); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	fmt.Fprintf(out, "restored %d keys (%d bytes, taken at index %d) into %s at index %d in %s\n",
		info.Keys, info.Size, info.Applied, cfg.VolumeDir, index, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(out, "start node %s (raft %s, http %s) on this volume; it forms a one-node cluster, then join the others with empty volumes\n",
		cfg.NodeID, cfg.RaftAdvertise(), cfg.HTTPAdvertise())
	return nil
}

// prepareVolume makes sure dir exists and holds no raftkv state; with
// force, it removes that state (and nothing else).
func prepareVolume(dir string, force bool, out io.Writer) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return os.MkdirAll(dir, 0o750)
	case err != nil:
		return fmt.Errorf("volume: %w", err)
	case len(entries) == 0:
		return nil
	case !force:
		return fmt.Errorf("volume %s is not empty; nothing written (pass --force to replace its raftkv state)", dir)
	}
	for _, name := range volumeEntries {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("--force: remove %s: %w", p, err)
		}
		fmt.Fprintf(out, "removed %s\n", p)
	}
	return nil
}
