package httpapi

import (
	"crypto/tls"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Node-to-node HTTP (forwarding, the peer protocol, announce and /nodes
// probes) goes through nodeURL and the client newNodeClient builds, so
// the scheme and the TLS settings are decided here once. The cluster is
// uniform: every node serves HTTPS or every node serves HTTP, so a node
// calls its peers the way it is called itself.

// nodeURL is the URL of pathAndQuery on the node whose API is at addr
// (host:port).
func (s *Service) nodeURL(addr, pathAndQuery string) string {
	scheme := "http://"
	if s.opts.ClientTLS != nil {
		scheme = "https://"
	}
	return scheme + addr + pathAndQuery
}

// newNodeClient is the keep-alive client for calls to other nodes; tc,
// when set, is its TLS configuration (tlsconfig.Material.HTTPClient).
func newNodeClient(tc *tls.Config) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     tc,
			TLSHandshakeTimeout: 2 * time.Second,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 128,
			IdleConnTimeout:     90 * time.Second,
		},
		// Never follow redirects: a forwarded answer goes back as it is.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Serve serves srv on ln, over TLS when tc is set (HTTP/1.1 only, so the
// server's timeouts and header limit mean what they say), until srv is
// shut down.
func Serve(srv *http.Server, ln net.Listener, tc *tls.Config) error {
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return srv.Serve(ln)
}

// ServerOption adjusts NewServer's defaults.
type ServerOption func(*http.Server)

// WithReadHeaderTimeout sets how long a client may take to send its
// request headers (and, over TLS, to finish the handshake).
func WithReadHeaderTimeout(d time.Duration) ServerOption {
	return func(s *http.Server) { s.ReadHeaderTimeout = d }
}

// WithServerLog sends net/http's own messages (TLS handshake failures,
// accept errors) to logger instead of the standard library's log.
func WithServerLog(logger *logrus.Logger) ServerOption {
	return func(s *http.Server) {
		s.ErrorLog = log.New(serverLogWriter{logger.WithField("component", "http-server")}, "", 0)
	}
}

// serverLogWriter logs net/http's lines at warn, except handshakes that
// ended before they began (port scans, TCP health checks) at debug.
type serverLogWriter struct{ log *logrus.Entry }

func (w serverLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := logrus.WarnLevel
	if strings.Contains(msg, "TLS handshake error") && strings.HasSuffix(msg, "EOF") {
		level = logrus.DebugLevel
	}
	w.log.Log(level, msg)
	return len(p), nil
}
