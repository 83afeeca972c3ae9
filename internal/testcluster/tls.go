package testcluster

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/raftkv/raftkv/internal/testpki"
	"github.com/raftkv/raftkv/internal/tlsconfig"
)

// WithTLS runs every member as a production node with all six TLS
// variables set: HTTPS on the API with client certificates required
// (TLS_CA_FILE), https between nodes, and mutual TLS on the Raft
// transport. One CA, made for the test, signs every member's certificate
// (IP SAN 127.0.0.1, serverAuth and clientAuth) and the certificate the
// cluster's own client presents. Members load their files through
// tlsconfig.Load, as the daemon does.
func WithTLS() Option {
	return func(s *settings) { s.tls = true }
}

// clusterPKI is the test CA and the files made from it.
type clusterPKI struct {
	ca     *testpki.CA
	dir    string
	client *testpki.Leaf
}

func newClusterPKI(t testing.TB, base string) *clusterPKI {
	t.Helper()
	dir := filepath.Join(base, "pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("testcluster: %v", err)
	}
	ca := testpki.NewCA(t, "testcluster CA")
	return &clusterPKI{ca: ca, dir: dir, client: ca.Issue(t, "testcluster client")}
}

// material issues (once per id; a restarted member keeps its files) and
// loads the certificate of member id.
func (p *clusterPKI) material(t testing.TB, id string) (*tlsconfig.Material, error) {
	f := testpki.Files{
		Cert: filepath.Join(p.dir, id+".crt"), Key: filepath.Join(p.dir, id+".key"), CA: filepath.Join(p.dir, id+"-ca.crt"),
	}
	if _, err := os.Stat(f.Cert); err != nil {
		f = p.ca.Issue(t, id).Write(t, p.dir, id, p.ca)
	}
	return tlsconfig.Load(f.Cert, f.Key, f.CA)
}

// CA is the cluster's CA when it runs WithTLS, else nil. Tests issue
// extra (client or node) certificates from it.
func (c *Cluster) CA() *testpki.CA {
	if c.pki == nil {
		return nil
	}
	return c.pki.ca
}

// ClientTLS is the TLS configuration the cluster's own client uses (it
// trusts the CA and presents a certificate from it), or nil without TLS.
func (c *Cluster) ClientTLS() *tls.Config {
	if c.pki == nil {
		return nil
	}
	return testpki.ClientConfig(c.pki.ca, c.pki.client)
}

func (c *Cluster) scheme() string {
	if c.pki != nil {
		return "https://"
	}
	return "http://"
}
