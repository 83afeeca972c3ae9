package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/proc"
)

// lastStopTimeout is the SHUTDOWN_TIMEOUT of the last-node tests: large,
// so that waiting half of it for a hand-off shows clearly.
const lastStopTimeout = 20 * time.Second

// stopWithin stops n with SIGTERM and fails unless it exits within a
// quarter of SHUTDOWN_TIMEOUT (a hand-off that waits out its share takes
// half), returning how long it took.
func stopWithin(t *testing.T, n *proc.Node) time.Duration {
	t.Helper()
	began := time.Now()
	if err := n.Stop(lastStopTimeout + 20*time.Second); err != nil {
		t.Fatalf("%s: exit after SIGTERM: %v", n.Name, err)
	}
	took := time.Since(began)
	if took > lastStopTimeout/4 {
		t.Fatalf("%s took %v to stop with SHUTDOWN_TIMEOUT=%v; the last node has no one to hand off to and must not wait for it\n%s",
			n.Name, took, lastStopTimeout, n.Tail(40))
	}
	return took
}

// TestLoneNodeStopsAtOnce: a one-node cluster stopped with SIGTERM does
// not wait for a hand-off.
func TestLoneNodeStopsAtOnce(t *testing.T) {
	c := proc.StartCluster(t, proc.ClusterConfig{Size: 1, Bin: raftkvBinary(t), Dir: t.TempDir(), Formation: proc.JoinFirst,
		Env: map[string]string{"SHUTDOWN_TIMEOUT": lastStopTimeout.String()}})
	n := c.WaitLeader(15 * time.Second)
	if err := set(n, "k", "v"); err != nil {
		t.Fatal(err)
	}
	t.Logf("lone node stopped in %v (SHUTDOWN_TIMEOUT %v)", stopWithin(t, n), lastStopTimeout)
	if !strings.Contains(n.Tail(20), "no other voter to hand leadership to") {
		t.Errorf("the log does not say why there was no hand-off:\n%s", n.Tail(40))
	}
}

// TestLastNodeOfClusterStopsAtOnce: the nodes of a three-node cluster are
// stopped one after another with SIGTERM; the last one, whose other voters
// are gone, stops within a quarter of SHUTDOWN_TIMEOUT too.
func TestLastNodeOfClusterStopsAtOnce(t *testing.T) {
	c := proc.StartCluster(t, proc.ClusterConfig{Size: 3, Bin: raftkvBinary(t), Dir: t.TempDir(), Formation: proc.Expect,
		Env: map[string]string{"SHUTDOWN_TIMEOUT": lastStopTimeout.String()}})
	c.WaitVoters(30*time.Second, c.Nodes...)
	leader := c.WaitLeader(15 * time.Second)
	if err := set(leader, "k", "v"); err != nil {
		t.Fatal(err)
	}
	// Stop the followers first, then the leader: it is then a leader
	// whose other voters are all gone.
	var order []*proc.Node
	for _, n := range c.Nodes {
		if n != leader {
			order = append(order, n)
		}
	}
	order = append(order, leader)
	for _, n := range order {
		t.Logf("%s stopped in %v", n.Name, stopWithin(t, n))
	}
}

// TestHandOffToUnreachableVotersIsBounded: the other voters are paused
// (SIGSTOP: their connections open, nothing answers), so the leader still
// counts them. Stopped with SIGTERM, it stops trying to hand off within
// node.HandOffElections election timeouts (raft's default: 1 s), not half
// of SHUTDOWN_TIMEOUT.
func TestHandOffToUnreachableVotersIsBounded(t *testing.T) {
	c := proc.StartCluster(t, proc.ClusterConfig{Size: 3, Bin: raftkvBinary(t), Dir: t.TempDir(), Formation: proc.Expect,
		Env: map[string]string{"SHUTDOWN_TIMEOUT": lastStopTimeout.String()}})
	c.WaitVoters(30*time.Second, c.Nodes...)
	leader := c.WaitLeader(15 * time.Second)
	if err := set(leader, "k", "v"); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if n != leader {
			n.Pause()
			defer n.Resume()
		}
	}
	began := time.Now()
	if err := leader.Stop(lastStopTimeout + 20*time.Second); err != nil {
		t.Fatalf("%s: exit after SIGTERM: %v", leader.Name, err)
	}
	log := leader.Tail(200)
	from := logTime(t, log, `msg="shutting down"`)
	to := logTime(t, log, `component=cluster`, "hand", "stepped down before stopping")
	bound := node.HandOffElections * raftElectionTimeout
	t.Logf("hand-off gave up after %v (bound %v); whole stop %v (SHUTDOWN_TIMEOUT %v)", to.Sub(from), bound, time.Since(began), lastStopTimeout)
	if to.Sub(from) > bound+500*time.Millisecond || to.Sub(from) > lastStopTimeout/4 {
		t.Fatalf("the hand-off took %v; want at most %v\n%s", to.Sub(from), bound, log)
	}
}

// logTime is the time of the last log line holding must and one of any.
func logTime(t *testing.T, log, must string, any ...string) time.Time {
	t.Helper()
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if !strings.Contains(l, must) {
			continue
		}
		ok := len(any) == 0
		for _, a := range any {
			ok = ok || strings.Contains(l, a)
		}
		if !ok {
			continue
		}
		_, rest, _ := strings.Cut(l, `time="`)
		stamp, _, _ := strings.Cut(rest, `"`)
		ts, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			t.Fatalf("log line without a time: %q", l)
		}
		return ts
	}
	t.Fatalf("no log line with %q and one of %q in:\n%s", must, any, log)
	return time.Time{}
}
