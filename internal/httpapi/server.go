// Package httpapi serves raftkv's HTTP API: the query endpoints (/join,
// /set, /get, /remove), the REST form (/kv/{key}), and membership, status,
// backup and metrics endpoints. It speaks HTTP only: it parses requests,
// calls the Store (this node's replica) and the Cluster (the way to the
// leader), maps errors through one table, and writes the answers. Any node
// accepts any request; the Cluster hands writes and linearizable reads to
// the leader.
package httpapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/auth"
	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/watch"
)

// Header names: one X-Raft-* family, plus the standard X-Request-Id and
// Idempotency-Key. (X-Raft-Forwarded, node to node, is cluster's.)
const (
	// HeaderServedBy names the node that produced the answer.
	HeaderServedBy = "X-Raft-Served-By"
	// HeaderRaftIndex carries the Raft index of a write, or a key's
	// modification index on reads.
	HeaderRaftIndex = "X-Raft-Index"
	// HeaderCreateIndex carries a key's creation index on GET /kv/{key}.
	HeaderCreateIndex = "X-Raft-Create-Index"
	// HeaderAppliedIndex carries the serving node's applied index on
	// stale reads, so a client can tell how fresh the answer is.
	HeaderAppliedIndex = "X-Raft-Applied-Index"
	// HeaderLastContact carries, on stale reads, milliseconds since this
	// node last heard from the leader (0 on the leader itself).
	HeaderLastContact = "X-Raft-Last-Contact"
	// HeaderReplayed marks a write answered from the idempotency table:
	// the original outcome, nothing applied now.
	HeaderReplayed = "X-Raft-Replayed"
	// HeaderBackupKeys is the number of keys in a backup.
	HeaderBackupKeys = "X-Raft-Keys"
	// TrailerBackupSHA256 is the hex SHA-256 of the whole backup body.
	TrailerBackupSHA256 = "X-Raft-Sha256"
	// TrailerBackupCRC is the format's own CRC-32C (hex), as in its trailer.
	TrailerBackupCRC = "X-Raft-Crc32c"
	// HeaderRequestID correlates a request's log lines across nodes: taken
	// from the client when present, and passed on when forwarding.
	HeaderRequestID = "X-Request-Id"
	// HeaderIdempotencyKey names a write so that a retry returns its first
	// outcome instead of applying it twice; ?requestId= is the query form.
	HeaderIdempotencyKey = "Idempotency-Key"
)

// Store is this node's replica and its membership, as the handlers use
// them (*node.Node).
type Store interface {
	ID() string
	// FSM is the local replica: reads, the applied index, backups.
	FSM() *fsm.FSM
	Leader() (node.Leader, bool)
	SinceLeaderContact() (time.Duration, bool)
	// Leases is this node's lease tracker: time left on its own clock.
	Leases() *fsm.Tracker
	// Removed: this node was a member and /leave removed it.
	Removed() bool
	Members(ctx context.Context) ([]node.Member, error)
	Status(ctx context.Context) (node.Status, error)
	Snapshot(ctx context.Context) (index uint64, created bool, err error)
	// StorageFault is nil while the volume takes writes; otherwise it wraps
	// node.ErrStorageUnavailable (/ready's storage_unavailable).
	StorageFault() error
	// VoteHeld is nil unless this node repaired its volume at start and
	// has not yet caught up; then it wraps node.ErrVoteWithheld (/ready's
	// vote_withheld).
	VoteHeld() error

	// Leader-only changes; node.ErrNotLeader when this node does not lead.
	// admit is asked before a node that is not yet a member is added.
	Join(ctx context.Context, id, raftAddr, httpAddr string, voter bool, admit func(context.Context) error) (node.JoinResult, error)
	Leave(ctx context.Context, id string) (uint64, error)
	Promote(ctx context.Context, id string) (node.JoinResult, error)
	TransferLeadership(ctx context.Context, id string) (string, error)
	UploadDir() (string, error)
	Restore(ctx context.Context, src io.ReadSeeker, info fsm.BackupInfo) (node.RestoreResult, error)
}

