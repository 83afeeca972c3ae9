// Package config reads and validates raftkv's configuration from environment
// variables. Every variable is checked up front so that a node with a bad
// setting fails at start with one line naming the variable, rather than
// misbehaving later inside a cluster. The files the configuration names
// (the tokens file, the certificates) are read here, once, and handed on
// with the Config (files.go).
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/internal/auth"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/tlsconfig"
	"github.com/raftkv/raftkv/internal/watch"
)

// Config is the complete, validated configuration of one raftkv node. Each
// field names its variable and, where it has one, its default.
type Config struct {
	// Identity and addresses.
	NodeID        string // RAFT_NODE_ID; DefaultNodeID
	HTTPPort      int    // HTTP_SERVER_PORT; DefaultHTTPPort (0, in tests only: any free port)
	RaftPort      int    // RAFT_SERVER_PORT; DefaultRaftPort (0, in tests only: any free port)
	BindAddr      string // BIND_ADDR: the IP both listeners bind to; DefaultBindAddr
	AdvertiseAddr string // ADVERTISE_ADDR: host other nodes and clients use; BIND_ADDR, or the host name for a wildcard bind
	VolumeDir     string // RAFT_VOLUME_DIR; data/<RAFT_NODE_ID>

	// Membership.
	// Bootstrap forms a new one-node cluster when the volume holds no state.
	Bootstrap bool // RAFT_BOOTSTRAP; true unless RAFT_JOIN or RAFT_BOOTSTRAP_EXPECT is set
	// Join lists the join addresses: HTTP addresses (host:port) of members
	// to ask for admission, retried until this node is a member.
	Join []string // RAFT_JOIN
	// BootstrapExpect forms a cluster once this many nodes see each other
	// (0: off).
	BootstrapExpect  int  // RAFT_BOOTSTRAP_EXPECT
	LeaveOnTerminate bool // LEAVE_ON_TERMINATE: leave the configuration on SIGTERM/SIGINT

	// Raft storage.
	LogStore          string        // RAFT_LOG_STORE: node.LogStoreBolt (raft.db) or node.LogStoreWAL (wal/); DefaultLogStore
	SnapshotThreshold uint64        // RAFT_SNAPSHOT_THRESHOLD; DefaultSnapshotThreshold
	SnapshotInterval  time.Duration // RAFT_SNAPSHOT_INTERVAL; DefaultSnapshotInterval
	// CommitTimeout: how soon an idle leader tells followers the commit
	// index (raft's CommitTimeout), so they apply and serve watchers.
	CommitTimeout  time.Duration // RAFT_COMMIT_TIMEOUT; node.DefaultCommitTimeout
	SnapshotRetain int           // RAFT_SNAPSHOT_RETAIN; DefaultSnapshotRetain

	// Requests.
	MaxKeyBytes     int   // MAX_KEY_BYTES; DefaultMaxKeyBytes
	MaxValueBytes   int   // MAX_VALUE_BYTES; DefaultMaxValueBytes
	MaxRestoreBytes int64 // MAX_RESTORE_BYTES: caps a backup uploaded to POST /restore; DefaultMaxRestoreBytes
	// MaxDataBytes caps the data (key and value bytes) writes may grow the
	// state to; the leader's value travels in each write (0: off).
	MaxDataBytes int64 // MAX_DATA_BYTES; DefaultMaxDataBytes
	// RequestTimeout bounds every request: raft applies, leadership
	// confirmation for reads, and waiting for a leader.
	RequestTimeout  time.Duration // REQUEST_TIMEOUT; DefaultRequestTimeout
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT: bounds a graceful stop; DefaultShutdownTimeout
	EnablePprof     bool          // ENABLE_PPROF: serve /debug/pprof/

	// The change feed (GET /watch/, blocking queries).
	WatchHistoryEvents int   // WATCH_HISTORY_EVENTS: events each node keeps for resuming watchers; fsm.DefaultHistoryEvents
	WatchHistoryBytes  int64 // WATCH_HISTORY_BYTES: their bytes (key, value, 96 per event); fsm.DefaultHistoryBytes
	WatchMaxWatchers   int   // WATCH_MAX_WATCHERS: watch streams and blocking queries a node serves at once; watch.DefaultMaxWatchers
	WatchBuffer        int   // WATCH_BUFFER: events a watcher takes at a time; watch.DefaultBuffer

	// Logging.
	LogLevel  string // LOG_LEVEL; DefaultLogLevel
	LogFormat string // LOG_FORMAT; DefaultLogFormat

	// Authentication.
	AuthTokensFile   string // AUTH_TOKENS_FILE: bearer tokens; empty = auth off
	AllowRemoteAdmin bool   // ALLOW_REMOTE_ADMIN: auth off, admin routes from anywhere

	// TLS: empty file names mean plain TCP.
	TLSCertFile     string // TLS_CERT_FILE: the HTTP API serves HTTPS
	TLSKeyFile      string // TLS_KEY_FILE
	TLSCAFile       string // TLS_CA_FILE: client certificates required
	RaftTLSCertFile string // RAFT_TLS_CERT_FILE: mutual TLS on the Raft transport
	RaftTLSKeyFile  string // RAFT_TLS_KEY_FILE
	RaftTLSCAFile   string // RAFT_TLS_CA_FILE

	// What those files hold, read once by LoadFiles (files.go). Nothing
	// reads the files again, except a token reload (SIGHUP).
	Tokens       *auth.Tokens        // AUTH_TOKENS_FILE; nil when auth is off
	HTTPMaterial *tlsconfig.Material // TLS_*; nil when the API speaks plain HTTP
	RaftMaterial *tlsconfig.Material // RAFT_TLS_*; nil when the transport is plain TCP
}

