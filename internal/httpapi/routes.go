package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/raftkv/raftkv/internal/auth"
	"github.com/raftkv/raftkv/internal/cluster"
)

// handlerFunc serves one request. It returns nil once it has answered;
// an error is answered by the route's adapter through the error table.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// route is every fact about one route: the request log and the metrics
// label it by path, the 405's Allow header is derived from the methods,
// and write decides the class of a forward to the leader that breaks
// after sending (a write's outcome is unknown, 504; a read's answer is
// merely lost, 502).
type route struct {
	path    string
	prefix  bool // path is a prefix (/kv/, /debug/pprof/)
	methods []string
	role    auth.Role // the least role that may call it (middleware.go)
	write   bool      // may change state
	// params are the query and form parameters the route knows; any other
	// is refused with a 400 that lists these (see checkParams).
	params []string
	serve  handlerFunc
}

// HEAD is accepted wherever a read answers GET: net/http answers it as
// the GET without the body.
var (
	get     = []string{http.MethodGet}
	getHead = []string{http.MethodGet, http.MethodHead}
	post    = []string{http.MethodPost}
	getPost = []string{http.MethodGet, http.MethodPost}
	readAll = []string{http.MethodGet, http.MethodHead, http.MethodPost}
)

// Parameter lists, shared by the routes that take the same ones.
var (
	writeParams   = []string{"cas", "requestId"}
	readingParams = []string{"consistency", "minIndex", "min_index"} // min_index: deprecated alias
	nodeIDParams  = []string{"nodeId"}
)

func plus(a []string, b ...string) []string { return append(slices.Clone(b), a...) }

// routeTable is the one list of routes.
func (s *Service) routeTable() []route {
	const (
		public, read, write, admin, peer = auth.RolePublic, auth.RoleRead, auth.RoleWrite, auth.RoleAdmin, auth.RolePeer
	)
	rs := []route{
		{path: "/set", methods: getPost, role: write, write: true, params: plus(writeParams, "key", "value"), serve: s.handleSet},
		{path: "/get", methods: readAll, role: read, params: plus(readingParams, "key"), serve: s.handleGet},
		{path: "/remove", methods: getPost, role: write, write: true, params: plus(writeParams, "key"), serve: s.handleRemove},
		// GET needs read, PUT and DELETE need write: one prefix, two routes.
		{path: "/kv/", prefix: true, methods: getHead, role: read, params: readingParams, serve: s.handleKVGet},
		{path: "/kv/", prefix: true, methods: []string{http.MethodPut, http.MethodDelete}, role: write, write: true, params: writeParams, serve: s.handleKVWrite},

		{path: "/txn", methods: post, role: write, write: true, params: []string{"requestId"}, serve: s.handleTxn},

		{path: "/join", methods: getPost, role: admin, write: true, params: []string{"nodeId", "raftPort", "raftAddr", "httpAddr", "voter"}, serve: s.handleJoin},
		{path: "/leave", methods: post, role: admin, write: true, params: nodeIDParams, serve: s.handleLeave},
		{path: "/nodes", methods: getHead, role: read, params: []string{"stale"}, serve: s.handleNodes},
		{path: "/status", methods: getHead, role: read, serve: s.handleStatus},
		{path: "/snapshot", methods: post, role: admin, write: true, serve: s.handleSnapshot},
		{path: "/promote", methods: post, role: admin, write: true, params: nodeIDParams, serve: s.handlePromote},
		{path: "/transfer-leadership", methods: post, role: admin, write: true, params: nodeIDParams, serve: s.handleTransferLeadership},
		{path: "/backup", methods: getHead, role: admin, serve: s.handleBackup},
		{path: "/restore", methods: post, role: admin, write: true, serve: s.handleRestore},
		{path: "/health", methods: getHead, role: public, serve: s.handleHealth},
		{path: "/ready", methods: getHead, role: public, serve: s.handleReady},
		{path: "/metrics", methods: getHead, role: read, serve: s.handleMetrics},

		{path: cluster.PathApply, methods: post, role: peer, write: true, serve: s.handlePeerApply},
		{path: cluster.PathReadIndex, methods: post, role: peer, serve: s.handlePeerReadIndex},
		{path: cluster.PathInfo, methods: get, role: peer, serve: s.handlePeerInfo},
	}
	if s.opts.EnablePprof {
		seconds := []string{"seconds"}
		rs = append(rs,
			route{path: "/debug/pprof/cmdline", methods: get, role: admin, serve: plain(pprof.Cmdline)},
			route{path: "/debug/pprof/profile", methods: get, role: admin, params: seconds, serve: plain(pprof.Profile)},
			route{path: "/debug/pprof/symbol", methods: getPost, role: admin, serve: plain(pprof.Symbol)},
			route{path: "/debug/pprof/trace", methods: get, role: admin, params: seconds, serve: plain(pprof.Trace)},
			// The named profiles: /debug/pprof/heap?debug=1&gc=1, allocs?seconds=10, …
			route{path: "/debug/pprof/", prefix: true, methods: get, role: admin, params: []string{"debug", "gc", "seconds"}, serve: plain(pprof.Index)},
		)
	}
	return rs
}

