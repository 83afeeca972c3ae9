// Package testcluster runs a raftkv cluster inside one test process, on
// loopback, for integration tests. Each member is built by server.Start
// and stopped by server.Stop (or Close, for Kill), the daemon's own
// assembly and stop order, from a config.Config the options fill in.
// Members are joined through the HTTP API as operators do
// (GET /join?nodeId=nX&raftPort=P sent to the first node); RAFT_JOIN's
// retry-join is exercised in internal/server's own tests.
//
// Timings are shortened but kept loose enough for `go test -race` on two
// cores. Set RAFTKV_TEST_LOG (trace, debug, info, warn, error) to change the
// log level; logs go to t.Log, so they show only for failing tests or -v.
package testcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/auth"
	"github.com/raftkv/raftkv/internal/logging"
	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/server"
	"github.com/raftkv/raftkv/internal/testwait"
)

// Timings every member uses. Raft's defaults (1s, 1s, 500ms) would make
// each test seconds slower; much shorter ones make elections flap under
// the race detector on a loaded two-core machine.
const (
	HeartbeatTimeout = 300 * time.Millisecond
	ElectionTimeout  = 300 * time.Millisecond
	// A leader steps down after this long without a quorum's contact;
	// 150ms made leaders step down during Start under -race on two cores.
	LeaderLeaseTimeout = 250 * time.Millisecond

	// DefaultRequestTimeout is the per-request raft deadline unless
	// WithRequestTimeout says otherwise.
	DefaultRequestTimeout = 3 * time.Second

	// StartTimeout bounds Start, Leader, Followers and WaitMembers.
	StartTimeout = 20 * time.Second
)

// LogEnv names the environment variable that sets the log level.
const LogEnv = "RAFTKV_TEST_LOG"

// Cluster is a set of in-process members, indexed 0..n-1 with ids n1..nN.
// Methods that take a testing.TB fail the test and belong on its goroutine;
// Do and the accessors (Node, URL, Alive, ...) are safe from any goroutine.
type Cluster struct {
	t       testing.TB
	set     settings
	logSink *logSink
	client  *http.Client
	pki     *clusterPKI // WithTLS; nil otherwise

	mu      sync.Mutex
	members []*member
}

