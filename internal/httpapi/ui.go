package httpapi

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/raftkv/raftkv/internal/auth"
	"github.com/raftkv/raftkv/internal/ui"
)

// handleUI serves the web console's files (internal/ui). They are public:
// the page asks for a token itself, and every call it makes goes through
// the API's own role checks.
func (s *Service) handleUI(w http.ResponseWriter, r *http.Request, _ params) error {
	err := ui.Serve(w, r)
	if errors.Is(err, ui.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrRouteNotFound, r.URL.Path)
	}
	return err
}

// whoami is the answer of GET /auth/whoami.
type whoami struct {
	// Auth: authentication is on (AUTH_TOKENS_FILE).
	Auth bool `json:"auth"`
	// Role is what the caller may do: with auth on, its token's role
	// ("read", "write" or "admin"); with auth off, "admin" when admin
	// routes accept this caller (adminCallerAllowed), else "write".
	Role string `json:"role"`
}

// handleWhoami tells a caller the role its request carries, so a client
// (the web console) can offer only what it may do. The route needs the
// read role: with auth on, a missing or invalid token is the usual 401.
func (s *Service) handleWhoami(w http.ResponseWriter, r *http.Request, _ params) error {
	out := whoami{Auth: s.opts.Auth != nil}
	switch {
	case out.Auth:
		token, _ := bearerToken(r) // the adapter's authorize checked it
		out.Role = s.opts.Auth.Lookup(token).String()
	case s.adminCallerAllowed(r) == nil:
		out.Role = auth.RoleAdmin.String()
	default:
		out.Role = auth.RoleWrite.String()
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