// plain adapts a handler that answers everything itself.
func plain(h http.HandlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error { h(w, r); return nil }
}

func (s *Service) newRouter() *mux.Router {
	r := mux.NewRouter()
	// Keys are taken byte-exact from the path: never clean "a//b" into "a/b".
	r.SkipClean(true)
	r.UseEncodedPath()
	for i := range s.routes {
		rt := &s.routes[i]
		// Methods upper-cases the slice it gets in place: give it a copy.
		if rt.prefix {
			r.PathPrefix(rt.path).Handler(s.adapt(rt)).Methods(slices.Clone(rt.methods)...)
		} else {
			r.Handle(rt.path, s.adapt(rt)).Methods(slices.Clone(rt.methods)...)
		}
	}
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, fmt.Errorf("%w: %s", ErrRouteNotFound, r.URL.Path))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", s.allow(r.URL.Path))
		s.writeError(w, r, fmt.Errorf("%w: %s %s", ErrMethodNotAllowed, r.Method, r.URL.Path))
	})
	return r
}

// adapt is the one place a route's handler is wrapped: it names the route
// for the request log and the metrics, refuses a cross-site browser
// request to a write route, checks the caller's role and the parameters'
// names, and
// answers a returned error through the error table.
func (s *Service) adapt(rt *route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o, ok := w.(*observedWriter); ok {
			o.route = rt
		}
		var err error
		if rt.write {
			err = crossSite(r)
		}
		if err == nil {
			err = s.authorize(w, r, rt.role)
		}
		if err == nil {
			err = s.cluster.CheckClusterID(r)
		}
		if err == nil {
			err = rt.checkQuery(r)
		}
		if err == nil {
			err = rt.serve(w, r.WithContext(context.WithValue(r.Context(), routeKey{}, rt)))
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	})
}

// routeKey keys the matched *route in a request's context, for the form
// body's parameter check (readParams).
type routeKey struct{}

// checkQuery refuses a query string that does not parse or names a
// parameter the route does not know.
func (rt *route) checkQuery(r *http.Request) error {
	if r.URL.RawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return fmt.Errorf("%w: query string: %v", ErrBadRequest, err)
	}
	return rt.checkParams(q)
}

// checkParams refuses values that name a parameter the route does not
// know, naming those and the ones it knows.
func (rt *route) checkParams(values url.Values) error {
	var unknown []string
	for name := range values {
		if !slices.Contains(rt.params, name) {
			unknown = append(unknown, strconv.Quote(name))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	noun := "parameter"
	if len(unknown) > 1 {
		noun = "parameters"
	}
	known := "takes no parameters"
	if len(rt.params) > 0 {
		known = "takes only " + strings.Join(rt.params, ", ")
	}
	return fmt.Errorf("%w: unknown %s %s (%s %s)", ErrBadRequest, noun, strings.Join(unknown, ", "), rt.path, known)
}

// match is the route that serves method on path, or nil.
func (s *Service) match(method, path string) *route {
	for i, rt := range s.routes {
		if rt.matches(path) && slices.Contains(rt.methods, method) {
			return &s.routes[i]
		}
	}
	return nil
}

func (rt route) matches(path string) bool {
	if rt.prefix {
		return strings.HasPrefix(path, rt.path)
	}
	return path == rt.path
}

// allow is the Allow header of a 405 on path: every method a route there
// accepts.
func (s *Service) allow(path string) string {
	var methods []string
	for _, rt := range s.routes {
		if rt.matches(path) {
			methods = append(methods, rt.methods...)
		}
	}
	return strings.Join(methods, ", ")
}

// RouteRole is one registered route and the role it needs, for tests that
// check every route is guarded as documented.
type RouteRole struct {
	Path    string
	Prefix  bool // Path is a prefix (/kv/, /debug/pprof/)
	Methods []string
	Role    auth.Role
	Write   bool     // may change state
	Params  []string // the parameters it knows
}

// Routes lists the routes, in table order.
func (s *Service) Routes() []RouteRole {
	out := make([]RouteRole, len(s.routes))
	for i, rt := range s.routes {
		out[i] = RouteRole{Path: rt.path, Prefix: rt.prefix, Methods: slices.Clone(rt.methods), Role: rt.role, Write: rt.write, Params: slices.Clone(rt.params)}
	}
	return out
}
