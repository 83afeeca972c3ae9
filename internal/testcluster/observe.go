package testcluster

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"
)

// WithLoggerSetup calls f with each member's logger when the member
// starts (again on Restart), before anything logs: a test can raise the
// level or add a hook that captures lines.
func WithLoggerSetup(f func(id string, l *logrus.Logger)) Option {
	return func(s *settings) { s.loggerSetup = f }
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

// RestartMoved starts a killed member i again from its directory on the
// same HTTP port but a new Raft port. The cluster still knows it at the
// old address, so it receives nothing until it is joined again with the
// new one (GET /join?nodeId=…&raftPort=RaftPort(i)): a member that moved.
func (c *Cluster) RestartMoved(t testing.TB, i int) {
	t.Helper()
	m := c.member(i)
	if c.Node(i) != nil {
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
