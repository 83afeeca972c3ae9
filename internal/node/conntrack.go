package node

import (
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

	mu      sync.Mutex
	conns   map[*trackedConn]struct{}
	closing bool
}

func newTrackedStream(s raft.StreamLayer) *trackedStream {
	return &trackedStream{StreamLayer: s, conns: map[*trackedConn]struct{}{}}
}

// Dial dials through the layer beneath and tracks the connection; once
// CloseConns ran it refuses.
func (s *trackedStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if s.isClosing() {
		return nil, errStreamClosing
	}
	c, err := s.StreamLayer.Dial(address, timeout)
	if err != nil {
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
// the peers that a dialed connection had an RPC in flight to (sorted,
// once each): the peers that were not answering. The listener stays open
// until the transport closes.
func (s *trackedStream) CloseConns() (closed int, waitingOn []string) {
	s.mu.Lock()
	s.closing = true
	conns := s.conns
	s.conns = map[*trackedConn]struct{}{}
	s.mu.Unlock()
	seen := map[string]bool{}
	for c := range conns {
		if c.dialed && c.busy.Load() > 0 {
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
	once   sync.Once
}

func (c *trackedConn) Read(p []byte) (int, error) {
	c.busy.Add(1)
	defer c.busy.Add(-1)
	return c.Conn.Read(p)
}

func (c *trackedConn) Write(p []byte) (int, error) {
	c.busy.Add(1)
	defer c.busy.Add(-1)
	return c.Conn.Write(p)
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
	return net.DialTimeout("tcp", string(address), timeout)
}

func (s *tcpStreamLayer) Accept() (net.Conn, error) { return s.ln.Accept() }

func (s *tcpStreamLayer) Close() error { return s.ln.Close() }

func (s *tcpStreamLayer) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.ln.Addr()
}
