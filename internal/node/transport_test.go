package node

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/raftkv/raftkv/internal/testpki"
	"github.com/raftkv/raftkv/internal/testwait"
	"github.com/raftkv/raftkv/internal/tlsconfig"
)

func material(t *testing.T, ca *testpki.CA, name string) *tlsconfig.Material {
	t.Helper()
	f := ca.Issue(t, name).Write(t, t.TempDir(), name, ca)
	m, err := tlsconfig.Load(f.Cert, f.Key, f.CA)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// closedWithin reports whether the server closes c (read ends without a
// timeout) within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestTLSStreamLayer: connections that stall their handshake are capped
// per host and cannot block a real peer once they are gone; refusals are
// logged without flooding; a real peer's connection carries bytes both
// ways; Close ends Accept and abandons handshakes in progress.
func TestTLSStreamLayer(t *testing.T) {
	ca := testpki.NewCA(t, "cluster")
	logger, hook := test.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	srv, err := newTLSStreamLayer("127.0.0.1:0", nil, material(t, ca, "server"), logger.WithField("node", "srv"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := newTLSStreamLayer("127.0.0.1:0", nil, material(t, ca, "client"), logger.WithField("node", "cli"))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	addr := srv.Addr().String()

	// maxHandshakesPerHost connections that never speak: all held open...
	var stalled []net.Conn
	for range maxHandshakesPerHost {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, c)
	}
	waitUntil(t, func() bool {
		srv.pendingMu.Lock()
		defer srv.pendingMu.Unlock()
		return srv.total == maxHandshakesPerHost
	}, "the stalled handshakes to be counted")
	// ...and one more from the same host is closed at once.
	extra, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !closedWithin(extra, time.Second) {
		t.Fatal("a handshake over the per-host cap was not refused at once")
	}
	extra.Close()
	for _, c := range stalled {
		c.Close()
	}
	waitUntil(t, func() bool {
		srv.pendingMu.Lock()
		defer srv.pendingMu.Unlock()
		return srv.total == 0
	}, "the closed handshakes to be released")

	// A real peer gets through, both ways.
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := srv.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	c, err := cli.Dial(raft.ServerAddress(addr), 2*time.Second)
	if err != nil {
		t.Fatalf("dial with a valid certificate: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	var sc net.Conn
	select {
	case sc = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the valid peer was not accepted")
	}
	if sc == nil {
		t.Fatal("Accept failed")
	}
	got := make([]byte, 4)
	_ = sc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(sc, got); err != nil || string(got) != "ping" {
		t.Fatalf("server read %q, %v", got, err)
	}
	sc.Close()

	// One warning for the refused host; the stalled ones (closed by their
	// client) went to debug.
	warned, debugged := 0, 0
	for _, e := range hook.AllEntries() {
		if e.Message != "" && e.Data["remote"] != nil {
			switch e.Level {
			case logrus.WarnLevel:
				warned++
			case logrus.DebugLevel:
				debugged++
			}
		}
	}
	if warned != 1 || debugged < maxHandshakesPerHost {
		t.Fatalf("refusals logged: %d warnings, %d debug lines; want 1 warning and the rest at debug", warned, debugged)
	}

	// Close abandons a handshake in progress and ends Accept.
	staller, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer staller.Close()
	waitUntil(t, func() bool {
		srv.pendingMu.Lock()
		defer srv.pendingMu.Unlock()
		return srv.total == 1
	}, "the staller's handshake to start")
	begin := time.Now()
	srv.Close()
	if !closedWithin(staller, time.Second) {
		t.Fatalf("handshake in progress still open %v after Close", time.Since(begin))
	}
	if _, err := srv.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCloseConnsCutsBlockedWrite: a connection the stream layer dialed to
// a peer that never reads (as a paused peer) blocks a writer once the
// socket buffers fill; CloseConns makes that write fail at once, names the
// peer as one that does not answer, and refuses later dials. Plain TCP and
// mutual TLS alike.
func TestCloseConnsCutsBlockedWrite(t *testing.T) {
	ca := testpki.NewCA(t, "cluster")
	for _, tt := range []struct {
		name string
		// peer listens and never reads; dialer is the layer under test.
		peer   func(t *testing.T) (addr string, stop func())
		dialer func(t *testing.T) contextDialer
	}{
		{"tcp", func(t *testing.T) (string, func()) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var held []net.Conn
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					held = append(held, c) // open, never read
				}
			}()
			return ln.Addr().String(), func() {
				ln.Close()
				<-done
				for _, c := range held {
					c.Close()
				}
			}
		}, func(t *testing.T) contextDialer {
			s, err := newTCPStreamLayer("127.0.0.1:0", nil)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"tls", func(t *testing.T) (string, func()) {
			// Handshakes, then waits for an Accept that never comes.
			s, err := newTLSStreamLayer("127.0.0.1:0", nil, material(t, ca, "peer"), quietLogger().WithField("t", 1))
			if err != nil {
				t.Fatal(err)
			}
			return s.Addr().String(), func() { s.Close() }
		}, func(t *testing.T) contextDialer {
			s, err := newTLSStreamLayer("127.0.0.1:0", nil, material(t, ca, "node"), quietLogger().WithField("t", 1))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, stop := tt.peer(t)
			defer stop()
			layer := tt.dialer(t)
			defer layer.Close()
			s := newTrackedStream(layer)
			c, err := s.Dial(raft.ServerAddress(addr), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			wrote := make(chan error, 1)
			var total atomic.Int64
			go func() {
				buf := make([]byte, 64<<10)
				for range 1 << 12 { // bounded: 256 MiB, far above any socket buffer
					n, err := c.Write(buf)
					total.Add(int64(n))
					if err != nil {
						wrote <- err
						return
					}
				}
				wrote <- nil
			}()
			// The writer is blocked once the written total stops growing.
			testwait.For(t, 10*time.Second, "the write to block", func() error {
				before := total.Load()
				time.Sleep(50 * time.Millisecond)
				if after := total.Load(); after != before || after == 0 {
					return fmt.Errorf("still writing (%d bytes)", after)
				}
				return nil
			})
			select {
			case err := <-wrote:
				t.Fatalf("the write ended before CloseConns: %v", err)
			default:
			}
			began := time.Now()
			closed, waiting := s.CloseConns()
			select {
			case err := <-wrote:
				if err == nil {
					t.Fatal("the blocked write succeeded after CloseConns")
				}
				t.Logf("write failed %v after CloseConns: %v", time.Since(began), err)
			case <-time.After(2 * time.Second):
				t.Fatal("the write was still blocked 2 s after CloseConns")
			}
			if closed != 1 || len(waiting) != 1 || waiting[0] != addr {
				t.Errorf("CloseConns: %d closed, waiting on %v; want 1 and [%s]", closed, waiting, addr)
			}
			if _, err := s.Dial(raft.ServerAddress(addr), time.Second); !errors.Is(err, errStreamClosing) {
				t.Errorf("dial after CloseConns: %v, want errStreamClosing", err)
			}
		})
	}
}

// TestCloseConnsNamesOnlyPeersOwingAReply: of two dialed connections whose
// reader is blocked, CloseConns names only the peer that has not answered
// the last request; the other answered (an idle pipeline), so it is not
// reported as a peer that does not answer.
func TestCloseConnsNamesOnlyPeersOwingAReply(t *testing.T) {
	listen := func(reply bool) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			b := make([]byte, 1)
			if _, err := c.Read(b); err == nil && reply {
				_, _ = c.Write(b)
			}
			_, _ = c.Read(b) // until the client closes
		}()
		return ln.Addr().String()
	}
	answering, silent := listen(true), listen(false)
	layer, err := newTCPStreamLayer("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer layer.Close()
	s := newTrackedStream(layer)
	var readers []chan error
	for _, addr := range []string{answering, silent} {
		c, err := s.Dial(raft.ServerAddress(addr), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		if addr == answering {
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan error, 1)
		go func() { _, err := c.Read(make([]byte, 1)); done <- err }()
		readers = append(readers, done)
		tc := c.(*trackedConn)
		testwait.For(t, 5*time.Second, "the read to start", func() error {
			if tc.busy.Load() == 0 {
				return errors.New("no read in progress")
			}
			return nil
		})
	}
	closed, waiting := s.CloseConns()
	if closed != 2 || len(waiting) != 1 || waiting[0] != silent {
		t.Fatalf("CloseConns: %d closed, waiting on %v; want 2 and [%s] (not %s)", closed, waiting, silent, answering)
	}
	for _, done := range readers {
		if err := <-done; err == nil {
			t.Error("a blocked read succeeded after CloseConns")
		}
	}
}

// TestCloseConnsAbandonsDial: a TLS dial to a peer that accepts the TCP
// connection and never answers the handshake (a paused peer) would last
// the whole dial timeout (raft's 10 s); CloseConns ends it at once.
func TestCloseConnsAbandonsDial(t *testing.T) {
	ca := testpki.NewCA(t, "cluster")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c // held open, never read
		}
	}()
	layer, err := newTLSStreamLayer("127.0.0.1:0", nil, material(t, ca, "node"), quietLogger().WithField("t", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer layer.Close()
	s := newTrackedStream(layer)
	dialed := make(chan error, 1)
	go func() {
		_, err := s.Dial(raft.ServerAddress(ln.Addr().String()), transportTimeout)
		dialed <- err
	}()
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the dial never connected")
	}
	select {
	case err := <-dialed:
		t.Fatalf("the handshake ended before CloseConns: %v", err)
	default:
	}
	s.CloseConns()
	select {
	case err := <-dialed:
		if !errors.Is(err, errStreamClosing) {
			t.Fatalf("dial after CloseConns: %v, want errStreamClosing", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the dial was still in its handshake 2 s after CloseConns")
	}
}
