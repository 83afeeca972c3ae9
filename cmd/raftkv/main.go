// Command raftkv runs one node of a replicated key-value store. It is
// configured by environment variables (see docs); with none set it
// serves a single-node store on 127.0.0.1:8000. The node itself is
// assembled and stopped by internal/server; this file reads the
// environment, handles signals and chooses the exit code.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/logging"
	"github.com/raftkv/raftkv/internal/server"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "healthcheck": // healthcheck.go
			os.Exit(healthcheck(os.Args[2:], os.LookupEnv, os.Stdout, os.Stderr))
		case "restore": // restore.go
			os.Exit(restoreMain(os.Args[2:]))
		}
	}
	// Help, version and unknown arguments exit before anything starts.
	if code, exit := command(os.Args[1:], os.Stdout, os.Stderr); exit {
		os.Exit(code)
	}
	cfg, err := config.Load(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "raftkv: configuration: %v\n", err)
		os.Exit(2)
	}
	logger, err := logging.New(cfg.LogLevel, cfg.LogFormat, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "raftkv: logging: %v\n", err)
		os.Exit(2)
	}
	// Catch the signals before the node starts, so one sent while it
	// starts waits for it rather than taking the default action (SIGHUP's
	// would kill the process, also with authentication off).
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)

	srv, err := server.Start(cfg, server.WithLogger(logger))
	if err != nil {
		logger.WithError(err).Error("raftkv stopped")
		os.Exit(1)
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
		os.Exit(1)
	}
}
