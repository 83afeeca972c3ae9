package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/internal/auth"
	"github.com/raftkv/raftkv/internal/node"
)

func randomToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{"Bearer ", "", false},
		{"Bearer", "", false},
		{"Basic abc", "", false},
		{"abc", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/get", nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		token, ok := bearerToken(r)
		if token != tt.token || ok != tt.ok {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tt.header, token, ok, tt.token, tt.ok)
		}
	}
}

func TestCallerIsMember(t *testing.T) {
	members := []node.Member{
		{ID: "n1", RaftAddr: "10.0.0.1:9000", HTTPAddr: "10.0.0.1:8000"},
		{ID: "n2", RaftAddr: "10.0.0.2:9000", HTTPAddr: "[fd00::2]:8000"},
		{ID: "n3", RaftAddr: "raftkv-3:9000"}, // a container host name, no HTTP address yet
		{ID: "n4", RaftAddr: "gone:9000"},     // does not resolve
	}
	resolve := func(_ context.Context, _, host string) ([]netip.Addr, error) {
		switch host {
		case "raftkv-3":
			return []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.3")}, nil
		}
		return nil, errors.New("no such host")
	}
	tests := []struct {
		ip   string
		want bool
	}{
		{"10.0.0.1", true},     // raft and HTTP host
		{"10.0.0.2", true},     // raft host
		{"fd00::2", true},      // registered HTTP host
		{"10.0.0.3", true},     // resolved host name, IPv4-mapped answer
		{"10.0.0.4", false},    // a stranger
		{"10.0.0.10", false},   // prefix of a member's address
		{"192.168.1.1", false}, // another network
		{"fd00::3", false},     // another IPv6 host
		{"100.64.0.1", false},  // nothing resolves to it
		{"10.0.0.254", false},  // same subnet is not enough
		{"255.255.255.255", false},
	}
	for _, tt := range tests {
		got := callerIsMember(context.Background(), netip.MustParseAddr(tt.ip), members, resolve)
		if got != tt.want {
			t.Errorf("callerIsMember(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
}

// errorOf decodes a JSON error body.
func errorOf(t *testing.T, rec *httptest.ResponseRecorder) errorBody {
	t.Helper()
	var b errorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("error body %q is not JSON: %v", rec.Body.String(), err)
	}
	return b
}

// TestAuthOffAdminCallers checks, with authentication off, who may reach
// an admin route: loopback and member hosts, anyone with
// ALLOW_REMOTE_ADMIN; every other route stays open.
func TestAuthOffAdminCallers(t *testing.T) {
	reached := func(w http.ResponseWriter, _ *http.Request, _ params) error {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	tests := []struct {
		name        string
		allowRemote bool
		role        auth.Role
		remote      string
		want        int
	}{
		{"admin from loopback v4", false, auth.RoleAdmin, "127.0.0.1:40000", 204},
		{"admin from loopback 127.0.0.2", false, auth.RoleAdmin, "127.0.0.2:40000", 204},
		{"admin from loopback v6", false, auth.RoleAdmin, "[::1]:40000", 204},
		{"admin from a member's host", false, auth.RoleAdmin, "192.0.2.7:40000", 204},
		{"admin from a member's host, v4-mapped", false, auth.RoleAdmin, "[::ffff:192.0.2.7]:40000", 204},
		{"admin from a stranger", false, auth.RoleAdmin, "192.0.2.8:40000", 403},
		{"admin from a stranger v6", false, auth.RoleAdmin, "[2001:db8::1]:40000", 403},
		{"admin from a garbled address", false, auth.RoleAdmin, "nonsense", 403},
		{"admin from a stranger, remote admin allowed", true, auth.RoleAdmin, "192.0.2.8:40000", 204},
		{"write from a stranger", false, auth.RoleWrite, "192.0.2.8:40000", 204},
		{"read from a stranger", false, auth.RoleRead, "192.0.2.8:40000", 204},
		{"peer from a stranger", false, auth.RolePeer, "192.0.2.8:40000", 204},
		{"public from a stranger", false, auth.RolePublic, "192.0.2.8:40000", 204},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, st, _ := newFakeService(t, Options{AllowRemoteAdmin: tt.allowRemote})
			st.members = []node.Member{{ID: "n1", RaftAddr: "127.0.0.1:9001", HTTPAddr: "192.0.2.7:8000"}} // TEST-NET: never dialed
			h := s.adapt(&route{role: tt.role, params: []string{"nodeId", "raftPort"}, serve: reached})
			req := httptest.NewRequest(http.MethodPost, "/join?nodeId=x&raftPort=1", nil)
			req.RemoteAddr = tt.remote
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			if tt.want == 403 {
				b := errorOf(t, rec)
				if b.Code != "remote_admin_refused" || !strings.Contains(b.Error, "ALLOW_REMOTE_ADMIN=true") || !strings.Contains(b.Error, "AUTH_TOKENS_FILE") {
					t.Fatalf("refusal must say how to enable remote admin: %+v", b)
				}
			}
		})
	}
}

// TestAuthOnChecks drives authorize directly: every role × every kind of
// credential, with status, code and challenge.
func TestAuthOnChecks(t *testing.T) {
	tok := map[auth.Role]string{auth.RoleRead: randomToken(t), auth.RoleWrite: randomToken(t), auth.RoleAdmin: randomToken(t)}
	path := filepath.Join(t.TempDir(), "tokens")
	file := fmt.Sprintf("%s read\n%s write\n%s admin\n", tok[auth.RoleRead], tok[auth.RoleWrite], tok[auth.RoleAdmin])
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := auth.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// ALLOW_REMOTE_ADMIN must not weaken token checks.
	s, _, _ := newFakeService(t, Options{Auth: store, AllowRemoteAdmin: true})
	reached := func(w http.ResponseWriter, _ *http.Request, _ params) error {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}

	creds := []struct {
		name   string
		header string
		role   auth.Role // granted; RoleNone: 401
	}{
		{"none", "", auth.RoleNone},
		{"basic", "Basic " + tok[auth.RoleAdmin], auth.RoleNone},
		{"bad", "Bearer " + randomToken(t), auth.RoleNone},
		{"admin prefix", "Bearer " + tok[auth.RoleAdmin][:31], auth.RoleNone},
		{"read", "Bearer " + tok[auth.RoleRead], auth.RoleRead},
		{"write", "Bearer " + tok[auth.RoleWrite], auth.RoleWrite},
		{"admin", "bearer " + tok[auth.RoleAdmin], auth.RoleAdmin},
	}
	for _, need := range []auth.Role{auth.RolePublic, auth.RoleRead, auth.RoleWrite, auth.RoleAdmin, auth.RolePeer} {
		for _, c := range creds {
			t.Run(need.String()+"/"+c.name, func(t *testing.T) {
				req := httptest.NewRequest(http.MethodGet, "/x", nil)
				req.RemoteAddr = "127.0.0.1:40000"
				if c.header != "" {
					req.Header.Set("Authorization", c.header)
				}
				rec := httptest.NewRecorder()
				s.adapt(&route{role: need, serve: reached}).ServeHTTP(rec, req)
				least := need
				if need == auth.RolePeer {
					least = auth.RoleAdmin // nodes present their admin credential
				}
				want, code := 204, ""
				switch {
				case need == auth.RolePublic:
				case c.role == auth.RoleNone:
					want, code = 401, "unauthorized"
				case c.role < least:
					want, code = 403, "forbidden"
				}
				if rec.Code != want {
					t.Fatalf("status %d, want %d: %s", rec.Code, want, rec.Body)
				}
				if code != "" && errorOf(t, rec).Code != code {
					t.Fatalf("code %q, want %q", errorOf(t, rec).Code, code)
				}
				// A bearer token that is wrong gets "invalid_token"; no
				// bearer token at all (none, or another scheme) gets the
				// bare challenge (RFC 6750 §3.1).
				challenge := rec.Header().Get("WWW-Authenticate")
				presented := strings.HasPrefix(strings.ToLower(c.header), "bearer ")
				switch {
				case want == 401 && !presented && challenge != `Bearer realm="raftkv"`,
					want == 401 && presented && challenge != `Bearer realm="raftkv", error="invalid_token"`,
					want != 401 && challenge != "":
					t.Fatalf("WWW-Authenticate %q on a %d", challenge, want)
				}
				if strings.Contains(rec.Body.String(), tok[auth.RoleAdmin]) || strings.Contains(rec.Body.String(), tok[auth.RoleRead]) {
					t.Fatalf("error body quotes a token: %s", rec.Body)
				}
			})
		}
	}

}
