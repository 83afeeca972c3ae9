package testcluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/server"
	"github.com/raftkv/raftkv/internal/testwait"
)

// testWALSegmentSize keeps raft-wal segments small, so a compaction in a
// test drops whole segments and a lagging member must take a snapshot, as
// it would with boltdb.
const testWALSegmentSize = 2 << 10

// member is one node slot. Its ports and directory survive Kill, so Restart
// brings the same identity back.
type member struct {
	id       string
	dir      string
	raftPort int // 0 until first started
	httpPort int
	boot     bool

	srv *server.Server // nil while not running
}

// memberConfig is the configuration member m starts with: the cluster's
// shared settings, m's identity, ports and directory, and with WithTLS
// its certificate files. It names files but holds nothing read from them:
// server.Start reads them, as the daemon's config.Load does, so a
// restarted member reads its tokens file afresh.
func (c *Cluster) memberConfig(m *member) config.Config {
	cfg := c.set.cfg
	cfg.NodeID, cfg.VolumeDir = m.id, m.dir
	cfg.HTTPPort, cfg.RaftPort = m.httpPort, m.raftPort
	cfg.Bootstrap = m.boot
	cfg.Join = nil // joined through /join, as operators do
	if c.pki != nil {
		f := c.pki.files(c.t, m.id)
		cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSCAFile = f.Cert, f.Key, f.CA
		cfg.RaftTLSCertFile, cfg.RaftTLSKeyFile, cfg.RaftTLSCAFile = f.Cert, f.Key, f.CA
	}
	return cfg
}

// startMember starts m through server.Start, the daemon's own assembly.
func (c *Cluster) startMember(m *member) error {
	logger, err := c.newLogger(m.id)
	if err != nil {
		return err
	}
	cfg := c.memberConfig(m)
	var srv *server.Server
	err = retryAddrInUse(func() error {
		var e error
		srv, e = server.Start(cfg,
			server.WithLogger(logger),
			server.WithRaftTimeouts(HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout),
			server.WithWALSegmentSize(testWALSegmentSize))
		return e
	})
	if err != nil {
		return err
	}
	_, raftPort, err := node.SplitHostPort(srv.RaftAddr())
	httpPort := 0
	if err == nil {
		_, httpPort, err = node.SplitHostPort(srv.HTTPAddr())
	}
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("addresses %s, %s: %w", srv.HTTPAddr(), srv.RaftAddr(), err)
	}
	c.mu.Lock()
	m.raftPort, m.httpPort, m.srv = raftPort, httpPort, srv
	c.mu.Unlock()
	return nil
}

// retryAddrInUse retries f for a few seconds while a port it binds is still
// held, e.g. by a just-closed listener of the previous incarnation.
func retryAddrInUse(f func() error) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := f()
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// takeServer detaches m's server, or returns nil if m is not running.
func (c *Cluster) takeServer(m *member) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	srv := m.srv
	m.srv = nil
	return srv
}

func (c *Cluster) closeAll() {
	for _, m := range c.members {
		if srv := c.takeServer(m); srv != nil {
			if err := srv.Close(); err != nil {
				c.t.Errorf("testcluster: close %s: %v", m.id, err)
			}
		}
	}
	c.client.CloseIdleConnections()
}

// Kill stops member i at once (server.Close: no hand-off, in-flight
// requests cut after a moment), keeping its directory and ports for
// Restart. The rest of the cluster is not told.
func (c *Cluster) Kill(t testing.TB, i int) {
	t.Helper()
	m := c.member(i)
	srv := c.takeServer(m)
	if srv == nil {
		t.Fatalf("testcluster: Kill(%d): %s is not running", i, m.id)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("testcluster: Kill(%d): close %s: %v", i, m.id, err)
	}
}

