package httpapi

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/raftkv/raftkv/internal/auth"
	"github.com/raftkv/raftkv/internal/node"
)

// Role is the least privilege a route needs. Roles are ordered: each one
// may do everything the roles below it may.
type Role int

const (
	// RolePublic routes answer anyone: liveness for load balancers.
	RolePublic Role = iota
	// RoleRead may read keys and cluster state.
	RoleRead
	// RoleWrite may also set and remove keys.
	RoleWrite
	// RoleAdmin may also change membership and take snapshots.
	RoleAdmin
	// RolePeer is node-to-node traffic (the batched peer protocol). With
	// authentication on it needs an admin token (nodes send their own, see
	// peerRequest); with it off it is open, like the Raft port.
	RolePeer
)

func (r Role) String() string {
	switch r {
	case RolePublic:
		return "public"
	case RoleRead:
		return "read"
	case RoleWrite:
		return "write"
	case RoleAdmin:
		return "admin"
	case RolePeer:
		return "peer"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// tokenRole is the token role that may call a route of role r.
func (r Role) tokenRole() auth.Role {
	switch r {
	case RoleRead:
		return auth.RoleRead
	case RoleWrite:
		return auth.RoleWrite
	case RolePublic:
		return auth.RoleNone
	}
	return auth.RoleAdmin // RoleAdmin, RolePeer, and anything unknown
}

// RouteRole is one registered route and the role it needs, for tests that
// check every route is guarded as documented.
type RouteRole struct {
	Path    string
	Prefix  bool // Path is a prefix (/kv/, /debug/pprof/)
	Methods []string
	Role    Role
}

// Routes lists the routes registered with a role, in registration order.
func (s *Service) Routes() []RouteRole { return append([]RouteRole(nil), s.routeRoles...) }

// handle registers h at path for methods, guarded by role.
func (s *Service) handle(r *mux.Router, path string, role Role, h http.HandlerFunc, methods ...string) {
	s.routeRoles = append(s.routeRoles, RouteRole{Path: path, Methods: methods, Role: role})
	r.Handle(path, s.authorize(role, h)).Methods(methods...)
}

// handlePrefix registers h for every path under prefix, guarded by role.
func (s *Service) handlePrefix(r *mux.Router, prefix string, role Role, h http.Handler, methods ...string) {
	s.routeRoles = append(s.routeRoles, RouteRole{Path: prefix, Prefix: true, Methods: methods, Role: role})
	r.PathPrefix(prefix).Handler(s.authorize(role, h)).Methods(methods...)
}

// Challenges sent with a 401 (RFC 6750 §3).
const (
	challengeMissing = `Bearer realm="raftkv"`
	challengeInvalid = `Bearer realm="raftkv", error="invalid_token"`
)

// authorize guards h so only callers holding role reach it.
//
// With authentication on (Options.Auth), every route but the public ones
// needs "Authorization: Bearer <token>": 401 without a valid token, 403
// when the token's role is below the route's. With it off, only admin
// routes are guarded, by where the caller is (see adminCallerAllowed).
func (s *Service) authorize(role Role, h http.Handler) http.Handler {
	if role == RolePublic {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if challenge, err := s.check(r, role); err != nil {
			if challenge != "" {
				w.Header().Set("WWW-Authenticate", challenge)
			}
			s.writeError(w, r, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// check decides whether r may call a route of role need; on a 401 it also
// returns the challenge to send.
func (s *Service) check(r *http.Request, need Role) (challenge string, err error) {
	if s.opts.Auth == nil {
		if need == RoleAdmin {
			return "", s.adminCallerAllowed(r)
		}
		return "", nil
	}
	token, ok := bearerToken(r)
	if !ok {
		return challengeMissing, fmt.Errorf("%w: send \"Authorization: Bearer <token>\"", ErrUnauthorized)
	}
	got := s.opts.Auth.Lookup(token)
	if got == auth.RoleNone {
		return challengeInvalid, fmt.Errorf("%w: invalid token", ErrUnauthorized)
	}
	if want := need.tokenRole(); got < want {
		return "", fmt.Errorf("%w: %s %s needs the %s role; the token has %s", ErrForbidden, r.Method, r.URL.Path, want, got)
	}
	return "", nil
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
		if members, err := s.node.Members(ctx); err == nil && callerIsMember(ctx, ip, members, net.DefaultResolver.LookupNetIP) {
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

// peerRequest builds a request this node sends on its own behalf to
// another node (the peer protocol, joining, probing members). Every such
// request is made here, so each carries the node's credential when
// authentication is on: the first admin token of the shared tokens file.
// (Requests forwarded for a client carry the client's own Authorization
// header instead; see forward.)
func (s *Service) peerRequest(ctx context.Context, method, url string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	if s.opts.Auth != nil {
		req.Header.Set("Authorization", "Bearer "+s.opts.Auth.NodeToken())
	}
	return req, nil
}