// Start runs n members and returns once all are voters, a leader is known
// to all, and every member knows every member's HTTP address. Member 0
// bootstraps; the others are joined through member 0's /join endpoint.
// Everything is stopped by t.Cleanup.
func Start(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("testcluster: need at least one node, got %d", n)
	}
	set := defaultSettings()
	for _, o := range opts {
		o(&set)
	}
	if set.cfg.AuthTokensFile != "" {
		// The cluster's own client presents the node credential.
		toks, err := auth.LoadFile(set.cfg.AuthTokensFile)
		if err != nil {
			t.Fatalf("testcluster: %v", err)
		}
		set.adminToken = toks.NodeToken()
	}
	c := &Cluster{
		t:       t,
		set:     set,
		logSink: &logSink{t: t},
		client: &http.Client{
			// Members are killed and restarted: a pooled connection to a
			// dead member would fail a request for no interesting reason.
			Transport: &http.Transport{DisableKeepAlives: true},
			// Far above any request deadline: a hung request fails the
			// test instead of blocking it until the global timeout.
			Timeout: 30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
	// Cleanups run last-registered first: stop the members, then stop
	// logging to t (raft may log while shutting down, but t.Log after the
	// test panics), then remove the directories TempDir registered.
	base := t.TempDir()
	t.Cleanup(c.logSink.close)
	t.Cleanup(c.closeAll)
	if set.tls {
		c.pki = newClusterPKI(t, base)
		c.client.Transport.(*http.Transport).TLSClientConfig = c.ClientTLS()
	}

	for i := range n {
		m := &member{
			id:   fmt.Sprintf("n%d", i+1),
			dir:  filepath.Join(base, fmt.Sprintf("n%d", i+1)),
			boot: i == 0,
		}
		c.members = append(c.members, m)
		if err := c.startMember(m); err != nil {
			t.Fatalf("testcluster: start %s: %v", m.id, err)
		}
	}
	testwait.For(t, StartTimeout, "n1 to lead its bootstrapped cluster", func() error {
		if !c.Node(0).IsLeader() {
			return errors.New("it does not lead")
		}
		return nil
	})
	for i := 1; i < n; i++ {
		c.joinViaFirst(t, i)
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	c.WaitMembers(t, all...)
	return c
}

// joinViaFirst sends the seed's join request for member i to member 0,
// retrying while the cluster answers 503 (no leader yet).
func (c *Cluster) joinViaFirst(t testing.TB, i int) {
	t.Helper()
	m := c.member(i)
	target := fmt.Sprintf("/join?nodeId=%s&raftPort=%d", m.id, m.raftPort)
	var last Response
	testwait.For(t, StartTimeout, "join of "+m.id+" via n1", func() error {
		var err error
		if last, err = c.Do(0, http.MethodGet, target, nil, c.AdminHeader()); err == nil && last.Status != http.StatusOK {
			err = errors.New(last.Summary())
		}
		return err
	})
	// "unchanged" when an earlier attempt was applied but answered 504
	// (leadership lost while committing it).
	if got := last.String("change"); got != "added" && got != "unchanged" {
		t.Fatalf("testcluster: join %s: change %q, want added (%s)", m.id, got, last.Body)
	}
}

// member returns slot i; a bad index is a bug in the test, so it panics
// rather than calling Fatal on a testing.TB that may belong to another
// goroutine.
func (c *Cluster) member(i int) *member {
	if i < 0 || i >= len(c.members) {
		panic(fmt.Sprintf("testcluster: no node %d (cluster has %d)", i, len(c.members)))
	}
	return c.members[i]
}

// Size is the number of member slots, running or not.
func (c *Cluster) Size() int { return len(c.members) }

// ID is member i's node id ("n1" for member 0).
func (c *Cluster) ID(i int) string { return c.member(i).id }

// Index returns the member index of node id, or -1.
func (c *Cluster) Index(id string) int {
	for i, m := range c.members {
		if m.id == id {
			return i
		}
	}
	return -1
}

// Dir is member i's data directory (raft.db and snapshots/).
func (c *Cluster) Dir(i int) string { return c.member(i).dir }

// RaftPort is member i's Raft port; it stays the same across Restart.
func (c *Cluster) RaftPort(i int) int {
	m := c.member(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	return m.raftPort
}

// RaftAddr is member i's Raft address as the cluster knows it.
func (c *Cluster) RaftAddr(i int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.RaftPort(i)))
}

// HTTPAddr is member i's API host:port; it stays the same across Restart.
func (c *Cluster) HTTPAddr(i int) string {
	m := c.member(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.httpPort))
}

// URL is member i's API base URL, without a trailing slash.
func (c *Cluster) URL(i int) string { return c.scheme() + c.HTTPAddr(i) }