// Stop stops member i the way the daemon does on SIGTERM (server.Stop):
// a leader hands leadership off or, with leave, the member removes itself
// from the configuration; then HTTP drains and the node closes. timeout
// bounds it all, as SHUTDOWN_TIMEOUT does: the hand-off or leave takes at
// most half. Its directory and ports are kept for Restart.
func (c *Cluster) Stop(t testing.TB, i int, leave bool, timeout time.Duration) {
	t.Helper()
	m := c.member(i)
	srv := c.takeServer(m)
	if srv == nil {
		t.Fatalf("testcluster: Stop(%d): %s is not running", i, m.id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Stop(ctx, leave); err != nil {
		t.Fatalf("testcluster: Stop(%d): %v", i, err)
	}
}

// Restart starts a killed member i again from its directory, on the same
// Raft and HTTP ports. It does not join it: a member rejoins from its own
// log. It returns without waiting; see WaitMembers and testwait.For.
func (c *Cluster) Restart(t testing.TB, i int) {
	t.Helper()
	m := c.member(i)
	if c.Alive(i) {
		t.Fatalf("testcluster: Restart(%d): %s is running", i, m.id)
	}
	if err := c.startMember(m); err != nil {
		t.Fatalf("testcluster: Restart(%d): %v", i, err)
	}
}

// RestartMoved starts a killed member i again from its directory on the
// same HTTP port but a new Raft port. The cluster still knows it at the
// old address, so it receives nothing until it is joined again with the
// new one (GET /join?nodeId=…&raftPort=RaftPort(i)): a member that moved.
func (c *Cluster) RestartMoved(t testing.TB, i int) {
	t.Helper()
	m := c.member(i)
	if c.Alive(i) {
		t.Fatalf("testcluster: RestartMoved(%d): %s is running", i, m.id)
	}
	c.mu.Lock()
	old := m.raftPort
	m.raftPort = 0 // any free port
	c.mu.Unlock()
	if err := c.startMember(m); err != nil {
		t.Fatalf("testcluster: RestartMoved(%d): %v", i, err)
	}
	if c.RaftPort(i) == old {
		t.Fatalf("testcluster: RestartMoved(%d): got the old raft port %d again", i, old)
	}
}

// AddUnjoined starts one more member that neither bootstraps nor is
// joined, and returns its index: a node waiting for an operator's /join.
// Call it from the test goroutine while no other goroutine uses the
// cluster, since it grows the member list.
func (c *Cluster) AddUnjoined(t testing.TB) int {
	t.Helper()
	i := len(c.members)
	m := &member{
		id:  fmt.Sprintf("n%d", i+1),
		dir: filepath.Join(filepath.Dir(c.members[0].dir), fmt.Sprintf("n%d", i+1)),
	}
	c.mu.Lock()
	c.members = append(c.members, m)
	c.mu.Unlock()
	if err := c.startMember(m); err != nil {
		t.Fatalf("testcluster: start %s: %v", m.id, err)
	}
	return i
}

// AddMember starts a new member with an empty directory (it does not
// bootstrap) and joins it through a running member's /join, as a voter or,
// with voter false, as a learner (voter=false). It returns the new index
// once the join answered 200. Call it from the test goroutine while no
// other goroutine uses the cluster: it grows the member list.
func (c *Cluster) AddMember(t testing.TB, voter bool) int {
	t.Helper()
	i := c.AddUnjoined(t)
	m := c.member(i)
	via := -1
	for _, j := range c.Running() {
		if j != i {
			via = j
			break
		}
	}
	if via < 0 {
		t.Fatalf("testcluster: AddMember: no running member to join %s through", m.id)
	}
	target := fmt.Sprintf("/join?nodeId=%s&raftPort=%d", m.id, c.RaftPort(i))
	if !voter {
		target += "&voter=false"
	}
	var last Response
	testwait.For(t, StartTimeout, "join of "+m.id+" via "+c.ID(via), func() error {
		var err error
		if last, err = c.Do(via, http.MethodPost, target, nil, nil); err == nil && last.Status != http.StatusOK {
			err = errors.New(last.Summary())
		}
		return err
	})
	if last.Bool("voter") != voter {
		t.Fatalf("testcluster: join %s: %s, want voter=%v", m.id, last.Body, voter)
	}
	return i
}
