package httpapi

import (
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

// handlerFunc serves one request with its parameters, parsed and checked
// against the route's by the adapter (readParams). It returns nil once it
// has answered; an error is answered by the adapter through the error
// table.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p params) error

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
	// is refused with a 400 that lists these (see checkNames).
	params []string
	// flagged are parameters the route knows only together with a flag
	// (see flagged); a route's parameter set is params plus these.
	flagged []flagged
	// form: a POST may carry the parameters in an
	// application/x-www-form-urlencoded body, which the adapter reads
	// (readParams). Other routes leave the body to the handler.
	form  bool
	serve handlerFunc
}

// flagged are parameters a route knows only when the boolean parameter
// flag is given and on (by params.flag's rule; a malformed flag counts as
// on here and is refused by the handler's own flag read). flag itself
// must be in the route's params. For example GET /kv/{prefix}?recurse
// could be
//
//	params: plus(readingParams, "recurse"), flagged: []flagged{{flag: "recurse", params: []string{"limit", "after"}}}
//
// and "?limit=5" alone is a 400 that names recurse; the handler branches
// on p.flag("recurse", false). TestUnknownParameters lists such a
// parameter as "recurse>limit".
type flagged struct {
	flag   string
	params []string
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
		{path: "/set", methods: getPost, role: write, write: true, params: plus(writeParams, "key", "value"), form: true, serve: s.handleSet},
		{path: "/get", methods: readAll, role: read, params: plus(readingParams, "key"), form: true, serve: s.handleGet},
		{path: "/remove", methods: getPost, role: write, write: true, params: plus(writeParams, "key"), form: true, serve: s.handleRemove},
		// GET needs read, PUT and DELETE need write: one prefix, two routes.
		// ?recurse: a prefix, not a key (list.go).
		{path: "/kv/", prefix: true, methods: getHead, role: read, params: plus(readingParams, "recurse", "index", "wait"), flagged: []flagged{{flag: "recurse", params: rangeParams}}, serve: s.handleKVGet},
		{path: "/kv/", prefix: true, methods: []string{http.MethodPut, http.MethodDelete}, role: write, write: true, params: plus(writeParams, "recurse", "ttl", "lease"), serve: s.handleKVWrite},

		{path: "/txn", methods: post, role: write, write: true, params: []string{"requestId"}, serve: s.handleTxn},

		{path: "/watch/", prefix: true, methods: get, role: read, params: []string{"index"}, serve: s.handleWatch},

		// TTLs, leases and locks (leases.go).
		{path: "/kv/", prefix: true, methods: post, role: write, write: true, params: []string{"touch", "requestId"}, serve: s.handleKVTouch},
		{path: "/leases", methods: post, role: write, write: true, params: []string{"ttl", "requestId"}, serve: s.handleLeaseGrant},
		{path: "/leases/", prefix: true, methods: getHead, role: read, params: []string{"consistency"}, serve: s.handleLease},
		{path: "/leases/", prefix: true, methods: []string{http.MethodPost, http.MethodDelete}, role: write, write: true, params: []string{"requestId"}, serve: s.handleLease},
		{path: "/locks/", prefix: true, methods: post, role: write, write: true, params: []string{"lease", "wait"}, serve: s.handleLock},
		{path: "/locks/", prefix: true, methods: []string{http.MethodDelete}, role: write, write: true, params: []string{"token"}, serve: s.handleLock},

		{path: "/join", methods: getPost, role: admin, write: true, params: []string{"nodeId", "raftPort", "raftAddr", "httpAddr", "voter"}, form: true, serve: s.handleJoin},
		{path: "/leave", methods: post, role: admin, write: true, params: nodeIDParams, form: true, serve: s.handleLeave},
		{path: "/nodes", methods: getHead, role: read, params: []string{"stale"}, serve: s.handleNodes},
		{path: "/status", methods: getHead, role: read, serve: s.handleStatus},
		{path: "/snapshot", methods: post, role: admin, write: true, form: true, serve: s.handleSnapshot},
		{path: "/promote", methods: post, role: admin, write: true, params: nodeIDParams, form: true, serve: s.handlePromote},
		{path: "/transfer-leadership", methods: post, role: admin, write: true, params: nodeIDParams, form: true, serve: s.handleTransferLeadership},
		{path: "/backup", methods: getHead, role: admin, serve: s.handleBackup},
		{path: "/restore", methods: post, role: admin, write: true, serve: s.handleRestore},
		{path: "/health", methods: getHead, role: public, serve: s.handleHealth},
		{path: "/ready", methods: getHead, role: public, serve: s.handleReady},
		{path: "/metrics", methods: getHead, role: read, serve: s.handleMetrics},

		// The web console (ui.go, internal/ui): public files; the page asks
		// for a token and learns its role from /auth/whoami.
		{path: "/ui", methods: getHead, role: public, serve: s.handleUI},
		{path: "/ui/", prefix: true, methods: getHead, role: public, serve: s.handleUI},
		{path: "/auth/whoami", methods: getHead, role: read, serve: s.handleWhoami},

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

// plain adapts a handler that answers everything itself (and reads its
// parameters itself, after the adapter has checked their names).
func plain(h http.HandlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ params) error { h(w, r); return nil }
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
// request to a write route, checks the caller's role, parses the
// parameters once and checks their names (readParams), hands them to the
// handler, and answers a returned error through the error table.
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
		var p params
		if err == nil {
			p, err = s.readParams(w, r, rt)
		}
		if err == nil {
			err = rt.serve(w, r, p)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	})
}

