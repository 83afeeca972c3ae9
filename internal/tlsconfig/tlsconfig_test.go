package tlsconfig

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testpki"
)

func load(t *testing.T, ca *testpki.CA, leaf *testpki.Leaf) *Material {
	t.Helper()
	f := leaf.Write(t, t.TempDir(), "node", ca)
	m, err := Load(f.Cert, f.Key, f.CA)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// handshake runs one TLS handshake between server and client configs on
// loopback and returns the client's and the server's errors.
func handshake(t *testing.T, server, client *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		srvErr <- c.(*tls.Conn).Handshake()
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), client)
	if err == nil {
		// TLS 1.3: the server's verdict on our certificate arrives after
		// the client's side is done; a read surfaces it.
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err = c.Read(make([]byte, 1))
		// A timeout (nothing to read) or EOF (the server closed after
		// its handshake) both mean the handshake was accepted.
		if ne, ok := err.(net.Error); ok && ne.Timeout() || errors.Is(err, io.EOF) {
			err = nil
		}
		c.Close()
	}
	return err, <-srvErr
}

// The certificates below name 10.9.9.9 and "elsewhere", never the
// 127.0.0.1 they are dialled at.
var elsewhere = testpki.LeafOptions{IPs: []net.IP{net.IPv4(10, 9, 9, 9)}, DNSNames: []string{"elsewhere"}}

// TestRaftVerifiesChainNotHostName: Raft peers trust the cluster CA's
// chain whatever address the certificate names (the documented choice),
// and still refuse a chain from another CA in either direction.
func TestRaftVerifiesChainNotHostName(t *testing.T) {
	ca, rogue := testpki.NewCA(t, "cluster"), testpki.NewCA(t, "rogue")
	a := load(t, ca, ca.IssueWith(t, "a", elsewhere))
	b := load(t, ca, ca.IssueWith(t, "b", elsewhere))
	r := load(t, rogue, rogue.Issue(t, "r"))
	tests := []struct {
		name              string
		server, client    *Material
		clientErr, srvErr string // "" means success
	}{
		{"same CA, names not matching the address", a, b, "", ""},
		{"rogue server", r, a, "unknown authority", "bad certificate"},
		{"rogue client", a, r, "unknown authority", "bad certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cerr, serr := handshake(t, tt.server.RaftServer(), tt.client.RaftClient())
			check(t, "client", cerr, tt.clientErr)
			check(t, "server", serr, tt.srvErr)
		})
	}
}

// TestHTTPClientChecksHostName: node-to-node HTTPS is ordinary HTTPS: the
// peer's certificate must name the address dialled.
func TestHTTPClientChecksHostName(t *testing.T) {
	ca := testpki.NewCA(t, "cluster")
	wrongName := load(t, ca, ca.IssueWith(t, "a", elsewhere))
	rightName := load(t, ca, ca.Issue(t, "b"))
	cerr, _ := handshake(t, wrongName.HTTPServer(), rightName.HTTPClient())
	check(t, "client to a misnamed server", cerr, "not 127.0.0.1")
	cerr, serr := handshake(t, rightName.HTTPServer(), wrongName.HTTPClient())
	check(t, "client to a well-named server", cerr, "")
	check(t, "server, client certificate required", serr, "")
	if v := rightName.HTTPServer().MinVersion; v != tls.VersionTLS12 {
		t.Fatalf("MinVersion %x, want TLS 1.2", v)
	}
}

func check(t *testing.T, side string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("%s: %v, want success", side, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Fatalf("%s: %v, want an error mentioning %q", side, err, want)
	}
}
