package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testpki"
)

// envMap is a lookup over a fixed environment, so the test process's own
// variables never reach the subcommand.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func runHealthcheck(args []string, env map[string]string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = healthcheck(args, envMap(env), &out, &errb)
	return code, out.String(), errb.String()
}

// portOf returns the port of an httptest server's URL.
func portOf(t *testing.T, rawURL string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(rawURL, "http://"), "https://"))
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func TestHealthcheckHTTP(t *testing.T) {
	var lastPath atomic.Value
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lastPath.Store(r.URL.Path)
		switch r.URL.Path {
		case "/ready", "/ok":
			w.Write([]byte(`{"status":"ready"}`))
		case "/notready":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":"no leader","code":"not_ready"}`))
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/hang":
			// Held until the client gives up or the test ends.
			select {
			case <-r.Context().Done():
			case <-release:
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	defer close(release)

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedURL := "http://" + closed.Addr().String() + "/ready"
	closed.Close()

	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantCode   int
		wantPath   string // path the server saw, when it must have been asked
		wantStdout string
		wantStderr string
	}{
		{name: "200 is healthy", args: []string{srv.URL + "/ok"}, wantCode: 0, wantPath: "/ok", wantStdout: `200 OK: {"status":"ready"}`},
		{name: "503 is unhealthy and says why", args: []string{srv.URL + "/notready"}, wantCode: 1, wantPath: "/notready",
			wantStderr: `503 Service Unavailable: {"error":"no leader","code":"not_ready"}`},
		{name: "404 is unhealthy", args: []string{srv.URL + "/nothing"}, wantCode: 1, wantStderr: "404 Not Found"},
		{name: "a redirect is not followed", args: []string{srv.URL + "/moved"}, wantCode: 1, wantPath: "/moved", wantStderr: "302 Found"},
		{name: "connection refused", args: []string{refusedURL}, wantCode: 1, wantStderr: "connection refused"},
		{name: "a hanging server times out", args: []string{"-timeout", "300ms", srv.URL + "/hang"}, wantCode: 1, wantPath: "/hang",
			wantStderr: "Client.Timeout"},
		{name: "default URL is /ready on HTTP_SERVER_PORT", env: map[string]string{"HTTP_SERVER_PORT": portOf(t, srv.URL)},
			wantCode: 0, wantPath: "/ready"},
		{name: "default URL with a bad configuration", env: map[string]string{"HTTP_SERVER_PORT": "abc"}, wantCode: 2,
			wantStderr: "HTTP_SERVER_PORT"},
		{name: "two URLs", args: []string{srv.URL, srv.URL}, wantCode: 2, wantStderr: "usage"},
		{name: "not an http URL", args: []string{"ftp://127.0.0.1/ready"}, wantCode: 2, wantStderr: "not an http"},
		{name: "unknown flag", args: []string{"-x"}, wantCode: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lastPath.Store("")
			start := time.Now()
			code, stdout, stderr := runHealthcheck(tc.args, tc.env)
			took := time.Since(start)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.wantCode, stdout, stderr)
			}
			if got := lastPath.Load().(string); tc.wantPath != "" && got != tc.wantPath {
				t.Errorf("server saw path %q, want %q", got, tc.wantPath)
			}
			if !strings.Contains(stdout, tc.wantStdout) {
				t.Errorf("stdout %q does not contain %q", stdout, tc.wantStdout)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.wantStderr)
			}
			if took > 2*time.Second {
				t.Errorf("took %v; every case should end well within its timeout", took)
			}
		})
	}
}

// testPKI is a CA and one leaf certificate (server and client use) for
// the host names and IPs given, written as PEM files under dir.
type testPKI struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
	leaf                      tls.Certificate
}

func newTestPKI(t *testing.T, dir string, dnsNames []string, ips []net.IP) testPKI {
	t.Helper()
	// Empty, not nil: testpki's defaults would add loopback names, and the
	// node certificate here must name only what the test gives.
	if dnsNames == nil {
		dnsNames = []string{}
	}
	if ips == nil {
		ips = []net.IP{}
	}
	ca := testpki.NewCA(t, "raftkv test CA")
	leaf := ca.IssueWith(t, "raftkv node", testpki.LeafOptions{DNSNames: dnsNames, IPs: ips})
	f := leaf.Write(t, dir, "node", ca)
	return testPKI{caFile: f.CA, certFile: f.Cert, keyFile: f.Key, pool: ca.Pool(), leaf: leaf.TLS}
}

