package testcluster

import (
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/watch"
)

// Option adjusts a cluster before it starts. Most set a field of the
// config.Config every member starts from, the variable named in each.
type Option func(*settings)

type settings struct {
	cfg         config.Config // what every member shares
	tls         bool          // WithTLS
	loggerSetup func(id string, l *logrus.Logger)
	adminToken  string // the tokens file's first admin token, for the cluster's own requests
}

// defaultSettings are the daemon's defaults, except that raft keeps its
// own snapshot interval (120s), so that snapshots happen only on POST
// /snapshot within a test's lifetime and snapshot indexes stay predictable.
func defaultSettings() settings {
	return settings{cfg: config.Config{
		BindAddr:        "127.0.0.1",
		AdvertiseAddr:   "127.0.0.1",
		SnapshotRetain:  config.DefaultSnapshotRetain,
		MaxKeyBytes:     config.DefaultMaxKeyBytes,
		MaxValueBytes:   config.DefaultMaxValueBytes,
		MaxRestoreBytes: config.DefaultMaxRestoreBytes,
		MaxDataBytes:    config.DefaultMaxDataBytes,
		RequestTimeout:  DefaultRequestTimeout,
		ShutdownTimeout: config.DefaultShutdownTimeout,

		WatchHistoryEvents: fsm.DefaultHistoryEvents,
		WatchHistoryBytes:  fsm.DefaultHistoryBytes,
		WatchMaxWatchers:   watch.DefaultMaxWatchers,
		WatchBuffer:        watch.DefaultBuffer,
	}}
}

// WithWatchHistory sets how many change events each node keeps
// (WATCH_HISTORY_EVENTS).
func WithWatchHistory(events int) Option {
	return func(s *settings) { s.cfg.WatchHistoryEvents = events }
}

// WithSnapshotThreshold makes raft snapshot (and compact its log, keeping
// n trailing entries) once n entries accumulated since the last snapshot
// (RAFT_SNAPSHOT_THRESHOLD). Raft checks only every snapshot interval; see
// WithSnapshotInterval.
func WithSnapshotThreshold(n uint64) Option {
	return func(s *settings) { s.cfg.SnapshotThreshold = n }
}

// WithSnapshotInterval sets how often raft checks the snapshot threshold
// (RAFT_SNAPSHOT_INTERVAL). The default (raft's, 120s) means snapshots
// happen only on POST /snapshot within a test's lifetime, which keeps
// snapshot indexes predictable.
func WithSnapshotInterval(d time.Duration) Option {
	return func(s *settings) { s.cfg.SnapshotInterval = d }
}

// WithRequestTimeout sets the API's per-request deadline (REQUEST_TIMEOUT).
func WithRequestTimeout(d time.Duration) Option {
	return func(s *settings) { s.cfg.RequestTimeout = d }
}

// WithMaxKeyBytes sets MAX_KEY_BYTES.
func WithMaxKeyBytes(n int) Option {
	return func(s *settings) { s.cfg.MaxKeyBytes = n }
}

// WithMaxValueBytes sets MAX_VALUE_BYTES.
func WithMaxValueBytes(n int) Option {
	return func(s *settings) { s.cfg.MaxValueBytes = n }
}

// WithMaxRestoreBytes sets MAX_RESTORE_BYTES.
func WithMaxRestoreBytes(n int64) Option {
	return func(s *settings) { s.cfg.MaxRestoreBytes = n }
}

// WithMaxDataBytes sets MAX_DATA_BYTES (0: no quota).
func WithMaxDataBytes(n int64) Option {
	return func(s *settings) { s.cfg.MaxDataBytes = n }
}

// WithLogStore sets RAFT_LOG_STORE (node.LogStoreBolt or node.LogStoreWAL).
func WithLogStore(kind string) Option {
	return func(s *settings) { s.cfg.LogStore = kind }
}

// WithAuthTokensFile turns authentication on (AUTH_TOKENS_FILE): every
// member loads the tokens file at path (they share it, as a real
// cluster's nodes do), and the cluster's own requests (the joins in
// Start, and the Get, Post, Set, GetKey and Status helpers) send the
// file's first admin token. Do and MustDo send only the headers they are
// given. See AuthReload.
func WithAuthTokensFile(path string) Option {
	return func(s *settings) { s.cfg.AuthTokensFile = path }
}

// WithAllowRemoteAdmin sets ALLOW_REMOTE_ADMIN.
func WithAllowRemoteAdmin() Option {
	return func(s *settings) { s.cfg.AllowRemoteAdmin = true }
}

// WithPprof sets ENABLE_PPROF.
func WithPprof() Option {
	return func(s *settings) { s.cfg.EnablePprof = true }
}

// WithTLS runs every member as a production node with all six TLS
// variables set: HTTPS on the API with client certificates required
// (TLS_CA_FILE), https between nodes, and mutual TLS on the Raft
// transport. One CA, made for the test, signs every member's certificate
// (IP SAN 127.0.0.1, serverAuth and clientAuth) and the certificate the
// cluster's own client presents. Members read their files as the daemon
// does (config.LoadFiles, in server.Start).
func WithTLS() Option {
	return func(s *settings) { s.tls = true }
}

// WithLoggerSetup calls f with each member's logger when the member
// starts (again on Restart), before anything logs: a test can raise the
// level or add a hook that captures lines.
func WithLoggerSetup(f func(id string, l *logrus.Logger)) Option {
	return func(s *settings) { s.loggerSetup = f }
}