// checkNames refuses values that name a parameter the route does not
// know, naming those and the ones it knows.
func (rt *route) checkNames(values url.Values) error {
	var unknown []string
	for name := range values {
		if !rt.knows(name) {
			unknown = append(unknown, strconv.Quote(name))
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		noun := "parameter"
		if len(unknown) > 1 {
			noun = "parameters"
		}
		return fmt.Errorf("%w: unknown %s %s (%s %s)", ErrBadRequest, noun, strings.Join(unknown, ", "), rt.path, rt.known())
	}
	return nil
}

// checkFlags refuses a flagged parameter whose flag is not on in values
// (all of a request's parameters: the flag may be in the query and the
// parameter in the form body).
func (rt *route) checkFlags(values url.Values) error {
	for _, f := range rt.flagged {
		if flagOn(values, f.flag) {
			continue
		}
		var without []string
		for _, name := range f.params {
			if _, ok := values[name]; ok {
				without = append(without, strconv.Quote(name))
			}
		}
		if len(without) > 0 {
			return fmt.Errorf("%w: %s only with %s (%s %s)", ErrBadRequest, strings.Join(without, ", "), f.flag, rt.path, rt.known())
		}
	}
	return nil
}

// knows reports whether name is one of the route's parameters, flagged
// or not.
func (rt *route) knows(name string) bool {
	if slices.Contains(rt.params, name) {
		return true
	}
	for _, f := range rt.flagged {
		if slices.Contains(f.params, name) {
			return true
		}
	}
	return false
}

// known describes the route's parameters for a 400.
func (rt *route) known() string {
	if len(rt.params) == 0 {
		return "takes no parameters"
	}
	s := "takes only " + strings.Join(rt.params, ", ")
	for _, f := range rt.flagged {
		s += "; with " + f.flag + " also " + strings.Join(f.params, ", ")
	}
	return s
}

// flagOn reports whether the flag parameter name is given and not
// "false" or "0" (params.flag's rule; other values are the handler's to
// refuse).
func flagOn(values url.Values, name string) bool {
	vs, ok := values[name]
	return ok && (len(vs) == 0 || (vs[0] != "false" && vs[0] != "0"))
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
	// Flagged are the parameters it knows only with a flag on, by flag.
	Flagged map[string][]string
	Form    bool // a POST may carry the parameters in a form body
}

// Routes lists the routes, in table order.
func (s *Service) Routes() []RouteRole {
	out := make([]RouteRole, len(s.routes))
	for i, rt := range s.routes {
		out[i] = RouteRole{Path: rt.path, Prefix: rt.prefix, Methods: slices.Clone(rt.methods), Role: rt.role, Write: rt.write, Params: slices.Clone(rt.params), Form: rt.form}
		for _, f := range rt.flagged {
			if out[i].Flagged == nil {
				out[i].Flagged = map[string][]string{}
			}
			out[i].Flagged[f.flag] = slices.Clone(f.params)
		}
	}
	return out
}
