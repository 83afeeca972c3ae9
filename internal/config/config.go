// Package config reads and validates raftkv's configuration from environment
// variables. Every variable is checked up front so that a node with a bad
// setting fails at start with one line naming the variable, rather than
// misbehaving later inside a cluster.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is the complete, validated configuration of one raftkv node.
type Config struct {
	NodeID        string // RAFT_NODE_ID
	HTTPPort      int    // HTTP_SERVER_PORT
	RaftPort      int    // RAFT_SERVER_PORT
	VolumeDir     string // RAFT_VOLUME_DIR
	BindAddr      string // BIND_ADDR: the IP both listeners bind to
	AdvertiseAddr string // ADVERTISE_ADDR: host other nodes and clients use

	// Bootstrap forms a new one-node cluster when the volume holds no state.
	Bootstrap bool // RAFT_BOOTSTRAP
	// Join lists HTTP addresses (host:port) of members to ask for admission.
	Join []string // RAFT_JOIN

	// LogStore picks the Raft log: "boltdb" (raft.db) or "wal" (wal/).
	LogStore string // RAFT_LOG_STORE

	SnapshotThreshold uint64        // RAFT_SNAPSHOT_THRESHOLD
	SnapshotInterval  time.Duration // RAFT_SNAPSHOT_INTERVAL
	SnapshotRetain    int           // RAFT_SNAPSHOT_RETAIN

	MaxKeyBytes   int // MAX_KEY_BYTES
	MaxValueBytes int // MAX_VALUE_BYTES

	// RequestTimeout bounds every request: raft applies, leadership
	// confirmation for reads, and waiting for a leader.
	RequestTimeout time.Duration // REQUEST_TIMEOUT

	LogLevel  string // LOG_LEVEL
	LogFormat string // LOG_FORMAT

	EnablePprof bool // ENABLE_PPROF: serve /debug/pprof/

	// Authentication (auth.go).
	AuthTokensFile   string // AUTH_TOKENS_FILE: bearer tokens; empty = auth off
	AllowRemoteAdmin bool   // ALLOW_REMOTE_ADMIN: auth off, admin routes from anywhere
	// Membership and lifecycle (lifecycle.go).
	BootstrapExpect  int           // RAFT_BOOTSTRAP_EXPECT: form a cluster once this many nodes see each other
	LeaveOnTerminate bool          // LEAVE_ON_TERMINATE: leave the configuration on SIGTERM/SIGINT
	ShutdownTimeout  time.Duration // SHUTDOWN_TIMEOUT: bounds a graceful stop
	// TLS (tls.go): empty file names mean plain TCP.
	TLSCertFile     string // TLS_CERT_FILE: the HTTP API serves HTTPS
	TLSKeyFile      string // TLS_KEY_FILE
	TLSCAFile       string // TLS_CA_FILE: client certificates required
	RaftTLSCertFile string // RAFT_TLS_CERT_FILE: mutual TLS on the Raft transport
	RaftTLSKeyFile  string // RAFT_TLS_KEY_FILE
	RaftTLSCAFile   string // RAFT_TLS_CA_FILE
	// MaxRestoreBytes caps a backup uploaded to POST /restore (backup.go).
	MaxRestoreBytes int64 // MAX_RESTORE_BYTES
}

// Defaults named once, so README and code cannot drift apart silently.
const (
	DefaultNodeID            = "n1"
	DefaultHTTPPort          = 8000
	DefaultRaftPort          = 9000
	DefaultBindAddr          = "127.0.0.1"
	DefaultLogStore          = "boltdb"
	DefaultSnapshotThreshold = 8192
	DefaultSnapshotInterval  = 30 * time.Second
	DefaultSnapshotRetain    = 2
	DefaultMaxKeyBytes       = 1024
	DefaultMaxValueBytes     = 1 << 20
	DefaultRequestTimeout    = 5 * time.Second
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "text"
)

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

