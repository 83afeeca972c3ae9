package main

// `raftkv restore` is the offline restore for a cluster that is gone: it
// turns a backup (GET /backup) into a volume from which this node starts as
// a one-node cluster holding the backup's data. The other nodes then join
// it with empty volumes and receive the data as a snapshot.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/logging"
	"github.com/raftkv/raftkv/internal/node"
)

const restoreUsage = `usage: raftkv restore [--force] [--volume DIR] FILE

Writes the backup FILE (from GET /backup) into the volume DIR as the state
of a new one-node cluster whose only member is this node, as configured by
the same environment as the server (RAFT_NODE_ID, ADVERTISE_ADDR,
RAFT_SERVER_PORT, HTTP_SERVER_PORT). Start raftkv on that volume next, then
join the other nodes with empty volumes.

  --volume DIR  the node's volume (default: RAFT_VOLUME_DIR)
  --force       replace the raftkv state (raft.db or wal/, snapshots/,
                restore-uploads/) in a volume that is not empty; other
                files are left alone
`

// restoreMain runs the subcommand and returns the exit code: 0 done, 1
// failed (nothing written unless it says so), 2 bad usage or configuration.
func restoreMain(args []string) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {} // printed below: stdout for --help, stderr for a mistake

	volume := fs.String("volume", "", "")
	force := fs.Bool("force", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(os.Stdout, restoreUsage)
			return 0
		}
		fmt.Fprint(os.Stderr, restoreUsage)
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprint(os.Stderr, restoreUsage)
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

// offlineRestore runs node.RestoreVolume on file and reports to out.
func offlineRestore(cfg config.Config, file string, force bool, out io.Writer) error {
	start := time.Now()
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	logger, err := logging.New("warn", cfg.LogFormat, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "verifying %s ...\n", file)
	res, err := node.RestoreVolume(node.Config{
		ID:             cfg.NodeID,
		Dir:            cfg.VolumeDir,
		RaftAdvertise:  cfg.RaftAdvertise(),
		HTTPAdvertise:  cfg.HTTPAdvertise(),
		SnapshotRetain: cfg.SnapshotRetain,
		Logger:         logger,
	}, f, force)
	for _, p := range res.Removed {
		fmt.Fprintf(out, "removed %s\n", p)
	}
	switch {
	case errors.Is(err, node.ErrVolumeNotEmpty):
		return fmt.Errorf("volume %s is not empty; nothing written (pass --force to replace its raftkv state)", cfg.VolumeDir)
	case err != nil:
		return fmt.Errorf("%s: %w", file, err)
	}
	fmt.Fprintf(out, "restored %d keys (%d bytes, taken at index %d) into %s at index %d in %s\n",
		res.Backup.Keys, res.Backup.Size, res.Backup.Applied, cfg.VolumeDir, res.Index, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(out, "start node %s (raft %s, http %s) on this volume; it forms a one-node cluster, then join the others with empty volumes\n",
		cfg.NodeID, cfg.RaftAdvertise(), cfg.HTTPAdvertise())
	return nil
}
