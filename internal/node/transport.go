package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/tlsconfig"
)

const (
	// transportMaxPool and transportTimeout are what the plain TCP
	// transport has always used.
	transportMaxPool = 3
	transportTimeout = 10 * time.Second

	// handshakeTimeout bounds an inbound TLS handshake, so a peer that
	// connects and says nothing holds a goroutine only this long. Real
	// handshakes take milliseconds.
	handshakeTimeout = 5 * time.Second
	// maxHandshakesPerHost caps inbound handshakes in progress from one
	// remote host: a peer needs one per connection it is opening (raft
	// pools three), so one host holding more is stalling on purpose, and
	// must not be able to crowd out the real peers. maxHandshakes caps them
	// all, as a backstop against many hosts.
	maxHandshakesPerHost = 8
	maxHandshakes        = 1024
	// refusalLogEvery limits warnings about refused peers to one per
	// remote host per period (the rest go to debug): a rogue node retries
	// every heartbeat.
	refusalLogEvery = 30 * time.Second
)

// newTransport opens the Raft transport: mutual TLS when tc is set, plain
// TCP otherwise, both with the pool size and timeout raft's TCP transport
// has always had, and both through a trackedStream (conntrack.go), so the
// node's stop can cut every connection.
func newTransport(bind string, advertise net.Addr, tc *tlsconfig.Material, hlog hclog.Logger, log *logrus.Entry) (*raft.NetworkTransport, *trackedStream, error) {
	var stream contextDialer
	if tc == nil {
		s, err := newTCPStreamLayer(bind, advertise)
		if err != nil {
			return nil, nil, err
		}
		stream = s
	} else {
		s, err := newTLSStreamLayer(bind, advertise, tc, log)
		if err != nil {
			return nil, nil, err
		}
		stream = s
	}
	tracked := newTrackedStream(stream)
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  tracked,
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
		Logger:  hlog,
	}), tracked, nil
}

// tlsStreamLayer is a raft.StreamLayer over mutual TLS. Inbound
// connections are handshaken here, each in its own goroutine with a
// deadline, and only those that pass reach raft: a peer without a
// certificate from the cluster CA never gets a byte of Raft traffic in or
// out, and a failed or stalled handshake is logged and closed without
// holding up the accept loop or disturbing raft.
type tlsStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
	log       *logrus.Entry

	conns     chan net.Conn // handshaken inbound connections
	ctx       context.Context
	cancel    context.CancelFunc // on Close: abandons handshakes in progress
	closeOnce sync.Once

	pendingMu sync.Mutex
	pending   map[string]int // remote host -> handshakes in progress
	total     int

	refusedMu sync.Mutex
	refused   map[string]time.Time // remote host -> last warning
}

func newTLSStreamLayer(bind string, advertise net.Addr, tc *tlsconfig.Material, log *logrus.Entry) (*tlsStreamLayer, error) {
	if tc.CA == nil {
		return nil, errors.New("raft mutual TLS needs a CA")
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	s := &tlsStreamLayer{
		ln:        ln,
		advertise: advertise,
		server:    tc.RaftServer(),
		client:    tc.RaftClient(),
		log:       log.WithField("component", "raft-tls"),
		conns:     make(chan net.Conn),
		pending:   map[string]int{},
		refused:   map[string]time.Time{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	// The same check raft's TCP transport makes: peers must be able to
	// dial the address this node puts in the configuration.
	if addr, ok := s.Addr().(*net.TCPAddr); !ok || addr.IP == nil || addr.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft address %v is not advertisable", s.Addr())
	}
	go s.acceptLoop()
	return s, nil
}

func (s *tlsStreamLayer) acceptLoop() {
	delay := time.Duration(0)
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.closed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as
			// net/http does, rather than spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.WithError(err).WithField("retry_in", delay).Warn("raft: accept failed")
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		host := hostOf(c.RemoteAddr())
		if !s.startHandshake(host) {
			s.refuse(c.RemoteAddr(), errors.New("too many TLS handshakes in progress from this host"))
			c.Close()
			continue
		}
		go s.handshake(c, host)
	}
}

// startHandshake counts a handshake from host in, unless a cap is reached.
func (s *tlsStreamLayer) startHandshake(host string) bool {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	if s.pending[host] >= maxHandshakesPerHost || s.total >= maxHandshakes {
		return false
	}
	s.pending[host]++
	s.total++
	return true
}

func (s *tlsStreamLayer) endHandshake(host string) {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	if s.pending[host]--; s.pending[host] == 0 {
		delete(s.pending, host)
	}
	s.total--
}

func hostOf(a net.Addr) string {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// handshake completes the server side of the handshake, which verifies
// the peer's client certificate against the cluster CA, and hands the
// connection to raft only if that succeeded.
func (s *tlsStreamLayer) handshake(c net.Conn, host string) {
	defer s.endHandshake(host)
	tc := tls.Server(c, s.server)
	ctx, cancel := context.WithTimeout(s.ctx, handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.refuse(c.RemoteAddr(), err)
		c.Close()
		return
	}
	select {
	case s.conns <- tc:
	case <-s.ctx.Done():
		tc.Close()
	}
}

// refuse logs a refused inbound connection: a warning per remote host at
// most every refusalLogEvery, debug otherwise.
func (s *tlsStreamLayer) refuse(remote net.Addr, err error) {
	host := hostOf(remote)
	now := time.Now()
	s.refusedMu.Lock()
	last, seen := s.refused[host]
	warn := !seen || now.Sub(last) >= refusalLogEvery
	if warn {
		if len(s.refused) >= 1024 { // bounded: forget everyone rather than grow
			clear(s.refused)
		}
		s.refused[host] = now
	}
	s.refusedMu.Unlock()
	level := logrus.DebugLevel
	if warn {
		level = logrus.WarnLevel
	}
	s.log.WithFields(logrus.Fields{"remote": remote.String()}).WithError(err).
		Log(level, "raft: refused a connection: TLS handshake failed (is the peer's certificate from RAFT_TLS_CA_FILE?)")
}

// Accept returns the next inbound connection that passed the handshake.
func (s *tlsStreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Dial connects to a peer and completes the handshake within timeout:
// the peer must present a certificate from the cluster CA, and this node
// presents its own.
func (s *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.DialContext(context.Background(), address, timeout)
}

// DialContext is Dial, abandoned (handshake included) when ctx ends.
func (s *tlsStreamLayer) DialContext(ctx context.Context, address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: s.client}
	c, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		// raft logs the failed RPC itself; this line says why.
		s.log.WithField("peer", string(address)).WithError(err).Debug("raft: dial failed")
		return nil, fmt.Errorf("raft TLS dial %s: %w", address, err)
	}
	return c, nil
}

// Close stops accepting; connections already handed to raft are raft's.
func (s *tlsStreamLayer) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.cancel()
		err = s.ln.Close()
	})
	return err
}

func (s *tlsStreamLayer) closed() bool { return s.ctx.Err() != nil }

// Addr is the address peers dial: the advertised one if set.
func (s *tlsStreamLayer) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.ln.Addr()
}
