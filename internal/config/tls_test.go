package config

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testpki"
)

// pkiFiles writes the files the TLS cases refer to and returns them by name.
func pkiFiles(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "cluster CA")
	rogue := testpki.NewCA(t, "rogue CA")
	good := ca.Issue(t, "n1").Write(t, dir, "good", ca)
	other := ca.Issue(t, "n2").Write(t, dir, "other", ca)
	rogueLeaf := rogue.Issue(t, "rogue").Write(t, dir, "rogue", rogue)
	serverOnly := ca.IssueWith(t, "srv", testpki.LeafOptions{ExtUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}).Write(t, dir, "serveronly", ca)
	clientOnly := ca.IssueWith(t, "cli", testpki.LeafOptions{ExtUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}).Write(t, dir, "clientonly", ca)
	expired := ca.IssueWith(t, "old", testpki.LeafOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}).Write(t, dir, "expired", ca)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"cert": good.Cert, "key": good.Key, "ca": good.CA,
		"other-key": other.Key, "rogue-ca": rogueLeaf.CA, "rogue-cert": rogueLeaf.Cert, "rogue-key": rogueLeaf.Key,
		"serveronly-cert": serverOnly.Cert, "serveronly-key": serverOnly.Key,
		"clientonly-cert": clientOnly.Cert, "clientonly-key": clientOnly.Key,
		"expired-cert": expired.Cert, "expired-key": expired.Key,
		"garbage": garbage, "missing": filepath.Join(dir, "missing.pem"),
	}
}

// expand replaces "@name" values with the file of that name.
func expand(files map[string]string, kv []string) []string {
	out := make([]string, len(kv))
	for i, v := range kv {
		if strings.HasPrefix(v, "@") {
			v = files[v[1:]]
		}
		out[i] = v
	}
	return out
}

func TestLoadTLSValid(t *testing.T) {
	files := pkiFiles(t)
	tests := []struct {
		name             string
		env              []string
		httpTLS, raftTLS bool
		httpCA           bool
	}{
		{"off by default", nil, false, false, false},
		{"https", []string{"TLS_CERT_FILE", "@cert", "TLS_KEY_FILE", "@key"}, true, false, false},
		{"https without a CA needs only serverAuth", []string{"TLS_CERT_FILE", "@serveronly-cert", "TLS_KEY_FILE", "@serveronly-key"}, true, false, false},
		{"https with client certificates", []string{"TLS_CERT_FILE", "@cert", "TLS_KEY_FILE", "@key", "TLS_CA_FILE", "@ca"}, true, false, true},
		{"raft mutual tls", []string{"RAFT_TLS_CERT_FILE", "@cert", "RAFT_TLS_KEY_FILE", "@key", "RAFT_TLS_CA_FILE", "@ca"}, false, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(env(expand(files, tt.env)...))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if c.HTTPTLS() != tt.httpTLS || c.RaftTLS() != tt.raftTLS {
				t.Fatalf("HTTPTLS=%v RaftTLS=%v, want %v %v", c.HTTPTLS(), c.RaftTLS(), tt.httpTLS, tt.raftTLS)
			}
			hm := c.HTTPMaterial
			if (hm != nil) != tt.httpTLS {
				t.Fatalf("HTTPMaterial = %v", hm)
			}
			if hm != nil && (hm.CA != nil) != tt.httpCA {
				t.Fatalf("HTTP CA loaded: %v, want %v", hm.CA != nil, tt.httpCA)
			}
			rm := c.RaftMaterial
			if (rm != nil) != tt.raftTLS || rm != nil && rm.CA == nil {
				t.Fatalf("RaftMaterial = %v", rm)
			}
		})
	}
}

