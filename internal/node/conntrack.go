package node

import (
	"context"
	"errors"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// errStreamClosing is a dial refused because the node is stopping.
var errStreamClosing = errors.New("raft transport: the node is stopping")

// trackedStream is the Raft transport's stream layer (plain TCP or mutual
// TLS) keeping every connection it dialed or accepted, so that the node's
// stop can close them all (CloseConns). raft's NetworkTransport closes
// only the idle connections of its pool; one that carries an RPC to a
// peer that does not answer (paused, or gone without a reset) stays
// blocked up to the transport timeout (10 s), and raft.Shutdown waits for
// the replication goroutine holding it, so a stop could overrun
// SHUTDOWN_TIMEOUT.
type trackedStream struct {
	raft.StreamLayer
	dialer contextDialer // the layer beneath
	// dialCtx ends on CloseConns: a dial in progress (a TLS handshake
	// with a paused peer lasts up to the dial timeout) fails at once.
	dialCtx    context.Context
	cancelDial context.CancelFunc

	mu      sync.Mutex
	conns   map[*trackedConn]struct{}
	closing bool
}

// contextDialer is a stream layer whose dial a context can abandon.
type contextDialer interface {
	raft.StreamLayer
	DialContext(ctx context.Context, address raft.ServerAddress, timeout time.Duration) (net.Conn, error)
}

func newTrackedStream(s contextDialer) *trackedStream {
	t := &trackedStream{StreamLayer: s, dialer: s, conns: map[*trackedConn]struct{}{}}
	t.dialCtx, t.cancelDial = context.WithCancel(context.Background())
	return t
}

// Dial dials through the layer beneath and tracks the connection; once
// CloseConns ran it refuses, and CloseConns abandons a dial in progress.
func (s *trackedStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if s.isClosing() {
		return nil, errStreamClosing
	}
	c, err := s.dialer.DialContext(s.dialCtx, address, timeout)
	if err != nil {
		if s.dialCtx.Err() != nil {
			return nil, errStreamClosing
		}
		return nil, err
	}
	return s.track(c, true)
}

// Accept returns the next inbound connection, tracked. Once CloseConns
// ran, inbound connections are closed as they come, until the listener
// closes.
func (s *trackedStream) Accept() (net.Conn, error) {
	for {
		c, err := s.StreamLayer.Accept()
		if err != nil {
			return nil, err
		}
		if tc, err := s.track(c, false); err == nil {
			return tc, nil
		}
	}
}

func (s *trackedStream) track(c net.Conn, dialed bool) (net.Conn, error) {
	tc := &trackedConn{Conn: c, s: s, dialed: dialed}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		_ = c.Close()
		return nil, errStreamClosing
	}
	s.conns[tc] = struct{}{}
	return tc, nil
}

func (s *trackedStream) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// CloseConns closes every connection the layer dialed or accepted and
// refuses new ones, so a read or write blocked on any of them fails at
// once. It returns how many connections it closed and the addresses of
// the peers that owed an answer on a dialed connection (sorted, once
// each): a read or write was in progress and the last bytes went out
// after the last came in, so a request was waiting for its reply. An idle
// pipeline, whose reader waits with every reply received, does not count.
// The listener stays open until the transport closes.
func (s *trackedStream) CloseConns() (closed int, waitingOn []string) {
	s.mu.Lock()
	s.closing = true
	s.cancelDial()
	conns := s.conns
	s.conns = map[*trackedConn]struct{}{}
	s.mu.Unlock()
	seen := map[string]bool{}
	for c := range conns {
		if c.dialed && c.owed() {
			if a := c.RemoteAddr().String(); !seen[a] {
				seen[a] = true
				waitingOn = append(waitingOn, a)
			}
		}
		_ = c.Conn.Close()
	}
	sort.Strings(waitingOn)
	return len(conns), waitingOn
}

// trackedConn is a connection trackedStream keeps until it is closed.
type trackedConn struct {
	net.Conn
	s      *trackedStream
	dialed bool
	busy   atomic.Int32 // reads and writes in progress
	// lastRead and lastWrite are when bytes last came in and went out
	// (time.Now().UnixNano()); zero: never.
	lastRead, lastWrite atomic.Int64
	once                sync.Once
}

// owed: a read or write is in progress and bytes went out after the last
// ones came in (a request waits for its reply).
func (c *trackedConn) owed() bool {
	return c.busy.Load() > 0 && c.lastWrite.Load() > c.lastRead.Load()
}

func (c *trackedConn) Read(p []byte) (int, error) {
	c.busy.Add(1)
	defer c.busy.Add(-1)
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.lastRead.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *trackedConn) Write(p []byte) (int, error) {
	c.busy.Add(1)
	defer c.busy.Add(-1)
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.lastWrite.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// tcpStreamLayer is the plain TCP stream layer, as raft's own
// TCPStreamLayer (whose listener cannot be set from outside the package).
type tcpStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
}

func newTCPStreamLayer(bind string, advertise net.Addr) (*tcpStreamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	s := &tcpStreamLayer{ln: ln, advertise: advertise}
	// raft's check: peers must be able to dial the address this node puts
	// in the configuration.
	if addr, ok := s.Addr().(*net.TCPAddr); !ok || addr.IP == nil || addr.IP.IsUnspecified() {
		ln.Close()
		return nil, errors.New("local bind address is not advertisable")
	}
	return s, nil
}

func (s *tcpStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.DialContext(context.Background(), address, timeout)
}

// DialContext is Dial, abandoned when ctx ends.
func (s *tcpStreamLayer) DialContext(ctx context.Context, address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.DialContext(ctx, "tcp", string(address))
}

func (s *tcpStreamLayer) Accept() (net.Conn, error) { return s.ln.Accept() }

func (s *tcpStreamLayer) Close() error { return s.ln.Close() }

func (s *tcpStreamLayer) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.ln.Addr()
}
