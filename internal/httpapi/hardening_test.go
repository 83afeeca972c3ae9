package httpapi

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/raftkv/raftkv/internal/testpki"
)

// serve runs h behind NewServer on a loopback port (over TLS when tc is
// set) until the test ends, and returns its address. net/http's own log
// lines go to logger.
func serve(t *testing.T, h http.Handler, tc *tls.Config, logger *logrus.Logger, opts ...ServerOption) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, time.Second, append(opts, WithServerLog(logger))...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = Serve(srv, ln, tc)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// TestPanicBecomes500: a handler that panics answers a JSON 500 through
// the error table and logs the panic; the server keeps serving.
func TestPanicBecomes500(t *testing.T) {
	logger, hook := test.NewNullLogger()
	r := mux.NewRouter()
	r.HandleFunc("/boom", func(http.ResponseWriter, *http.Request) { panic("kaboom") })
	r.HandleFunc("/fine", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"ok": "yes"})
	})
	s, _, _ := newFakeService(t, Options{Logger: logger})
	s.router = r
	addr := serve(t, s, nil, logger)

	for range 2 { // twice: the first panic did not break the server
		resp, err := http.Get("http://" + addr + "/boom")
		if err != nil {
			t.Fatalf("GET /boom: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e errorBody
		if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("Content-Type") != "application/json" ||
			json.Unmarshal(body, &e) != nil || e.Code != "internal" {
			t.Fatalf("GET /boom: %d %s %q, want a JSON 500 with code internal", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	var logged int
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.ErrorLevel && e.Message == "handler panicked" && e.Data["panic"] == "kaboom" && e.Data["path"] == "/boom" {
			logged++
		}
	}
	if logged != 2 {
		t.Fatalf("logged %d panic lines, want 2: %v", logged, hook.AllEntries())
	}
	if resp, err := http.Get("http://" + addr + "/fine"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /fine after the panics: %v %v", resp, err)
	}
}

// TestSlowClientsAreCut: many connections that trickle their headers (or,
// over TLS, never finish the handshake) are closed once ReadHeaderTimeout
// passes, and an ordinary request is served promptly meanwhile.
func TestSlowClientsAreCut(t *testing.T) {
	const (
		headerTimeout = time.Second
		slowClients   = 50
	)
	ca := testpki.NewCA(t, "test CA")
	serverTLS := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "server").TLS}, MinVersion: tls.VersionTLS12}
	tests := []struct {
		name   string
		tls    *tls.Config
		client *http.Client
		// slow is what one slow client does after connecting; it returns
		// the error that ended its connection (EOF or a reset when the
		// server closed it).
		slow func(c net.Conn) error
	}{
		{"headers trickled over http", nil, &http.Client{Timeout: 2 * time.Second}, trickleHeaders},
		{"handshake never finished over https", serverTLS,
			&http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: testpki.ClientConfig(ca, nil)}},
			func(c net.Conn) error { _, err := c.Read(make([]byte, 1)); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
			logger, hook := test.NewNullLogger()
			addr := serve(t, h, tt.tls, logger, WithReadHeaderTimeout(headerTimeout))
			scheme := "http://"
			if tt.tls != nil {
				scheme = "https://"
			}

			var wg sync.WaitGroup
			cut := make(chan time.Duration, slowClients)
			errs := make(chan error, slowClients)
			for range slowClients {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				// A backstop far beyond the timeout: a server that never
				// cuts the client fails the test instead of hanging it.
				_ = c.SetDeadline(start.Add(10 * headerTimeout))
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.Close()
					err := tt.slow(c)
					var ne net.Error
					switch {
					case errors.As(err, &ne) && ne.Timeout():
						errs <- fmt.Errorf("still open after %v", time.Since(start))
						return
					case errors.Is(err, errAnswered):
						errs <- err
						return
					}
					cut <- time.Since(start)
				}()
			}

			// Served promptly while the slow clients hold their connections.
			begin := time.Now()
			resp, err := tt.client.Get(scheme + addr + "/")
			if err != nil {
				t.Fatalf("ordinary request during the slow clients: %v", err)
			}
			resp.Body.Close()
			if took := time.Since(begin); resp.StatusCode != http.StatusOK || took > headerTimeout {
				t.Fatalf("ordinary request: %d after %v, want 200 within %v", resp.StatusCode, took, headerTimeout)
			}

			wg.Wait()
			close(cut)
			close(errs)
			for err := range errs {
				t.Fatalf("a slow client was not cut: %v", err)
			}
			var longest time.Duration
			n := 0
			for d := range cut {
				longest = max(longest, d)
				n++
			}
			if n != slowClients || longest > headerTimeout+time.Second {
				t.Fatalf("%d of %d slow clients cut, the last after %v; want all within %v", n, slowClients, longest, headerTimeout+time.Second)
			}
			if tt.tls != nil {
				// Each stalled handshake is one warning through logrus.
				warned := 0
				for _, e := range hook.AllEntries() {
					if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "TLS handshake error") {
						warned++
					}
				}
				if warned != slowClients {
					t.Fatalf("%d handshake warnings logged, want %d", warned, slowClients)
				}
			}
		})
	}
}

// errAnswered: the server answered a request that never ended.
var errAnswered = errors.New("server answered a request whose headers never ended")

// trickleHeaders starts a request and sends one more header line every
// 100ms, never finishing, until the server closes the connection.
func trickleHeaders(c net.Conn) error {
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
		return err
	}
	closed := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1)) // no response may come: only the close
		if err == nil {
			err = errAnswered
		}
		closed <- err
	}()
	for i := 0; i < 100; i++ {
		select {
		case err := <-closed:
			return err
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := fmt.Fprintf(c, "X-Slow-%d: x\r\n", i); err != nil {
			return <-closed
		}
	}
	return <-closed
}