// Cluster is how the handlers reach the leader, and the node-to-node
// requests they serve (*cluster.Cluster).
type Cluster interface {
	// Propose applies a write on the leader; servedBy names the leader
	// when it was another node.
	Propose(ctx context.Context, cmd *fsm.Command) (res *fsm.Result, servedBy string, err error)
	// ReadIndex is a read index the leader confirmed after the call began.
	ReadIndex(ctx context.Context) (uint64, error)
	// OnLeader runs local when this node leads, else forwards the request
	// and copies the leader's answer to w (err nil once answered).
	OnLeader(w http.ResponseWriter, r *http.Request, f cluster.Forward, local func() error) (via string, err error)
	// BootstrapPending says what a node waiting for its
	// RAFT_BOOTSTRAP_EXPECT peers waits for (nil when it is not waiting).
	BootstrapPending() error
	// Probe asks a member about itself, for /nodes.
	Probe(ctx context.Context, httpAddr string) cluster.Probe

	// CheckClusterID refuses a node-to-node call from another cluster.
	CheckClusterID(r *http.Request) error
	// CheckJoiner contacts a node before /join adds it, and refuses one
	// that cannot serve (unreachable, another cluster, state of its own).
	CheckJoiner(ctx context.Context, id, raftAddr, httpAddr string) error

	// The server side of the peer protocol.
	Info(ctx context.Context) (cluster.PeerInfo, error)
	ServeApply(ctx context.Context, body []byte, accept func(*fsm.Command) error) ([]byte, error)
	ServeReadIndex(ctx context.Context) ([]byte, error)
}

// Options configures a Service.
type Options struct {
	MaxKeyBytes   int
	MaxValueBytes int
	// MaxDataBytes caps the data (key and value bytes) a write may grow
	// the state to; this node stamps it on the writes it proposes as
	// leader (MAX_DATA_BYTES; 0: no quota).
	MaxDataBytes   int64
	RequestTimeout time.Duration // bounds each request's raft work
	// EnablePprof mounts net/http/pprof under /debug/pprof/. Off by
	// default: profiles expose internals and cost CPU while taken.
	EnablePprof bool
	Logger      *logrus.Logger
	// Auth, when set, turns authentication on: every route but the
	// public ones needs a bearer token from this store (middleware.go).
	Auth *auth.Store
	// AllowRemoteAdmin lets admin routes answer callers from any host
	// while Auth is nil (ALLOW_REMOTE_ADMIN).
	AllowRemoteAdmin bool
	// MaxRestoreBytes caps a backup uploaded to /restore (MAX_RESTORE_BYTES).
	MaxRestoreBytes int64
	// Collectors are registered with /metrics besides the HTTP ones (the
	// node's and the cluster's).
	Collectors []prometheus.Collector
	// Watch bounds the watch streams and blocking queries
	// (WATCH_MAX_WATCHERS, WATCH_BUFFER; zero fields: the defaults).
	Watch watch.Limits
	// WatchProgress is how often an idle watch stream gets a progress
	// event (DefaultWatchProgress when zero).
	WatchProgress time.Duration
}

// Service is the HTTP API of one node.
type Service struct {
	store   Store
	cluster Cluster
	opts    Options
	log     *logrus.Entry
	router  *mux.Router
	routes  []route
	// metrics is this node's Prometheus registry and HTTP instruments.
	metrics *httpMetrics
	// views hold listings' states between pages (list.go).
	views *fsm.Views
	// hub serves GET /watch/ and blocking queries from the FSM's history.
	hub *watch.Hub
	// frames are recent events' encoded SSE frames, shared by the watch
	// streams (watch.go).
	frames frameCache
}

// New builds the API over store and cl.
func New(store Store, cl Cluster, opts Options) *Service {
	if opts.Logger == nil {
		opts.Logger = logrus.StandardLogger()
	}
	s := &Service{
		store:   store,
		cluster: cl,
		opts:    opts,
		log:     opts.Logger.WithField("component", "http"),
		views:   fsm.NewViews(fsm.MaxViews, fsm.ViewTTL),
	}
	s.hub = watch.New(store.FSM(), opts.Watch)
	s.metrics = newHTTPMetrics(opts.Collectors...)
	s.metrics.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "raftkv_list_views_held",
		Help: "Views of the state held for the next pages of listings (at most 16, each for at most 30 s).",
	}, func() float64 { return float64(s.views.Len(time.Now())) }))
	s.metrics.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "raftkv_fsm_quota_bytes",
		Help: "MAX_DATA_BYTES: the key and value bytes this node, as leader, lets writes grow the data to (0: no quota); compare raftkv_fsm_bytes.",
	}, func() float64 { return float64(s.quota()) }))
	s.metrics.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftkv_watchers",
			Help: "Watch streams and blocking queries open on this node (at most WATCH_MAX_WATCHERS).",
		}, func() float64 { return float64(s.hub.Watchers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftkv_watch_history_events",
			Help: "Change events this node keeps for watchers that resume (at most WATCH_HISTORY_EVENTS).",
		}, func() float64 { return float64(s.store.FSM().History().Events) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftkv_watch_history_floor_index",
			Help: "The oldest log index a watch resumes from on this node (?index= below it is 410 history_compacted).",
		}, func() float64 { return float64(s.store.FSM().History().Floor.Index) }),
	)
	s.routes = s.routeTable()
	s.router = s.newRouter()
	return s
}