func TestHealthcheckTLS(t *testing.T) {
	dir := t.TempDir()
	// The node's certificate names its advertised host only, as in a
	// cluster where peers dial node1:8000; loopback is not in it.
	pki := newTestPKI(t, dir, []string{"node1"}, nil)
	loopPKI := newTestPKI(t, t.TempDir(), nil, []net.IP{net.IPv4(127, 0, 0, 1)})

	var sawClientCert atomic.Bool
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawClientCert.Store(r.TLS != nil && len(r.TLS.PeerCertificates) > 0)
		w.Write([]byte(`{"status":"ready"}`))
	})
	// mTLS server, as a node with TLS_CA_FILE set: client certificates required.
	mtls := httptest.NewUnstartedServer(handler)
	mtls.TLS = &tls.Config{Certificates: []tls.Certificate{pki.leaf}, ClientCAs: pki.pool, ClientAuth: tls.RequireAndVerifyClientCert}
	mtls.StartTLS()
	defer mtls.Close()
	// Server-TLS only, with a loopback certificate.
	plain := httptest.NewUnstartedServer(handler)
	plain.TLS = &tls.Config{Certificates: []tls.Certificate{loopPKI.leaf}}
	plain.StartTLS()
	defer plain.Close()

	nodeEnv := map[string]string{
		"HTTP_SERVER_PORT": portOf(t, mtls.URL), "ADVERTISE_ADDR": "node1",
		"TLS_CERT_FILE": pki.certFile, "TLS_KEY_FILE": pki.keyFile, "TLS_CA_FILE": pki.caFile,
	}
	without := func(m map[string]string, drop string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if k != drop {
				out[k] = v
			}
		}
		return out
	}
	tests := []struct {
		name           string
		args           []string
		env            map[string]string
		wantCode       int
		wantClientCert bool
		wantStderr     string
	}{
		{name: "default URL is https checked against ADVERTISE_ADDR, with the client certificate",
			env: nodeEnv, wantCode: 0, wantClientCert: true},
		{name: "no TLS settings: system roots, the cluster CA is unknown", args: []string{"https://127.0.0.1:" + portOf(t, mtls.URL) + "/ready"},
			env: map[string]string{}, wantCode: 1, wantStderr: "certificate"},
		{name: "explicit https URL with the node's TLS settings", args: []string{plain.URL + "/ready"},
			env: map[string]string{"TLS_CERT_FILE": loopPKI.certFile, "TLS_KEY_FILE": loopPKI.keyFile, "TLS_CA_FILE": loopPKI.caFile}, wantCode: 0},
		{name: "explicit https URL with an unknown CA", args: []string{plain.URL + "/ready"},
			env: map[string]string{"ADVERTISE_ADDR": "node1", "TLS_CERT_FILE": pki.certFile, "TLS_KEY_FILE": pki.keyFile, "TLS_CA_FILE": pki.caFile}, wantCode: 1, wantStderr: "certificate signed by unknown authority"},
		{name: "certificate without its key", env: without(nodeEnv, "TLS_KEY_FILE"), wantCode: 2,
			wantStderr: "TLS_KEY_FILE"},
		{name: "unreadable CA file", args: []string{plain.URL}, env: map[string]string{"TLS_CERT_FILE": pki.certFile, "TLS_KEY_FILE": pki.keyFile, "TLS_CA_FILE": filepath.Join(dir, "missing.pem")},
			wantCode: 2, wantStderr: "TLS_CA_FILE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sawClientCert.Store(false)
			code, stdout, stderr := runHealthcheck(tc.args, tc.env)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.wantCode, stdout, stderr)
			}
			if tc.wantClientCert && !sawClientCert.Load() {
				t.Error("the server saw no client certificate")
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.wantStderr)
			}
		})
	}
}
