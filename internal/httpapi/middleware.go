package httpapi

// Middleware every request passes: authentication and authorization, and
// the observation that feeds the request log and the metrics (every
// request is counted and timed by route, and logged at debug level with
// its route, status, duration, the leader it was handed to and a request
// id).

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/auth"
	"github.com/raftkv/raftkv/internal/node"
)

// routeUnmatched labels requests that matched no route (404 and 405), so
// arbitrary paths cannot blow up the metrics' cardinality.
const routeUnmatched = "unmatched"

// Challenges sent with a 401 (RFC 6750 §3).
const (
	challengeMissing = `Bearer realm="raftkv"`
	challengeInvalid = `Bearer realm="raftkv", error="invalid_token"`
)

// authorize decides whether r may call a route of role need (an error to
// answer when not; on a 401 it sets the challenge).
//
// With authentication on (Options.Auth), every route but the public ones
// needs "Authorization: Bearer <token>": 401 without a valid token, 403
// when the token's role is below the route's (a peer route needs admin:
// nodes present their own admin token). With it off, only admin routes are
// guarded, by where the caller is (see adminCallerAllowed).
func (s *Service) authorize(w http.ResponseWriter, r *http.Request, need auth.Role) error {
	switch {
	case need == auth.RolePublic:
		return nil
	case s.opts.Auth == nil && need == auth.RoleAdmin:
		return s.adminCallerAllowed(r)
	case s.opts.Auth == nil:
		return nil
	}
	token, ok := bearerToken(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", challengeMissing)
		return fmt.Errorf("%w: send \"Authorization: Bearer <token>\"", ErrUnauthorized)
	}
	got := s.opts.Auth.Lookup(token)
	if got == auth.RoleNone {
		w.Header().Set("WWW-Authenticate", challengeInvalid)
		return fmt.Errorf("%w: invalid token", ErrUnauthorized)
	}
	if need == auth.RolePeer {
		need = auth.RoleAdmin
	}
	if got < need {
		return fmt.Errorf("%w: %s %s needs the %s role; the token has %s", ErrForbidden, r.Method, r.URL.Path, need, got)
	}
	return nil
}

// crossOrigin is net/http's rule for requests a browser sends on behalf of
// another site's page: Sec-Fetch-Site same-origin or none passes, any other
// value is refused; without it, an Origin that does not match Host is
// refused, and a request with neither (curl, other nodes, scripts) passes.
var crossOrigin = http.NewCrossOriginProtection()

// crossSite refuses a request to a state-changing route that a browser
// marks as cross-site. CrossOriginProtection lets safe methods through;
// the GET forms of /set, /remove and /join change state, so every method
// of a write route is checked as an unsafe one.
func crossSite(r *http.Request) error {
	check := r
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		c := *r
		c.Method = http.MethodPost
		check = &c
	}
	if crossOrigin.Check(check) != nil {
		from := r.Header.Get("Origin")
		if from == "" {
			from = "Sec-Fetch-Site: " + r.Header.Get("Sec-Fetch-Site")
		}
		return fmt.Errorf("%w (%s %s from %s)", ErrCrossSite, r.Method, r.URL.Path, from)
	}
	return nil
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header (the scheme is case-insensitive, RFC 7235).
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	token := strings.TrimSpace(h[len(scheme):])
	return token, token != ""
}

