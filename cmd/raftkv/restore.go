package main

// `raftkv restore` is the offline restore for a cluster that is gone: it
// turns a backup (GET /backup) into a volume from which this node starts as
// a one-node cluster holding the backup's data. The other nodes then join
// it with empty volumes and receive the data as a snapshot.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/logging"
	"github.com/raftkv/raftkv/internal/node"
)

func (a *app) restoreCommand() *cobra.Command {
	var (
		volume        string
		force, online bool
	)
	cmd := &cobra.Command{
		Use:                   "restore [--online] [--force] [--volume DIR] FILE",
		DisableFlagsInUseLine: true,
		GroupID:               groupNode,
		Short:                 "write a backup into a volume, offline (--online: into the running cluster)",
		Long: `Offline (the default): writes the backup FILE (from raftkv backup or GET
/backup) into the volume DIR as the state of a new one-node cluster whose only
member is this node, as configured by the same environment as the server
(RAFT_NODE_ID, ADVERTISE_ADDR, RAFT_SERVER_PORT, HTTP_SERVER_PORT). Start raftkv
on that volume next, then join the other nodes with empty volumes. This is for a
cluster that has lost its quorum for good (docs/operations.md).

With --online: replaces the whole store of the running cluster on --endpoints
with the backup FILE (- reads standard input) through Raft (POST /restore), so
every node ends identical. Keys written since the backup are gone. --timeout
bounds it only when given.

Exit status: 0 done, 1 refused or failed (offline: nothing written unless it
says so), 2 bad usage or configuration.`,
		Annotations: map[string]string{annotationClient: "online"},
		Args:        exactArgs("FILE"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if online {
				if cmd.Flags().Changed("volume") || force {
					return usageError("--volume and --force are for the offline restore, not --online")
				}
				return a.onlineRestore(cmd, args[0])
			}
			if names := a.g.changedClientFlags(cmd); names != "" {
				return usageError("%s: only the online restore (--online) talks to a cluster", names)
			}
			if args[0] == "-" {
				return usageError("the offline restore reads a FILE, not standard input")
			}
			cfg, err := config.Load(a.lookup)
			if err != nil {
				fmt.Fprintf(a.stderr, "raftkv restore: configuration: %v\n", err)
				return exitCode(exitUsage)
			}
			if volume != "" {
				cfg.VolumeDir = volume
			}
			return offlineRestore(cfg, args[0], force, a.stdout, a.stderr)
		}),
	}
	cmd.Flags().StringVar(&volume, "volume", "", "offline: the node's volume (default: RAFT_VOLUME_DIR)")
	cmd.Flags().BoolVar(&force, "force", false, "offline: replace the raftkv state (raft.db or wal/, snapshots/, restore-uploads/)\nof a volume that is not empty; other files are left alone")
	cmd.Flags().BoolVar(&online, "online", false, "restore into the running cluster on --endpoints (POST /restore)")
	return cmd
}

// offlineRestore runs node.RestoreVolume on file and reports to out.
func offlineRestore(cfg config.Config, file string, force bool, out, errOut io.Writer) error {
	start := time.Now()
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	logger, err := logging.New("warn", cfg.LogFormat, errOut)
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
