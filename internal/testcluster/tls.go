package testcluster

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/raftkv/raftkv/internal/testpki"
)

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

// files issues the certificate of member id (once: a restarted member
// keeps its files) and returns its files.
func (p *clusterPKI) files(t testing.TB, id string) testpki.Files {
	f := testpki.Files{
		Cert: filepath.Join(p.dir, id+".crt"), Key: filepath.Join(p.dir, id+".key"), CA: filepath.Join(p.dir, id+"-ca.crt"),
	}
	if _, err := os.Stat(f.Cert); err != nil {
		f = p.ca.Issue(t, id).Write(t, p.dir, id, p.ca)
	}
	return f
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
