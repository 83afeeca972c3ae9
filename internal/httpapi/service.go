// Package httpapi serves raftkv's HTTP API: the seed-compatible query
// endpoints (/join, /set, /get, /remove), the REST form (/kv/{key}), and
// membership and status endpoints. Any node accepts any request; writes and
// linearizable reads are forwarded to the leader.
package httpapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/auth"
	"github.com/raftkv/raftkv/internal/node"
)

// Header names.
const (
	// HeaderForwarded marks a request forwarded by another node (its value
	// is the number of hops so far); such a request is not forwarded again.
	HeaderForwarded = "X-Raftkv-Forwarded"
	// HeaderServedBy names the node that produced the answer.
	HeaderServedBy = "X-Raftkv-Served-By"
	// HeaderRaftIndex carries the Raft index of a write, or a key's
	// modification index on reads.
	HeaderRaftIndex = "X-Raft-Index"
	// HeaderAppliedIndex carries the serving node's applied index on
	// stale reads, so a client can tell how fresh the answer is.
	HeaderAppliedIndex = "X-Raft-Applied-Index"
	// HeaderLastContact carries, on stale reads, milliseconds since this
	// node last heard from the leader (0 on the leader itself).
	HeaderLastContact = "X-Raft-Last-Contact"
	// HeaderReplayed marks a write answered from the idempotency table:
	// the original outcome, nothing applied now.
	HeaderReplayed = "X-Raftkv-Replayed"
)

// Options configures a Service.
type Options struct {
	MaxKeyBytes    int
	MaxValueBytes  int
	RequestTimeout time.Duration // bounds each request's raft work
	// EnablePprof mounts net/http/pprof under /debug/pprof/. Off by
	// default: profiles expose internals and cost CPU while taken.
	EnablePprof bool
	Logger      *logrus.Logger
	// Auth, when set, turns authentication on: every route but the
	// public ones (RolePublic) needs a bearer token from this store
	// (auth.go).
	Auth *auth.Store
	// AllowRemoteAdmin lets admin routes answer callers from any host
	// while Auth is nil (ALLOW_REMOTE_ADMIN).
	AllowRemoteAdmin bool

	// BootstrapExpect is RAFT_BOOTSTRAP_EXPECT: with an empty volume,
	// Announce bootstraps once this many nodes see each other (0: off).
	BootstrapExpect int

	// ClientTLS, when set, makes calls to other nodes' APIs use HTTPS with
	// this configuration (the cluster is uniform: all TLS or none).
	ClientTLS *tls.Config

	// MaxRestoreBytes caps a backup uploaded to /restore (MAX_RESTORE_BYTES).
	MaxRestoreBytes int64
}

// Service is the HTTP API of one node.
type Service struct {
	node   *node.Node
	opts   Options
	log    *logrus.Entry
	client *http.Client // forwarding and announcing, kept alive
	router *mux.Router
	links  sync.Map // leader HTTP address -> *leaderLink

	routeRoles []RouteRole // what each route needs, for Routes
	// metrics is this node's Prometheus registry and HTTP instruments.
	metrics *httpMetrics
}

// New builds the API for n.
func New(n *node.Node, opts Options) *Service {
	if opts.Logger == nil {
		opts.Logger = logrus.StandardLogger()
	}
	s := &Service{
		node:   n,
		opts:   opts,
		log:    opts.Logger.WithField("component", "http"),
		client: newNodeClient(opts.ClientTLS),
	}
	s.metrics = newHTTPMetrics(n)
	s.router = s.routes()
	return s
}

// Close releases idle forwarding connections.
func (s *Service) Close() { s.client.CloseIdleConnections() }