// Load builds a Config from lookup (os.LookupEnv in production, a map in
// tests). The first invalid variable ends the load with an error that names it.
func Load(lookup func(string) (string, bool)) (Config, error) {
	p := parser{lookup: lookup}
	c := Config{
		NodeID:            p.str("RAFT_NODE_ID", DefaultNodeID),
		HTTPPort:          p.port("HTTP_SERVER_PORT", DefaultHTTPPort),
		RaftPort:          p.port("RAFT_SERVER_PORT", DefaultRaftPort),
		BindAddr:          p.str("BIND_ADDR", DefaultBindAddr),
		LogStore:          p.oneOf("RAFT_LOG_STORE", DefaultLogStore, "boltdb", "wal"),
		SnapshotThreshold: uint64(p.intRange("RAFT_SNAPSHOT_THRESHOLD", DefaultSnapshotThreshold, 1, 1<<40)),
		SnapshotInterval:  p.duration("RAFT_SNAPSHOT_INTERVAL", DefaultSnapshotInterval, 100*time.Millisecond),
		SnapshotRetain:    p.intRange("RAFT_SNAPSHOT_RETAIN", DefaultSnapshotRetain, 1, 100),
		MaxKeyBytes:       p.intRange("MAX_KEY_BYTES", DefaultMaxKeyBytes, 1, 64<<10),
		MaxValueBytes:     p.intRange("MAX_VALUE_BYTES", DefaultMaxValueBytes, 0, 64<<20),
		RequestTimeout:    p.duration("REQUEST_TIMEOUT", DefaultRequestTimeout, 100*time.Millisecond),
		LogLevel:          p.oneOf("LOG_LEVEL", DefaultLogLevel, "trace", "debug", "info", "warn", "error"),
		LogFormat:         p.oneOf("LOG_FORMAT", DefaultLogFormat, "text", "json"),
	}
	c.VolumeDir = p.str("RAFT_VOLUME_DIR", filepath.Join("data", c.NodeID))
	c.AdvertiseAddr = p.str("ADVERTISE_ADDR", defaultAdvertise(c.BindAddr))
	c.Join = p.list("RAFT_JOIN")
	c.Bootstrap = p.boolean("RAFT_BOOTSTRAP", len(c.Join) == 0)
	c.EnablePprof = p.boolean("ENABLE_PPROF", false)
	c.loadAuth(&p)
	c.loadLifecycle(&p)
	c.loadTLS(&p)
	c.loadBackup(&p)
	if p.err != nil {
		return Config{}, p.err
	}
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	if err := c.validateTLS(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c Config) validate() error {
	if err := ValidateNodeID(c.NodeID); err != nil {
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
	for _, a := range c.Join {
		if _, _, err := SplitHostPort(a); err != nil {
			return fmt.Errorf("RAFT_JOIN: %q: %w", a, err)
		}
	}
	if c.Bootstrap && len(c.Join) > 0 {
		return errors.New("RAFT_BOOTSTRAP: true conflicts with RAFT_JOIN; a joining node must not form its own cluster")
	}
	return c.validateLifecycle()
}

// ValidateNodeID reports whether id can name a node: short, printable,
// and free of characters that would need escaping in URLs and logs.
func ValidateNodeID(id string) error {
	if id == "" {
		return errors.New("node id must not be empty")
	}
	if len(id) > 64 {
		return errors.New("node id is longer than 64 bytes")
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("node id %q may hold only letters, digits, '-', '_' and '.'", id)
		}
	}
	return nil
}

// SplitHostPort parses "host:port" with a non-empty host and a port in 1..65535.
func SplitHostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("want host:port: %w", err)
	}
	if host == "" {
		return "", 0, errors.New("host is empty")
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not in 1..65535", portStr)
	}
	return host, port, nil
}

// defaultAdvertise is the bind address, except that a wildcard bind (as in
// a container) advertises the host name, which peers can resolve.
func defaultAdvertise(bind string) string {
	if ip, err := netip.ParseAddr(bind); err == nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil && h != "" {
			return h
		}
	}
	return bind
}

func isIPv6(s string) bool {
	ip, err := netip.ParseAddr(s)
	return err == nil && ip.Is6()
}

// parser keeps the first error so Load reads as a flat list of fields.
type parser struct {
	lookup func(string) (string, bool)
	err    error
}

func (p *parser) get(name string) (string, bool) {
	v, ok := p.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

func (p *parser) fail(name, format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...))
	}
}

func (p *parser) str(name, def string) string {
	if v, ok := p.get(name); ok {
		return v
	}
	return def
}

func (p *parser) intRange(name string, def, lo, hi int) int {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.fail(name, "%q is not a whole number in %d..%d", v, lo, hi)
		return def
	}
	return n
}

func (p *parser) port(name string, def int) int {
	return p.intRange(name, def, 1, 65535)
}

func (p *parser) duration(name string, def, min time.Duration) time.Duration {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < min {
		p.fail(name, "%q is not a duration of at least %s (e.g. 30s, 500ms)", v, min)
		return def
	}
	return d
}

func (p *parser) boolean(name string, def bool) bool {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, "%q is not true or false", v)
		return def
	}
	return b
}

func (p *parser) oneOf(name, def string, allowed ...string) string {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	for _, a := range allowed {
		if strings.EqualFold(v, a) {
			return a
		}
	}
	p.fail(name, "%q is not one of %s", v, strings.Join(allowed, ", "))
	return def
}

func (p *parser) list(name string) []string {
	v, ok := p.get(name)
	if !ok {
		return nil
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
