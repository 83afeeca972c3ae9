package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"

	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/auth"
	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/httpapi"
	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/watch"
)

// This file is the one place that builds and drives the HTTP API and the
// node-to-node work (retry-join, bootstrap-expect, hand-off and leave):
// Start and the stop order reach them only through api.

// api is a node's HTTP side: the cluster (node-to-node work), the service
// over it, its server and the server's TLS.
type api struct {
	cluster   *cluster.Cluster
	svc       *httpapi.Service
	srv       *http.Server
	serverTLS *tls.Config // nil: plain HTTP
}

func newAPI(cfg config.Config, n *node.Node, tokens *auth.Store, logger *logrus.Logger) *api {
	clOpts := cluster.Options{
		RequestTimeout:  cfg.RequestTimeout,
		Auth:            tokens,
		BootstrapExpect: cfg.BootstrapExpect,
		Logger:          logger,
	}
	a := &api{}
	if m := cfg.HTTPMaterial; m != nil {
		a.serverTLS, clOpts.ClientTLS = m.HTTPServer(), m.HTTPClient()
	}
	a.cluster = cluster.New(n, clOpts)
	a.svc = httpapi.New(n, a.cluster, httpapi.Options{
		MaxKeyBytes:      cfg.MaxKeyBytes,
		MaxValueBytes:    cfg.MaxValueBytes,
		MaxDataBytes:     cfg.MaxDataBytes,
		RequestTimeout:   cfg.RequestTimeout,
		EnablePprof:      cfg.EnablePprof,
		Logger:           logger,
		Auth:             tokens,
		AllowRemoteAdmin: cfg.AllowRemoteAdmin,
		MaxRestoreBytes:  cfg.MaxRestoreBytes,
		Watch:            watch.Limits{MaxWatchers: cfg.WatchMaxWatchers, Buffer: cfg.WatchBuffer},
		Collectors:       append(n.Collectors(), a.cluster.Collectors()...),
	})
	a.srv = httpapi.NewServer(a.svc, cfg.RequestTimeout, httpapi.WithServerLog(logger))
	return a
}

// serve answers requests on ln until drain or close; it returns nil when
// they stopped it, else why the server failed.
func (a *api) serve(ln net.Listener) error {
	err := httpapi.Serve(a.srv, ln, a.serverTLS)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// retryJoin keeps this node a member until ctx ends: it asks the join
// addresses (or the leader) to admit it, and with bootstrap-expect forms
// the cluster once enough nodes see each other.
func (a *api) retryJoin(ctx context.Context, join []string) { a.cluster.RetryJoin(ctx, join) }

// handOffOrLeave is the first step of a graceful stop: a leader hands
// leadership off, or with leave the node leaves the configuration. It
// logs its failures; ctx bounds it.
func (a *api) handOffOrLeave(ctx context.Context, leave bool) {
	a.cluster.HandOffOrLeave(ctx, leave)
}

// drain stops accepting requests and waits for those in flight until ctx
// ends, then cuts their connections; it reports whether any were cut.
func (a *api) drain(ctx context.Context) (cut bool) {
	// Watch streams and blocking queries would last until they are cut:
	// end them first, so they finish like any request.
	a.svc.CloseWatches()
	if err := a.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = a.srv.Close()
		return true
	}
	return false
}

// close releases the connections the node keeps to its peers.
func (a *api) close() { a.cluster.Close() }