// adminCallerAllowed guards admin routes while authentication is off: the
// caller must be on this host (loopback), or on the host of a current
// cluster member (so a follower can forward /join and /leave to the leader,
// and a node can ask to join from its own host), unless ALLOW_REMOTE_ADMIN
// lets anyone in. The caller is the TCP peer; headers such as
// X-Forwarded-For are not trusted.
func (s *Service) adminCallerAllowed(r *http.Request) error {
	if s.opts.AllowRemoteAdmin {
		return nil
	}
	ip, err := netip.ParseAddr(callerHost(r))
	if err == nil {
		ip = ip.Unmap().WithZone("")
		if ip.IsLoopback() {
			return nil
		}
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if members, err := s.store.Members(ctx); err == nil && callerIsMember(ctx, ip, members, net.DefaultResolver.LookupNetIP) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s %s from %s", ErrRemoteAdmin, r.Method, r.URL.Path, callerHost(r))
}

// callerIsMember reports whether ip is the host of a member's Raft or
// registered HTTP address. Host names are resolved with resolve.
func callerIsMember(ctx context.Context, ip netip.Addr, members []node.Member, resolve func(ctx context.Context, network, host string) ([]netip.Addr, error)) bool {
	for _, m := range members {
		for _, addr := range []string{m.RaftAddr, m.HTTPAddr} {
			host, _, err := net.SplitHostPort(addr)
			if err != nil || host == "" {
				continue
			}
			if a, err := netip.ParseAddr(host); err == nil {
				if a.Unmap().WithZone("") == ip {
					return true
				}
				continue
			}
			addrs, err := resolve(ctx, "ip", host)
			if err != nil {
				continue
			}
			for _, a := range addrs {
				if a.Unmap().WithZone("") == ip {
					return true
				}
			}
		}
	}
	return false
}

// observedWriter records what the request log and the metrics need. The
// router's middleware fills in the route; forwarding fills in the leader.
type observedWriter struct {
	http.ResponseWriter
	status      int
	route       *route // the matched route; nil for 404 and 405
	forwardedTo string
	requestID   string // set once asked for
}

// id is the request's id (see requestID), the same every time it is asked.
func (o *observedWriter) id(r *http.Request) string {
	if o.requestID == "" {
		o.requestID = requestID(r)
	}
	return o.requestID
}

// requestIDOf is the id of the request w answers, for passing it on.
func requestIDOf(w http.ResponseWriter, r *http.Request) string {
	if o, ok := w.(*observedWriter); ok {
		return o.id(r)
	}
	return requestID(r)
}

func (o *observedWriter) WriteHeader(code int) {
	if o.status == 0 {
		o.status = code
	}
	o.ResponseWriter.WriteHeader(code)
}

func (o *observedWriter) Write(b []byte) (int, error) {
	if o.status == 0 {
		o.status = http.StatusOK
	}
	return o.ResponseWriter.Write(b)
}

// Flush and Unwrap keep streaming answers (profiles, large bodies) working
// through the wrapper; Hijack keeps connection takeover possible.
func (o *observedWriter) Flush() {
	if f, ok := o.ResponseWriter.(http.Flusher); ok {
		if o.status == 0 {
			o.status = http.StatusOK
		}
		f.Flush()
	}
}

func (o *observedWriter) Unwrap() http.ResponseWriter { return o.ResponseWriter }

func (o *observedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := o.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, http.ErrNotSupported
}

// noteForward records, for the request log, the leader a request was
// handed to.
func noteForward(w http.ResponseWriter, leader string) {
	if o, ok := w.(*observedWriter); ok {
		o.forwardedTo = leader
	}
}

// finishRequest counts, times and (at debug level) logs one request.
func (s *Service) finishRequest(o *observedWriter, r *http.Request, start time.Time) {
	elapsed := time.Since(start)
	route := routeUnmatched
	if o.route != nil {
		route = o.route.path
	}
	status := o.status
	if status == 0 {
		status = http.StatusOK // a handler that wrote nothing answered 200
	}
	code := strconv.Itoa(status)
	s.metrics.requests.WithLabelValues(route, r.Method, code).Inc()
	s.metrics.duration.WithLabelValues(route, r.Method).Observe(elapsed.Seconds())

	if !s.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		return
	}
	s.log.WithFields(logrus.Fields{
		"method":       r.Method,
		"route":        route,
		"status":       status,
		"duration_ms":  float64(elapsed.Microseconds()) / 1000,
		"forwarded_to": o.forwardedTo,
		"request_id":   o.id(r),
	}).Debug("request")
}

// requestID is the client's Idempotency-Key or X-Request-Id, else a fresh
// id: this process's random prefix and a counter.
func requestID(r *http.Request) string {
	if v := r.Header.Get(HeaderIdempotencyKey); v != "" {
		return v
	}
	if v := r.Header.Get(HeaderRequestID); v != "" {
		return v
	}
	return requestIDPrefix + strconv.FormatUint(requestSeq.Add(1), 10)
}

var (
	requestSeq      atomic.Uint64
	requestIDPrefix = func() string {
		var b [4]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:]) + "-"
	}()
)