// Defaults named once, in the order of Config's fields, so README and
// code cannot drift apart silently.
const (
	DefaultNodeID   = "n1"
	DefaultHTTPPort = 8000
	DefaultRaftPort = 9000
	DefaultBindAddr = "127.0.0.1"

	DefaultLogStore          = node.LogStoreBolt
	DefaultSnapshotThreshold = 8192
	DefaultSnapshotInterval  = 30 * time.Second
	DefaultSnapshotRetain    = 2

	DefaultMaxKeyBytes   = 1024
	DefaultMaxValueBytes = 1 << 20
	// DefaultMaxRestoreBytes is generous, since a backup holds the whole store.
	DefaultMaxRestoreBytes = 1 << 30
	// DefaultMaxDataBytes is 2 GiB, etcd's default backend quota
	// (--quota-backend-bytes; server/storage/quota.go).
	DefaultMaxDataBytes    = 2 << 30
	DefaultRequestTimeout  = 5 * time.Second
	DefaultShutdownTimeout = 10 * time.Second

	DefaultLogLevel  = "info"
	DefaultLogFormat = "text"
)

// Load builds a Config from lookup (os.LookupEnv in production, a map in
// tests) and reads the files it names. The first invalid variable ends
// the load with an error that names it.
func Load(lookup func(string) (string, bool)) (Config, error) {
	p := parser{lookup: lookup}
	c := Config{
		NodeID:   p.str("RAFT_NODE_ID", DefaultNodeID),
		HTTPPort: p.port("HTTP_SERVER_PORT", DefaultHTTPPort),
		RaftPort: p.port("RAFT_SERVER_PORT", DefaultRaftPort),
		BindAddr: p.str("BIND_ADDR", DefaultBindAddr),

		LogStore:          p.oneOf("RAFT_LOG_STORE", DefaultLogStore, node.LogStoreBolt, node.LogStoreWAL),
		SnapshotThreshold: uint64(p.intRange("RAFT_SNAPSHOT_THRESHOLD", DefaultSnapshotThreshold, 1, 1<<40)),
		SnapshotInterval:  p.duration("RAFT_SNAPSHOT_INTERVAL", DefaultSnapshotInterval, 100*time.Millisecond),
		SnapshotRetain:    p.intRange("RAFT_SNAPSHOT_RETAIN", DefaultSnapshotRetain, 1, 100),
		CommitTimeout:     p.durationRange("RAFT_COMMIT_TIMEOUT", node.DefaultCommitTimeout, time.Millisecond, time.Second),

		MaxKeyBytes:     p.intRange("MAX_KEY_BYTES", DefaultMaxKeyBytes, 1, 64<<10),
		MaxValueBytes:   p.intRange("MAX_VALUE_BYTES", DefaultMaxValueBytes, 0, 64<<20),
		MaxRestoreBytes: int64(p.intRange("MAX_RESTORE_BYTES", DefaultMaxRestoreBytes, 1<<10, 1<<40)),
		MaxDataBytes:    int64(p.intRange("MAX_DATA_BYTES", DefaultMaxDataBytes, 0, 1<<50)),
		RequestTimeout:  p.duration("REQUEST_TIMEOUT", DefaultRequestTimeout, 100*time.Millisecond),
		ShutdownTimeout: p.duration("SHUTDOWN_TIMEOUT", DefaultShutdownTimeout, 100*time.Millisecond),
		EnablePprof:     p.boolean("ENABLE_PPROF", false),

		WatchHistoryEvents: p.intRange("WATCH_HISTORY_EVENTS", fsm.DefaultHistoryEvents, 1, 100_000_000),
		WatchHistoryBytes:  int64(p.intRange("WATCH_HISTORY_BYTES", fsm.DefaultHistoryBytes, 1<<20, 1<<40)),
		WatchMaxWatchers:   p.intRange("WATCH_MAX_WATCHERS", watch.DefaultMaxWatchers, 1, 1_000_000),
		WatchBuffer:        p.intRange("WATCH_BUFFER", watch.DefaultBuffer, 1, fsm.MaxEventsBatch),

		LogLevel:  p.oneOf("LOG_LEVEL", DefaultLogLevel, "trace", "debug", "info", "warn", "error"),
		LogFormat: p.oneOf("LOG_FORMAT", DefaultLogFormat, "text", "json"),

		AuthTokensFile:   p.str("AUTH_TOKENS_FILE", ""),
		AllowRemoteAdmin: p.boolean("ALLOW_REMOTE_ADMIN", false),

		TLSCertFile:     p.str("TLS_CERT_FILE", ""),
		TLSKeyFile:      p.str("TLS_KEY_FILE", ""),
		TLSCAFile:       p.str("TLS_CA_FILE", ""),
		RaftTLSCertFile: p.str("RAFT_TLS_CERT_FILE", ""),
		RaftTLSKeyFile:  p.str("RAFT_TLS_KEY_FILE", ""),
		RaftTLSCAFile:   p.str("RAFT_TLS_CA_FILE", ""),
	}
	c.AdvertiseAddr = p.str("ADVERTISE_ADDR", defaultAdvertise(c.BindAddr))
	c.VolumeDir = p.str("RAFT_VOLUME_DIR", filepath.Join("data", c.NodeID))
	c.Join = p.list("RAFT_JOIN")
	c.BootstrapExpect = p.intRange("RAFT_BOOTSTRAP_EXPECT", 0, 1, 64)
	c.Bootstrap = p.boolean("RAFT_BOOTSTRAP", len(c.Join) == 0 && c.BootstrapExpect == 0)
	if p.err == nil {
		joins, err := joinAddrs(c.Join, c.HTTPTLS())
		if err != nil {
			return Config{}, err
		}
		c.Join = joins
	}
	if c.BootstrapExpect > 0 && c.Bootstrap {
		// RAFT_BOOTSTRAP_EXPECT replaces the single-node bootstrap: forming
		// a one-node cluster first would make the others join it instead
		// of bootstrapping together, so asking for both is a mistake.
		p.fail("RAFT_BOOTSTRAP_EXPECT", "conflicts with RAFT_BOOTSTRAP=true; set one of them")
	}
	c.LeaveOnTerminate = p.boolean("LEAVE_ON_TERMINATE", false)
	if p.err != nil {
		return Config{}, p.err
	}
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	if err := c.LoadFiles(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c Config) validate() error {
	if err := node.ValidateNodeID(c.NodeID); err != nil {
		return fmt.Errorf("RAFT_NODE_ID: %w", err)
	}
	if _, err := netip.ParseAddr(c.BindAddr); err != nil {
		return fmt.Errorf("BIND_ADDR: %q is not an IP address", c.BindAddr)
	}
	if c.AdvertiseAddr == "" || strings.ContainsAny(c.AdvertiseAddr, " /@") || strings.Contains(c.AdvertiseAddr, ":") && !isIPv6(c.AdvertiseAddr) {
		return fmt.Errorf("ADVERTISE_ADDR: %q is not a host name or IP address", c.AdvertiseAddr)
	}
	if ip, err := netip.ParseAddr(c.AdvertiseAddr); err == nil && ip.IsUnspecified() {
		// Raft's transport refuses to advertise 0.0.0.0; say so in our words.
		return fmt.Errorf("ADVERTISE_ADDR: %s cannot be reached by other nodes; set ADVERTISE_ADDR to this host's address", c.AdvertiseAddr)
	}
	if c.HTTPPort == c.RaftPort {
		return fmt.Errorf("RAFT_SERVER_PORT: %d is also HTTP_SERVER_PORT", c.RaftPort)
	}
	if strings.TrimSpace(c.VolumeDir) == "" {
		return errors.New("RAFT_VOLUME_DIR: must not be empty")
	}
	if c.Bootstrap && len(c.Join) > 0 {
		return errors.New("RAFT_BOOTSTRAP: true conflicts with RAFT_JOIN; a joining node must not form its own cluster")
	}
	if c.BootstrapExpect > 1 && len(c.Join) == 0 {
		return fmt.Errorf("RAFT_BOOTSTRAP_EXPECT: %d needs RAFT_JOIN to list the other nodes' HTTP addresses", c.BootstrapExpect)
	}
	// RAFT_JOIN may list this node too (the same list on every node), so
	// it names at most len(Join) others.
	if c.BootstrapExpect > len(c.Join)+1 {
		return fmt.Errorf("RAFT_BOOTSTRAP_EXPECT: %d is more nodes than RAFT_JOIN lists (%d) plus this one", c.BootstrapExpect, len(c.Join))
	}
	return c.validateTLS()
}

// joinAddrs turns RAFT_JOIN's entries into host:port. An entry may be
// host:port or the URL users copy from a browser or another tool
// (http://host:8000, https://host:8000/); a URL's scheme must match the
// node's own TLS setting (tls), since every node of a cluster speaks the
// same protocol, and it may carry no path, query or user.
func joinAddrs(entries []string, tls bool) ([]string, error) {
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		addr := e
		if scheme, _, ok := strings.Cut(e, "://"); ok {
			u, err := url.Parse(e)
			if err != nil || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
				return nil, fmt.Errorf("RAFT_JOIN: %q is not host:port or http(s)://host:port", e)
			}
			switch strings.ToLower(scheme) {
			case "http":
				if tls {
					return nil, fmt.Errorf("RAFT_JOIN: %q is http but this node serves HTTPS (TLS_CERT_FILE is set); use https:// or host:port", e)
				}
			case "https":
				if !tls {
					return nil, fmt.Errorf("RAFT_JOIN: %q is https but this node serves plain HTTP (TLS_CERT_FILE is not set); use http:// or host:port", e)
				}
			default:
				return nil, fmt.Errorf("RAFT_JOIN: %q: scheme %q is not http or https", e, scheme)
			}
			addr = u.Host
		}
		if _, _, err := node.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("RAFT_JOIN: %q: %w", e, err)
		}
		out = append(out, addr)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// HTTPAdvertise is the host:port other nodes and clients use for the API.
func (c Config) HTTPAdvertise() string {
	return net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.HTTPPort))
}

// RaftAdvertise is the host:port other nodes use for the Raft transport.
func (c Config) RaftAdvertise() string {
	return net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(c.RaftPort))
}

// HTTPBind is the address the HTTP API listens on.
func (c Config) HTTPBind() string {
	return net.JoinHostPort(c.BindAddr, strconv.Itoa(c.HTTPPort))
}

// RaftBind is the address the Raft transport listens on.
func (c Config) RaftBind() string {
	return net.JoinHostPort(c.BindAddr, strconv.Itoa(c.RaftPort))
}

// AuthEnabled reports whether requests must carry a bearer token.
func (c Config) AuthEnabled() bool { return c.AuthTokensFile != "" }

// HTTPTLS reports whether the HTTP API (and every node-to-node HTTP call)
// uses TLS.
func (c Config) HTTPTLS() bool { return c.TLSCertFile != "" }

// RaftTLS reports whether the Raft transport uses mutual TLS.
func (c Config) RaftTLS() bool { return c.RaftTLSCertFile != "" }
