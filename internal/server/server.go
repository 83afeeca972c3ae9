// Package server assembles one raftkv node from its configuration and
// stops it in order. cmd/raftkv and the in-process test clusters
// (internal/testcluster) both build nodes through Start and stop them
// through Stop, so the tests run the production wiring.
//
// Start goes: logging, authentication tokens, TLS, the HTTP listener, the
// node (stores and raft), the API with retry-join and bootstrap-expect,
// then serving. Stop goes the other way (stop.go).
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/auth"
	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/logging"
	"github.com/raftkv/raftkv/internal/node"
)

// Option adjusts what the environment does not configure.
type Option func(*options)

type options struct {
	logger                           *logrus.Logger
	heartbeat, election, leaderLease time.Duration
	walSegmentSize                   int
}

// WithLogger makes the node log to l instead of a logger built from
// LOG_LEVEL and LOG_FORMAT writing to stderr.
func WithLogger(l *logrus.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithRaftTimeouts replaces hashicorp/raft's heartbeat, election and
// leader-lease timeouts (zero keeps a default). Tests shorten them.
func WithRaftTimeouts(heartbeat, election, leaderLease time.Duration) Option {
	return func(o *options) { o.heartbeat, o.election, o.leaderLease = heartbeat, election, leaderLease }
}

// WithWALSegmentSize replaces raft-wal's 64 MiB segments. The WAL drops
// compacted entries only a whole segment at a time, so tests use small
// segments to make a compaction take effect.
func WithWALSegmentSize(n int) Option {
	return func(o *options) { o.walSegmentSize = n }
}

// ErrAuthOff: ReloadTokens on a node without AUTH_TOKENS_FILE.
var ErrAuthOff = errors.New("authentication is off: there is no tokens file to reload")

// Server is one running node: raft, its stores and the HTTP API.
type Server struct {
	cfg      config.Config
	log      *logrus.Logger
	tokens   *auth.Store // nil when authentication is off
	node     *node.Node
	api      *api
	httpAddr string

	stopJoin context.CancelFunc // ends retry-join
	joinDone chan struct{}      // closed when retry-join returned
	served   chan struct{}      // closed when the HTTP server returned
	failed   chan struct{}      // closed if it returned on its own
	serveErr error              // why it did; read after failed is closed

	stopOnce sync.Once
	stopErr  error
}

// Start builds and runs the node cfg describes and returns once it
// serves; the cluster it belongs to may still be forming (retry-join and
// bootstrap-expect run on). cfg is trusted as config.Load left it; a
// Config built by hand gets its files read here (config.LoadFiles), and
// port 0 (tests) picks a free port and advertises it. On an error nothing
// is left running.
func Start(cfg config.Config, opts ...Option) (*Server, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	logger := o.logger
	if logger == nil {
		l, err := logging.New(cfg.LogLevel, cfg.LogFormat, os.Stderr)
		if err != nil {
			return nil, fmt.Errorf("logging: %w", err)
		}
		logger = l
	}
	if err := cfg.LoadFiles(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      logger,
		tokens:   openTokens(cfg, logger),
		joinDone: make(chan struct{}),
		served:   make(chan struct{}),
		failed:   make(chan struct{}),
	}
	// Listen first so a port clash fails before any Raft state is touched.
	ln, err := net.Listen("tcp", cfg.HTTPBind())
	if err != nil {
		return nil, fmt.Errorf("listen for http: %w", err)
	}
	s.httpAddr = cfg.HTTPAdvertise()
	if cfg.HTTPPort == 0 {
		s.httpAddr = net.JoinHostPort(cfg.AdvertiseAddr, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	raftAdvertise := cfg.RaftAdvertise()
	if cfg.RaftPort == 0 {
		raftAdvertise = "" // the bound address, known once bound
	}
	s.node, err = node.Open(node.Config{
		ID:                 cfg.NodeID,
		Dir:                cfg.VolumeDir,
		LogStore:           cfg.LogStore,
		WALSegmentSize:     o.walSegmentSize,
		RaftBind:           cfg.RaftBind(),
		RaftAdvertise:      raftAdvertise,
		HTTPAdvertise:      s.httpAddr,
		Bootstrap:          cfg.Bootstrap,
		SnapshotThreshold:  cfg.SnapshotThreshold,
		SnapshotInterval:   cfg.SnapshotInterval,
		SnapshotRetain:     cfg.SnapshotRetain,
		CommitTimeout:      cfg.CommitTimeout,
		History:            fsm.HistoryLimits{Events: cfg.WatchHistoryEvents, Bytes: cfg.WatchHistoryBytes},
		HeartbeatTimeout:   o.heartbeat,
		ElectionTimeout:    o.election,
		LeaderLeaseTimeout: o.leaderLease,
		RaftTLS:            cfg.RaftMaterial,
		Logger:             logger,
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	s.api = newAPI(cfg, s.node, s.tokens, logger)

	ctx, cancel := context.WithCancel(context.Background())
	s.stopJoin = cancel
	go func() {
		defer close(s.joinDone)
		s.api.retryJoin(ctx, cfg.Join)
	}()
	go func() {
		defer close(s.served)
		if err := s.api.serve(ln); err != nil {
			s.serveErr = err
			close(s.failed)
		}
	}()
	logger.WithFields(logrus.Fields{
		"node": cfg.NodeID, "http": s.httpAddr, "raft": s.node.RaftAddr(),
		"volume": cfg.VolumeDir, "bootstrap_if_empty": cfg.Bootstrap, "bootstrap_expect": cfg.BootstrapExpect,
		"https": cfg.HTTPMaterial != nil, "client_certs": cfg.HTTPMaterial != nil && cfg.HTTPMaterial.CA != nil,
		"raft_mtls": cfg.RaftMaterial != nil,
	}).Info("raftkv started")
	return s, nil
}

// openTokens makes the node's token store from the tokens config.Load
// read, or says loudly that authentication is off (the store is then nil).
func openTokens(cfg config.Config, logger *logrus.Logger) *auth.Store {
	log := logger.WithField("component", "auth")
	if cfg.Tokens == nil {
		msg := "AUTHENTICATION IS OFF: anyone who can reach the HTTP port can read and write every key, and the peer routes (/internal/*) are open; " +
			"admin routes answer only this host and cluster members' hosts. Set AUTH_TOKENS_FILE (and TLS) unless the ports are on a trusted network"
		if cfg.AllowRemoteAdmin {
			msg = "AUTHENTICATION IS OFF and ALLOW_REMOTE_ADMIN=true: anyone who can reach the HTTP port can read and write every key, " +
				"change the membership, snapshot, back up and restore. Set AUTH_TOKENS_FILE unless the ports are on a trusted network"
		}
		log.Warn(msg)
		return nil
	}
	store := auth.NewStore(cfg.AuthTokensFile, cfg.Tokens)
	log.WithFields(cfg.Tokens.CountFields()).WithField("file", cfg.AuthTokensFile).Info("authentication on: bearer tokens required (reload with SIGHUP)")
	if cfg.AllowRemoteAdmin {
		log.Info("ALLOW_REMOTE_ADMIN has no effect while authentication is on: admin routes need an admin token")
	}
	return store
}

// ReloadTokens reads AUTH_TOKENS_FILE again, as SIGHUP asks. A bad file
// leaves the tokens in force and is logged and returned; with
// authentication off it returns ErrAuthOff.
func (s *Server) ReloadTokens() error {
	log := s.log.WithField("component", "auth")
	if s.tokens == nil {
		log.Info("authentication is off, nothing to reload")
		return ErrAuthOff
	}
	return s.tokens.ReloadAndLog(log)
}

// Node is the running raft member.
func (s *Server) Node() *node.Node { return s.node }

// HTTPAddr is the API's advertised host:port.
func (s *Server) HTTPAddr() string { return s.httpAddr }

// RaftAddr is the Raft transport's advertised host:port.
func (s *Server) RaftAddr() string { return s.node.RaftAddr() }

// Logger is the node's logger.
func (s *Server) Logger() *logrus.Logger { return s.log }

// Failed is closed if the HTTP server stops on its own; Stop then skips
// the hand-off and returns why.
func (s *Server) Failed() <-chan struct{} { return s.failed }