func TestLoadTLSRejects(t *testing.T) {
	files := pkiFiles(t)
	raft := func(cert, key, ca string) []string {
		return []string{"RAFT_TLS_CERT_FILE", cert, "RAFT_TLS_KEY_FILE", key, "RAFT_TLS_CA_FILE", ca}
	}
	tests := []struct {
		name    string
		env     []string
		wantVar string
		wantMsg string
	}{
		{"cert without key", []string{"TLS_CERT_FILE", "@cert"}, "TLS_KEY_FILE", "together"},
		{"key without cert", []string{"TLS_KEY_FILE", "@key"}, "TLS_CERT_FILE", "together"},
		{"ca without cert", []string{"TLS_CA_FILE", "@ca"}, "TLS_CA_FILE", "requires"},
		{"missing cert file", []string{"TLS_CERT_FILE", "@missing", "TLS_KEY_FILE", "@key"}, "TLS_CERT_FILE", "no such file"},
		{"missing key file", []string{"TLS_CERT_FILE", "@cert", "TLS_KEY_FILE", "@missing"}, "TLS_KEY_FILE", "no such file"},
		{"garbage cert", []string{"TLS_CERT_FILE", "@garbage", "TLS_KEY_FILE", "@key"}, "TLS_CERT_FILE", "no PEM certificate"},
		{"key of another cert", []string{"TLS_CERT_FILE", "@cert", "TLS_KEY_FILE", "@other-key"}, "TLS_KEY_FILE", "does not hold the key"},
		{"expired cert", []string{"TLS_CERT_FILE", "@expired-cert", "TLS_KEY_FILE", "@expired-key"}, "TLS_CERT_FILE", "expired"},
		{"missing ca file", []string{"TLS_CERT_FILE", "@cert", "TLS_KEY_FILE", "@key", "TLS_CA_FILE", "@missing"}, "TLS_CA_FILE", "no such file"},
		{"garbage ca", []string{"TLS_CERT_FILE", "@cert", "TLS_KEY_FILE", "@key", "TLS_CA_FILE", "@garbage"}, "TLS_CA_FILE", "no PEM certificate"},
		{"cert from another ca", []string{"TLS_CERT_FILE", "@cert", "TLS_KEY_FILE", "@key", "TLS_CA_FILE", "@rogue-ca"}, "TLS_CERT_FILE", "not signed by"},
		{"client-only cert serves https", []string{"TLS_CERT_FILE", "@clientonly-cert", "TLS_KEY_FILE", "@clientonly-key"}, "TLS_CERT_FILE", "serverAuth"},
		{"server-only cert with a ca", []string{"TLS_CERT_FILE", "@serveronly-cert", "TLS_KEY_FILE", "@serveronly-key", "TLS_CA_FILE", "@ca"}, "TLS_CERT_FILE", "clientAuth"},
		{"raft cert alone", []string{"RAFT_TLS_CERT_FILE", "@cert"}, "RAFT_TLS_KEY_FILE", "must be set"},
		{"raft without ca", raft("@cert", "@key", ""), "RAFT_TLS_CA_FILE", "must be set"},
		{"raft ca alone", []string{"RAFT_TLS_CA_FILE", "@ca"}, "RAFT_TLS_CERT_FILE", "must be set"},
		{"raft missing key", raft("@cert", "@missing", "@ca"), "RAFT_TLS_KEY_FILE", "no such file"},
		{"raft cert from another ca", raft("@rogue-cert", "@rogue-key", "@ca"), "RAFT_TLS_CERT_FILE", "not signed by"},
		{"raft server-only cert", raft("@serveronly-cert", "@serveronly-key", "@ca"), "RAFT_TLS_CERT_FILE", "clientAuth"},
		{"raft garbage ca", raft("@cert", "@key", "@garbage"), "RAFT_TLS_CA_FILE", "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(env(expand(files, tt.env)...))
			if err == nil {
				t.Fatalf("Load = %+v, want an error", c)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.wantVar+":") || !strings.Contains(msg, tt.wantMsg) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line starting with %q and containing %q", msg, tt.wantVar+":", tt.wantMsg)
			}
		})
	}
}

