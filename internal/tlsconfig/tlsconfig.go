// Package tlsconfig loads raftkv's certificates and builds every TLS
// configuration the node uses, so the policy lives in one place:
//
//   - the HTTP API server (TLS_CERT_FILE, TLS_KEY_FILE; with TLS_CA_FILE it
//     requires and verifies client certificates),
//   - the client a node uses to call other nodes' HTTP APIs (forwarding,
//     the peer protocol, retry-join, /nodes probes): it trusts TLS_CA_FILE, or
//     the system roots when that is unset, checks the host name as any HTTPS
//     client does, and presents the node's own certificate when asked,
//   - both ends of the Raft transport (RAFT_TLS_*): mutual TLS where the
//     cluster CA alone defines membership (see internal/node/DESIGN.md).
//
// TLS 1.2 is the minimum everywhere.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// MinVersion is the oldest protocol version raftkv speaks.
const MinVersion = tls.VersionTLS12

// Part says which of the three files an Error is about, so the
// configuration can name the variable.
type Part int

// The parts of a Material.
const (
	PartCert Part = iota
	PartKey
	PartCA
)

// Error is a problem with one of the files.
type Error struct {
	Part Part
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func fail(p Part, format string, args ...any) error {
	return &Error{Part: p, Err: fmt.Errorf(format, args...)}
}

// Material is a node's certificate and key, and the CA it trusts (nil:
// the system roots; only the HTTP API allows that).
type Material struct {
	Cert tls.Certificate
	CA   *x509.CertPool
}

// Load reads certFile, keyFile and, if caFile is not empty, caFile, and
// checks now what would otherwise fail every handshake later: the key
// matches the certificate, the certificate is valid today and, with a CA,
// chains to that CA and may serve as both server and client (each node
// is the other nodes' client).
func Load(certFile, keyFile, caFile string) (*Material, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fail(PartCert, "%w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fail(PartKey, "%w", err)
	}
	chain, err := parseCerts(certPEM)
	if err != nil {
		return nil, fail(PartCert, "%s: %w", certFile, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fail(PartKey, "%s does not hold the key of %s: %w", keyFile, certFile, err)
	}
	leaf := chain[0]
	now := time.Now()
	if now.After(leaf.NotAfter) {
		return nil, fail(PartCert, "%s expired at %s", certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return nil, fail(PartCert, "%s is not valid before %s", certFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	m := &Material{Cert: pair}
	if caFile == "" {
		if !allows(leaf, x509.ExtKeyUsageServerAuth) {
			return nil, fail(PartCert, "%s does not allow serverAuth (extended key usage)", certFile)
		}
		return m, nil
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fail(PartCA, "%w", err)
	}
	cas, err := parseCerts(caPEM)
	if err != nil {
		return nil, fail(PartCA, "%s: %w", caFile, err)
	}
	m.CA = x509.NewCertPool()
	for _, c := range cas {
		m.CA.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: m.CA, Intermediates: pool(chain[1:]), CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fail(PartCert, "%s is not signed by the CA in %s: %w", certFile, caFile, err)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if !allows(leaf, u) {
			return nil, fail(PartCert, "%s does not allow %s (extended key usage); with a CA every node is also a client of the others, so it needs serverAuth and clientAuth",
				certFile, usageName(u))
		}
	}
	return m, nil
}

// CheckName reports whether the certificate names host (an IP address
// or a DNS name, as ADVERTISE_ADDR holds it) as an HTTPS client checks it:
// an IP SAN for an IP, a DNS SAN (wildcards included) for a name. Other
// nodes and clients reach the API at that host and refuse a certificate
// that does not name it, so a mismatch is better found at start. The error
// lists the names the certificate holds.
func (m *Material) CheckName(host string) error {
	leaf := m.Cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(m.Cert.Certificate[0]); err != nil {
			return err
		}
	}
	if err := leaf.VerifyHostname(host); err == nil {
		return nil
	}
	var names []string
	for _, ip := range leaf.IPAddresses {
		names = append(names, "IP:"+ip.String())
	}
	for _, d := range leaf.DNSNames {
		names = append(names, "DNS:"+d)
	}
	if len(names) == 0 {
		return fmt.Errorf("names no address (no subject alternative names), not %s", host)
	}
	return fmt.Errorf("names %s, not %s", strings.Join(names, ", "), host)
}

// HTTPServer is the API server's configuration: with a CA, a client must
// present a certificate that chains to it.
func (m *Material) HTTPServer() *tls.Config {
	c := &tls.Config{MinVersion: MinVersion, Certificates: []tls.Certificate{m.Cert}}
	if m.CA != nil {
		c.ClientCAs = m.CA
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c
}

// HTTPClient is the configuration for calls to other nodes' APIs: the
// server must hold a certificate for the address dialled from the CA (or
// a public one without a CA), and this node's certificate goes along when
// the server asks for one.
func (m *Material) HTTPClient() *tls.Config {
	return &tls.Config{MinVersion: MinVersion, RootCAs: m.CA, Certificates: []tls.Certificate{m.Cert}}
}

// RaftServer is the Raft listener's configuration: only peers holding a
// certificate from the cluster CA get past the handshake.
func (m *Material) RaftServer() *tls.Config {
	return &tls.Config{
		MinVersion:   MinVersion,
		Certificates: []tls.Certificate{m.Cert},
		ClientCAs:    m.CA,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
}

// RaftClient is the configuration for dialling a Raft peer. It verifies
// the peer's chain against the cluster CA but not the host name: Raft
// addresses are whatever each node advertises (IPs, container names), and
// holding a certificate from the cluster CA is what makes a peer a member
// (internal/node/DESIGN.md explains why that is enough).
func (m *Material) RaftClient() *tls.Config {
	roots := m.CA
	return &tls.Config{
		MinVersion:   MinVersion,
		Certificates: []tls.Certificate{m.Cert},
		// The standard verification would also check the host name; the
		// chain is checked below instead.
		InsecureSkipVerify: true, //nolint:gosec // chain verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyChain(cs.PeerCertificates, roots, x509.ExtKeyUsageServerAuth)
		},
	}
}

// verifyChain checks that certs[0] chains to roots through certs[1:].
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) error {
	if len(certs) == 0 {
		return errors.New("peer presented no certificate")
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: pool(certs[1:]), KeyUsages: []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return fmt.Errorf("peer certificate %q: %w", certs[0].Subject.CommonName, err)
	}
	return nil
}

func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}

func pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// allows reports whether the certificate may be used for u. A
// certificate without extended key usages may be used for anything.
func allows(c *x509.Certificate, u x509.ExtKeyUsage) bool {
	return len(c.ExtKeyUsage) == 0 || slices.Contains(c.ExtKeyUsage, u) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

func usageName(u x509.ExtKeyUsage) string {
	if u == x509.ExtKeyUsageClientAuth {
		return "clientAuth"
	}
	return "serverAuth"
}
