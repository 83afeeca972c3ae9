package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/logging"
	"github.com/raftkv/raftkv/internal/server"
)

func (a *app) serveCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "serve",
		GroupID: groupNode,
		Short:   "run the node (what raftkv with no command does)",
		Long: `Runs one node of the store, configured by environment variables only
(docs/configuration.md; the main ones are listed by raftkv --help). It takes no
flags. Exit status: 0 after a graceful stop (SIGTERM, SIGINT), 1 on a failure,
2 on a configuration error (docs/operations.md).`,
		Args: noArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().NFlag() > 0 {
				return usageError("serve takes no flags (%s): the node is configured by environment variables", setFlags(cmd))
			}
			return a.node()
		}),
	}
}

// serve runs the node until SIGTERM or SIGINT and returns its exit status
// as an exitErr (nil: 0): 1 when it failed, 2 for a configuration error.
// Errors are logged or printed here, so the exitErr is quiet.
func (a *app) serve() error {
	cfg, err := config.Load(a.lookup)
	if err != nil {
		fmt.Fprintf(a.stderr, "raftkv: configuration: %v\n", err)
		return exitCode(2)
	}
	logger, err := logging.New(cfg.LogLevel, cfg.LogFormat, a.stderr)
	if err != nil {
		fmt.Fprintf(a.stderr, "raftkv: logging: %v\n", err)
		return exitCode(2)
	}
	// Catch the signals before the node starts, so one sent while it
	// starts waits for it rather than taking the default action (SIGHUP's
	// would kill the process, also with authentication off).
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	srv, err := server.Start(cfg, server.WithLogger(logger))
	if err != nil {
		logger.WithError(err).Error("raftkv stopped")
		return exitCode(1)
	}
	for running := true; running; {
		select {
		case <-hup:
			_ = srv.ReloadTokens() // logged either way
		case <-ctx.Done():
			logger.WithField("timeout", cfg.ShutdownTimeout).Info("shutting down")
			running = false
		case <-srv.Failed():
			running = false
		}
	}
	// A second SIGINT or SIGTERM now ends the process at once (Go's
	// default action); SHUTDOWN_TIMEOUT bounds the graceful stop.
	stop()
	if err := srv.Stop(context.Background(), cfg.LeaveOnTerminate); err != nil {
		logger.WithError(err).Error("raftkv stopped")
		return exitCode(1)
	}
	return nil
}