func (s *Service) routes() *mux.Router {
	r := mux.NewRouter()
	// Keys are taken byte-exact from the path: never clean "a//b" into "a/b".
	r.SkipClean(true)
	r.UseEncodedPath()
	r.Use(noteRoute) // names the route for metrics and the request log

	// Every route names the least role that may call it (auth.go).
	s.handle(r, "/set", RoleWrite, s.handleSet, http.MethodGet, http.MethodPost)
	s.handle(r, "/get", RoleRead, s.handleGet, http.MethodGet, http.MethodPost)
	s.handle(r, "/remove", RoleWrite, s.handleRemove, http.MethodGet, http.MethodPost)
	// GET needs read, PUT and DELETE need write: one prefix, two routes.
	s.handlePrefix(r, "/kv/", RoleRead, http.HandlerFunc(s.handleKV), http.MethodGet)
	s.handlePrefix(r, "/kv/", RoleWrite, http.HandlerFunc(s.handleKV), http.MethodPut, http.MethodDelete)

	s.handle(r, "/join", RoleAdmin, s.handleJoin, http.MethodGet, http.MethodPost)
	s.handle(r, "/leave", RoleAdmin, s.handleLeave, http.MethodPost)
	s.handle(r, "/nodes", RoleRead, s.handleNodes, http.MethodGet)
	s.handle(r, "/status", RoleRead, s.handleStatus, http.MethodGet)
	s.handle(r, "/snapshot", RoleAdmin, s.handleSnapshot, http.MethodPost)
	s.handle(r, "/promote", RoleAdmin, s.handlePromote, http.MethodPost)
	s.handle(r, "/transfer-leadership", RoleAdmin, s.handleTransferLeadership, http.MethodPost)
	s.handle(r, "/backup", RoleAdmin, s.handleBackup, http.MethodGet)
	s.handle(r, "/restore", RoleAdmin, s.handleRestore, http.MethodPost)
	s.handle(r, "/health", RolePublic, s.handleHealth, http.MethodGet)
	s.handle(r, "/ready", RolePublic, s.handleReady, http.MethodGet)
	s.handle(r, "/metrics", RoleRead, s.handleMetrics, http.MethodGet)
	s.handle(r, pathApply, RolePeer, s.handlePeerApply, http.MethodPost)
	s.handle(r, pathReadIndex, RolePeer, s.handlePeerReadIndex, http.MethodPost)
	s.handle(r, pathPeerInfo, RolePeer, s.handlePeerInfo, http.MethodGet)
	if s.opts.EnablePprof {
		s.handle(r, "/debug/pprof/cmdline", RoleAdmin, pprof.Cmdline, http.MethodGet)
		s.handle(r, "/debug/pprof/profile", RoleAdmin, pprof.Profile, http.MethodGet)
		s.handle(r, "/debug/pprof/symbol", RoleAdmin, pprof.Symbol, http.MethodGet, http.MethodPost)
		s.handle(r, "/debug/pprof/trace", RoleAdmin, pprof.Trace, http.MethodGet)
		s.handlePrefix(r, "/debug/pprof/", RoleAdmin, http.HandlerFunc(pprof.Index), http.MethodGet)
	}

	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, fmt.Errorf("%w: %s", ErrRouteNotFound, r.URL.Path))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allowedMethods(r))
		s.writeError(w, r, fmt.Errorf("%w: %s %s", ErrMethodNotAllowed, r.Method, r.URL.Path))
	})
	return r
}

// allowedMethods answers the Allow header for a 405, from the route table.
func allowedMethods(r *http.Request) string {
	switch p := r.URL.Path; {
	case p == "/set", p == "/get", p == "/remove", p == "/join":
		return "GET, POST"
	case p == "/leave", p == "/snapshot", p == pathApply, p == pathReadIndex, p == "/promote", p == "/transfer-leadership", p == "/restore":
		return "POST"
	case len(p) > 4 && p[:4] == "/kv/":
		return "GET, PUT, DELETE"
	}
	return "GET"
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
	w.Header().Set(HeaderServedBy, s.node.ID())
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

func (s *Service) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code := statusOf(err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if status >= 500 {
		// 503s are expected while a leader is elected; the rest deserve a look.
		level := logrus.WarnLevel
		if status == http.StatusServiceUnavailable {
			level = logrus.DebugLevel
		}
		s.log.WithFields(logrus.Fields{"method": r.Method, "path": r.URL.Path, "status": status}).WithError(err).Log(level, "request failed")
	}
	body := errorBody{Error: err.Error(), Code: code}
	var cc casConflict
	if errors.As(err, &cc) {
		body.Index = &cc.current
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
		WriteTimeout:      2*requestTimeout + forwardSlack + 5*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	for _, o := range opts {
		o(srv)
	}
	return srv
}
