// Command raftkv runs one node of a replicated key-value store. It is
// configured by environment variables (see README.md); with none set it
// serves a single-node store on 127.0.0.1:8000.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/httpapi"
	"github.com/raftkv/raftkv/internal/logging"
	"github.com/raftkv/raftkv/internal/node"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "restore" {
		os.Exit(restoreMain(os.Args[2:])) // restore.go
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
	if err := run(cfg, logger); err != nil {
		logger.WithError(err).Error("raftkv stopped")
		os.Exit(1)
	}
}

func run(cfg config.Config, logger *logrus.Logger) error {
	// Listen first so a port clash fails before any Raft state is touched.
	ln, err := net.Listen("tcp", cfg.HTTPBind())
	if err != nil {
		return fmt.Errorf("listen for http: %w", err)
	}
	n, err := node.Open(node.Config{
		ID:                cfg.NodeID,
		Dir:               cfg.VolumeDir,
		RaftBind:          cfg.RaftBind(),
		RaftAdvertise:     cfg.RaftAdvertise(),
		HTTPAdvertise:     cfg.HTTPAdvertise(),
		Bootstrap:         cfg.Bootstrap,
		SnapshotThreshold: cfg.SnapshotThreshold,
		SnapshotInterval:  cfg.SnapshotInterval,
		SnapshotRetain:    cfg.SnapshotRetain,
		Logger:            logger,
	})
	if err != nil {
		ln.Close()
		return err
	}
	api := httpapi.New(n, httpapi.Options{
		MaxKeyBytes:    cfg.MaxKeyBytes,
		MaxValueBytes:  cfg.MaxValueBytes,
		RequestTimeout: cfg.RequestTimeout,
		EnablePprof:    cfg.EnablePprof,
		Logger:         logger,

		MaxRestoreBytes: cfg.MaxRestoreBytes,
	})
	srv := httpapi.NewServer(api, cfg.RequestTimeout)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go api.Announce(ctx, cfg.Join)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.WithFields(logrus.Fields{
		"node": cfg.NodeID, "http": cfg.HTTPAdvertise(), "raft": cfg.RaftAdvertise(),
		"volume": cfg.VolumeDir, "bootstrap_if_empty": cfg.Bootstrap,
	}).Info("raftkv started")

	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err = <-serveErr:
		err = fmt.Errorf("http server: %w", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if e := srv.Shutdown(shutdownCtx); e != nil && !errors.Is(e, http.ErrServerClosed) {
		logger.WithError(e).Warn("http shutdown")
	}
	api.Close()
	if e := n.Close(); e != nil {
		return errors.Join(err, e)
	}
	return err
}