// TestLoadFilesOnce: Load reads the files it names once and hands on what
// they hold; LoadFiles reads only what is not loaded yet, so a Config
// from Load never reads them again, and one built by hand reads them then.
func TestLoadFilesOnce(t *testing.T) {
	files := pkiFiles(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("0123456789abcdef0123 admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := expand(files, []string{"TLS_CERT_FILE", "@cert", "TLS_KEY_FILE", "@key", "TLS_CA_FILE", "@ca",
		"RAFT_TLS_CERT_FILE", "@cert", "RAFT_TLS_KEY_FILE", "@key", "RAFT_TLS_CA_FILE", "@ca"})
	c, err := Load(env(append(vars, "AUTH_TOKENS_FILE", tokens)...))
	if err != nil {
		t.Fatal(err)
	}
	if c.Tokens == nil || c.HTTPMaterial == nil || c.RaftMaterial == nil {
		t.Fatalf("Load left material unread: %+v", c)
	}
	byHand := Config{AuthTokensFile: c.AuthTokensFile, TLSCertFile: c.TLSCertFile, TLSKeyFile: c.TLSKeyFile, TLSCAFile: c.TLSCAFile,
		RaftTLSCertFile: c.RaftTLSCertFile, RaftTLSKeyFile: c.RaftTLSKeyFile, RaftTLSCAFile: c.RaftTLSCAFile}
	if err := byHand.LoadFiles(); err != nil || byHand.Tokens == nil || byHand.HTTPMaterial == nil || byHand.RaftMaterial == nil {
		t.Fatalf("LoadFiles on a Config built by hand: %v, %+v", err, byHand)
	}
	for _, f := range []string{tokens, files["cert"], files["key"], files["ca"]} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	tok, hm, rm := c.Tokens, c.HTTPMaterial, c.RaftMaterial
	if err := c.LoadFiles(); err != nil {
		t.Fatalf("LoadFiles read the files again: %v", err)
	}
	if c.Tokens != tok || c.HTTPMaterial != hm || c.RaftMaterial != rm {
		t.Fatal("LoadFiles replaced material already loaded")
	}
}

// TestLoadHTTPCertMustNameAdvertiseAddr: the API certificate must name
// ADVERTISE_ADDR (it defaults to BIND_ADDR, 127.0.0.1); the Raft
// certificate need not (Raft TLS verifies the chain, not names).
func TestLoadHTTPCertMustNameAdvertiseAddr(t *testing.T) {
	files := pkiFiles(t) // "cert" names IP:127.0.0.1 and DNS:localhost
	httpTLS := []string{"TLS_CERT_FILE", "@cert", "TLS_KEY_FILE", "@key", "TLS_CA_FILE", "@ca"}
	raftTLS := []string{"RAFT_TLS_CERT_FILE", "@cert", "RAFT_TLS_KEY_FILE", "@key", "RAFT_TLS_CA_FILE", "@ca"}
	for _, ok := range [][]string{
		httpTLS,
		append([]string{"ADVERTISE_ADDR", "localhost"}, httpTLS...),
		append([]string{"ADVERTISE_ADDR", "10.0.0.1"}, raftTLS...), // Raft alone: no name check
	} {
		if _, err := Load(env(expand(files, ok)...)); err != nil {
			t.Errorf("Load(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"10.0.0.1", "n1.example"} {
		_, err := Load(env(expand(files, append([]string{"ADVERTISE_ADDR", bad}, httpTLS...))...))
		if err == nil {
			t.Fatalf("ADVERTISE_ADDR=%s with a certificate for 127.0.0.1 and localhost: no error", bad)
		}
		msg := err.Error()
		for _, want := range []string{"TLS_CERT_FILE: ", files["cert"], "names IP:127.0.0.1, DNS:localhost, not " + bad, "ADVERTISE_ADDR"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q lacks %q", msg, want)
			}
		}
		if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "TLS_CERT_FILE: ") {
			t.Errorf("error %q is not one line starting with TLS_CERT_FILE", msg)
		}
	}
}