// Node is member i's running node, or nil if it is killed.
func (c *Cluster) Node(i int) *node.Node {
	m := c.member(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.srv == nil {
		return nil
	}
	return m.srv.Node()
}

// AdminToken is the tokens file's first admin token, or "" with auth off.
func (c *Cluster) AdminToken() string { return c.set.adminToken }

// AdminHeader is an Authorization header with AdminToken, or nil with
// auth off.
func (c *Cluster) AdminHeader() http.Header {
	if c.set.adminToken == "" {
		return nil
	}
	return http.Header{"Authorization": {"Bearer " + c.set.adminToken}}
}

// AuthReload makes running member i read its tokens file again, as SIGHUP
// does in the daemon. On an error its tokens stay as they were.
func (c *Cluster) AuthReload(i int) error {
	m := c.member(i)
	c.mu.Lock()
	srv := m.srv
	c.mu.Unlock()
	if srv == nil {
		return fmt.Errorf("testcluster: %s is not running", m.id)
	}
	err := srv.ReloadTokens()
	if errors.Is(err, server.ErrAuthOff) {
		return fmt.Errorf("testcluster: %s is not running with auth on", m.id)
	}
	return err
}

// Alive reports whether member i is running.
func (c *Cluster) Alive(i int) bool { return c.Node(i) != nil }

// RequestTimeout is the API's per-request deadline.
func (c *Cluster) RequestTimeout() time.Duration { return c.set.cfg.RequestTimeout }

// MaxKeyBytes is the API's key size limit.
func (c *Cluster) MaxKeyBytes() int { return c.set.cfg.MaxKeyBytes }

// MaxValueBytes is the API's value size limit.
func (c *Cluster) MaxValueBytes() int { return c.set.cfg.MaxValueBytes }

// Running lists the indexes of running members.
func (c *Cluster) Running() []int {
	var out []int
	for i := range c.members {
		if c.Alive(i) {
			out = append(out, i)
		}
	}
	return out
}

// Leader waits until exactly one running member leads and every running
// member in its configuration agrees, and returns its index.
func (c *Cluster) Leader(t testing.TB) int {
	t.Helper()
	leader := -1
	testwait.For(t, StartTimeout, "a leader all running members agree on", func() error {
		if leader = c.stableLeader(); leader < 0 {
			return errors.New("none yet")
		}
		return nil
	})
	return leader
}

func (c *Cluster) stableLeader() int {
	leader := -1
	for _, i := range c.Running() {
		if n := c.Node(i); n != nil && n.IsLeader() {
			if leader >= 0 {
				return -1 // two claim leadership: an election is settling
			}
			leader = i
		}
	}
	if leader < 0 {
		return -1
	}
	ln := c.Node(leader)
	if ln == nil {
		return -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	members, err := ln.Members(ctx)
	if err != nil {
		return -1
	}
	for _, m := range members {
		i := c.Index(m.ID)
		if i < 0 || !c.Alive(i) {
			continue
		}
		n := c.Node(i)
		if n == nil {
			continue
		}
		if l, ok := n.Leader(); !ok || l.ID != ln.ID() || l.HTTPAddr == "" {
			return -1
		}
	}
	return leader
}

// Followers lists the running members other than the current leader
// (waiting for one, as Leader does).
func (c *Cluster) Followers(t testing.TB) []int {
	t.Helper()
	l := c.Leader(t)
	var out []int
	for _, i := range c.Running() {
		if i != l {
			out = append(out, i)
		}
	}
	return out
}

// WaitMembers waits until each listed member runs and sees exactly the
// listed members as voters with their HTTP addresses, and all agree on a
// leader among them.
func (c *Cluster) WaitMembers(t testing.TB, idx ...int) {
	t.Helper()
	testwait.For(t, StartTimeout, fmt.Sprintf("members %v to converge", idx), func() error {
		if why := c.membersConverged(idx); why != "" {
			return errors.New(why)
		}
		return nil
	})
}

// membersConverged returns "" when converged, or what is still missing.
func (c *Cluster) membersConverged(idx []int) string {
	want := map[string]string{}
	for _, i := range idx {
		want[c.member(i).id] = c.HTTPAddr(i)
	}
	leaderID := ""
	for _, i := range idx {
		n := c.Node(i)
		if n == nil {
			return c.members[i].id + " is not running"
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		members, err := n.Members(ctx)
		cancel()
		if err != nil {
			return fmt.Sprintf("%s: members: %v", n.ID(), err)
		}
		if len(members) != len(want) {
			return fmt.Sprintf("%s sees %d members, want %d", n.ID(), len(members), len(want))
		}
		for _, m := range members {
			if addr, ok := want[m.ID]; !ok || !m.Voter || m.HTTPAddr != addr {
				return fmt.Sprintf("%s sees %+v", n.ID(), m)
			}
		}
		l, ok := n.Leader()
		if !ok || (leaderID != "" && l.ID != leaderID) {
			return n.ID() + " has no leader or another one"
		}
		if _, member := want[l.ID]; !member {
			return n.ID() + " follows a non-member"
		}
		leaderID = l.ID
	}
	return ""
}

// newLogger gives member id its own logger, writing to the test log with
// the id as prefix, at the level RAFTKV_TEST_LOG sets (default warn).
func (c *Cluster) newLogger(id string) (*logrus.Logger, error) {
	level := os.Getenv(LogEnv)
	if level == "" {
		level = "warn"
	}
	l, err := logging.New(level, logging.FormatText, &prefixWriter{prefix: id + ": ", sink: c.logSink})
	if err == nil && c.set.loggerSetup != nil {
		c.set.loggerSetup(id, l)
	}
	return l, err
}

// logSink forwards log lines to t.Log until the test ends. raft may log
// from its goroutines during cleanup; after close, lines are dropped,
// because t.Log after the test has completed panics.
type logSink struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func (s *logSink) log(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.t.Log(line)
	}
}

func (s *logSink) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

type prefixWriter struct {
	prefix string
	sink   *logSink
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.sink.log(w.prefix + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = (*prefixWriter)(nil)
