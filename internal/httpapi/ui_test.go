package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/internal/auth"
	"github.com/raftkv/raftkv/internal/ui"
)

// TestUIRoutes: the console's files are public even with auth on, an
// unknown file is the API's JSON 404, and other methods are 405.
func TestUIRoutes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(randomToken(t)+" admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := auth.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s, _, _ := newFakeService(t, Options{Auth: store})
	for _, target := range []string{"/ui/", "/ui/app.js", "/ui/style.css"} {
		rec := call(s, http.MethodGet, target, "", nil)
		if rec.Code != 200 || rec.Header().Get("Content-Security-Policy") != ui.ContentSecurityPolicy {
			t.Errorf("GET %s without a token: %d, CSP %q", target, rec.Code, rec.Header().Get("Content-Security-Policy"))
		}
	}
	if rec := call(s, http.MethodGet, "/ui", "", nil); rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "ui/" {
		t.Errorf("GET /ui: %d Location %q", rec.Code, rec.Header().Get("Location"))
	}
	if rec := call(s, http.MethodGet, "/ui/missing.js", "", nil); rec.Code != 404 || errorOf(t, rec).Code != "not_found" {
		t.Errorf("GET /ui/missing.js: %d %s", rec.Code, rec.Body)
	}
	if rec := call(s, http.MethodPost, "/ui/", "", nil); rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /ui/: %d Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
	if rec := call(s, http.MethodGet, "/auth/whoami", "", nil); rec.Code != 401 || errorOf(t, rec).Code != "unauthorized" {
		t.Errorf("whoami without a token, auth on: %d %s", rec.Code, rec.Body)
	}
}

// TestWhoami: the role the caller's request carries.
func TestWhoami(t *testing.T) {
	tok := map[auth.Role]string{auth.RoleRead: randomToken(t), auth.RoleWrite: randomToken(t), auth.RoleAdmin: randomToken(t)}
	path := filepath.Join(t.TempDir(), "tokens")
	file := fmt.Sprintf("%s admin\n%s write\n%s read\n", tok[auth.RoleAdmin], tok[auth.RoleWrite], tok[auth.RoleRead])
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := auth.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	on, _, _ := newFakeService(t, Options{Auth: store})
	off, _, _ := newFakeService(t, Options{})
	tests := []struct {
		name   string
		s      *Service
		remote string
		header http.Header
		want   string
	}{
		{"read token", on, "127.0.0.1:40000", http.Header{"Authorization": {"Bearer " + tok[auth.RoleRead]}}, `{"auth":true,"role":"read"}`},
		{"write token", on, "127.0.0.1:40000", http.Header{"Authorization": {"Bearer " + tok[auth.RoleWrite]}}, `{"auth":true,"role":"write"}`},
		{"admin token", on, "127.0.0.1:40000", http.Header{"Authorization": {"bearer " + tok[auth.RoleAdmin]}}, `{"auth":true,"role":"admin"}`},
		{"auth off, loopback", off, "127.0.0.1:40000", nil, `{"auth":false,"role":"admin"}`},
		{"auth off, a stranger", off, "192.0.2.8:40000", nil, `{"auth":false,"role":"write"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/auth/whoami", nil)
			req.RemoteAddr = tt.remote
			for k, vs := range tt.header {
				req.Header[k] = vs
			}
			rec := httptest.NewRecorder()
			tt.s.ServeHTTP(rec, req)
			if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != tt.want {
				t.Fatalf("%d %s, want 200 %s", rec.Code, rec.Body, tt.want)
			}
		})
	}
	bad := call(on, http.MethodGet, "/auth/whoami", "", http.Header{"Authorization": {"Bearer " + randomToken(t)}})
	if bad.Code != 401 {
		t.Errorf("whoami with a wrong token: %d %s", bad.Code, bad.Body)
	}
}
