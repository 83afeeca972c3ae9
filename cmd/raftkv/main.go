// Command raftkv runs one node of a replicated key-value store. It is
// configured by environment variables (see README.md); with none set it
// serves a single-node store on 127.0.0.1:8000.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/httpapi"
	"github.com/raftkv/raftkv/internal/logging"
	"github.com/raftkv/raftkv/internal/node"
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
	authStore, err := openAuth(cfg, logger)
	if err != nil {
		return fmt.Errorf("AUTH_TOKENS_FILE: %w", err)
	}
	// Certificates were checked by config.Load; load them for use.
	httpTLS, err := cfg.LoadHTTPTLS()
	if err != nil {
		return err
	}
	raftTLS, err := cfg.LoadRaftTLS()
	if err != nil {
		return err
	}
	// Listen first so a port clash fails before any Raft state is touched.
	ln, err := net.Listen("tcp", cfg.HTTPBind())
	if err != nil {
		return fmt.Errorf("listen for http: %w", err)
	}
	n, err := node.Open(node.Config{
		ID:                cfg.NodeID,
		Dir:               cfg.VolumeDir,
		LogStore:          cfg.LogStore,
		RaftBind:          cfg.RaftBind(),
		RaftAdvertise:     cfg.RaftAdvertise(),
		HTTPAdvertise:     cfg.HTTPAdvertise(),
		Bootstrap:         cfg.Bootstrap,
		SnapshotThreshold: cfg.SnapshotThreshold,
		SnapshotInterval:  cfg.SnapshotInterval,
		SnapshotRetain:    cfg.SnapshotRetain,
		RaftTLS:           raftTLS,
		Logger:            logger,
	})
	if err != nil {
		ln.Close()
		return err
	}
	clusterOpts := cluster.Options{
		RequestTimeout:  cfg.RequestTimeout,
		Auth:            authStore,
		BootstrapExpect: cfg.BootstrapExpect,
		Logger:          logger,
	}
	var serverTLS *tls.Config
	if httpTLS != nil {
		serverTLS, clusterOpts.ClientTLS = httpTLS.HTTPServer(), httpTLS.HTTPClient()
	}
	cl := cluster.New(n, clusterOpts)
	api := httpapi.New(n, cl, httpapi.Options{
		MaxKeyBytes:      cfg.MaxKeyBytes,
		MaxValueBytes:    cfg.MaxValueBytes,
		RequestTimeout:   cfg.RequestTimeout,
		EnablePprof:      cfg.EnablePprof,
		Logger:           logger,
		Auth:             authStore,
		AllowRemoteAdmin: cfg.AllowRemoteAdmin,
		MaxRestoreBytes:  cfg.MaxRestoreBytes,
		Collectors:       append(n.Collectors(), cl.Collectors()...),
	})
	srv := httpapi.NewServer(api, cfg.RequestTimeout, httpapi.WithServerLog(logger))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go cl.RetryJoin(ctx, cfg.Join)
	watchSIGHUP(ctx, authStore, logger)

	serveErr := make(chan error, 1)
	go func() { serveErr <- httpapi.Serve(srv, ln, serverTLS) }()
	logger.WithFields(logrus.Fields{
		"node": cfg.NodeID, "http": cfg.HTTPAdvertise(), "raft": cfg.RaftAdvertise(),
		"volume": cfg.VolumeDir, "bootstrap_if_empty": cfg.Bootstrap, "bootstrap_expect": cfg.BootstrapExpect,
		"https": httpTLS != nil, "client_certs": cfg.TLSCAFile != "", "raft_mtls": raftTLS != nil,
	}).Info("raftkv started")

	select {
	case <-ctx.Done():
		logger.WithField("timeout", cfg.ShutdownTimeout).Info("shutting down")
	case err = <-serveErr:
		err = fmt.Errorf("http server: %w", err)
	}
	// A second signal now ends the process at once (Go's default action);
	// and whatever happens, the stop cannot outlast its budget by much.
	stop()
	watchdog := time.AfterFunc(cfg.ShutdownTimeout+15*time.Second, func() {
		logger.Error("graceful stop overran SHUTDOWN_TIMEOUT by 15s; exiting")
		os.Exit(1)
	})
	defer watchdog.Stop()
	// SHUTDOWN_TIMEOUT bounds the whole graceful stop: the leadership
	// hand-off (or LEAVE_ON_TERMINATE) takes at most half of it, and
	// in-flight requests finish within the rest.
	deadline := time.Now().Add(cfg.ShutdownTimeout)
	if err == nil {
		handoffCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout/2)
		cl.HandOffOrLeave(handoffCtx, cfg.LeaveOnTerminate)
		cancel()
	}
	shutdownCtx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if e := srv.Shutdown(shutdownCtx); e != nil && !errors.Is(e, http.ErrServerClosed) {
		logger.WithError(e).Warn("in-flight requests did not finish within SHUTDOWN_TIMEOUT; closing their connections")
		_ = srv.Close()
	}
	cl.Close()
	if e := n.Close(); e != nil {
		return errors.Join(err, e)
	}
	logger.Info("raft and its stores closed; stopped")
	return err
}