// ServeHTTP makes Service an http.Handler; panics become a logged 500.
func (s *Service) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &observedWriter{ResponseWriter: rw}
	defer s.finishRequest(w, r, time.Now()) // deferred first: runs after the recovery below
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.WithFields(logrus.Fields{"panic": p, "path": r.URL.Path}).Error("handler panicked")
			s.writeError(w, r, fmt.Errorf("internal error"))
		}
	}()
	w.Header().Set(HeaderServedBy, s.store.ID())
	s.router.ServeHTTP(w, r)
}

// requestContext bounds a request's raft work by the configured timeout.
func (s *Service) requestContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.opts.RequestTimeout)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers err through the error table (errors.go), with a
// message for users (publicMessage); what it keeps back, and every 5xx,
// goes to the log with the request id, which the message then names.
func (s *Service) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code := statusOf(err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	msg, withheld := publicMessage(err, status)
	id := requestIDOf(w, r)
	if withheld {
		msg += " (details in the node's log, request id " + id + ")"
	}
	if status >= 500 || withheld {
		// 503s are expected while a leader is elected; the rest deserve a look.
		level := logrus.WarnLevel
		if status == http.StatusServiceUnavailable {
			level = logrus.DebugLevel
		}
		s.log.WithFields(logrus.Fields{"method": r.Method, "path": r.URL.Path, "status": status, "code": code, "request_id": id}).
			WithError(err).Log(level, "request failed")
	}
	body := errorBody{Error: msg, Code: code}
	var cc casConflict
	var hc compacted
	switch {
	case errors.As(err, &cc):
		body.Index = &cc.current
	case errors.As(err, &hc):
		body.Index = &hc.oldest
	}
	var lh lockHeld
	if errors.As(err, &lh) {
		body.Index = &lh.token
	}
	writeJSON(w, status, body)
}

func setIndexHeader(w http.ResponseWriter, name string, index uint64) {
	w.Header().Set(name, strconv.FormatUint(index, 10))
}

// NewServer wraps h in an http.Server whose timeouts bound slow clients:
// headers must arrive promptly, and a response may take as long as a
// leader wait plus a forwarded request's own deadline.
func NewServer(h http.Handler, requestTimeout time.Duration, opts ...ServerOption) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2*requestTimeout + cluster.ForwardSlack + 5*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	for _, o := range opts {
		o(srv)
	}
	return srv
}

// Serve serves srv on ln, over TLS when tc is set (HTTP/1.1 only, so the
// server's timeouts and header limit mean what they say), until srv is
// shut down.
func Serve(srv *http.Server, ln net.Listener, tc *tls.Config) error {
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return srv.Serve(ln)
}

// ServerOption adjusts NewServer's defaults.
type ServerOption func(*http.Server)

// WithReadHeaderTimeout sets how long a client may take to send its
// request headers (and, over TLS, to finish the handshake).
func WithReadHeaderTimeout(d time.Duration) ServerOption {
	return func(s *http.Server) { s.ReadHeaderTimeout = d }
}

// WithServerLog sends net/http's own messages (TLS handshake failures,
// accept errors) to logger instead of the standard library's log.
func WithServerLog(logger *logrus.Logger) ServerOption {
	return func(s *http.Server) {
		s.ErrorLog = log.New(serverLogWriter{logger.WithField("component", "http-server")}, "", 0)
	}
}

// serverLogWriter logs net/http's lines at warn, except handshakes that
// ended before they began (port scans, TCP health checks) at debug.
type serverLogWriter struct{ log *logrus.Entry }

func (w serverLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := logrus.WarnLevel
	if strings.Contains(msg, "TLS handshake error") && strings.HasSuffix(msg, "EOF") {
		level = logrus.DebugLevel
	}
	w.log.Log(level, msg)
	return len(p), nil
}
