package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
	"github.com/raftkv/raftkv/internal/server"
	"github.com/raftkv/raftkv/internal/testpki"
)

// TestStopWithPausedPeersIsBounded: both followers are paused (SIGSTOP:
// their connections stay open and nothing answers), so the leader's
// heartbeats and votes to them block, each up to the transport's 10 s
// timeout, and raft.Shutdown used to wait for them: a stop overran a
// small SHUTDOWN_TIMEOUT by seconds. Now the node cuts its Raft
// connections before waiting on raft, so the SIGTERM'd leader exits 0
// within SHUTDOWN_TIMEOUT (plus server.StopOverrun, the most the stop
// promises) and its log names the peers it stopped waiting for. Resumed,
// the other two elect a leader that holds every acknowledged write. The
// Raft transport plain and over mutual TLS.
func TestStopWithPausedPeersIsBounded(t *testing.T) {
	bin := raftkvBinary(t)
	t.Run("tcp", func(t *testing.T) { stopWithPausedPeers(t, bin, nil) })
	t.Run("tls", func(t *testing.T) {
		dir := t.TempDir()
		ca := testpki.NewCA(t, "cluster CA")
		stopWithPausedPeers(t, bin, func(_ int, name string) map[string]string {
			f := ca.Issue(t, name).Write(t, dir, name+"-raft", ca)
			return map[string]string{"RAFT_TLS_CERT_FILE": f.Cert, "RAFT_TLS_KEY_FILE": f.Key, "RAFT_TLS_CA_FILE": f.CA}
		})
	})
}

func stopWithPausedPeers(t *testing.T, bin string, nodeEnv func(int, string) map[string]string) {
	const shutdown = 3 * time.Second
	c := proc.StartCluster(t, proc.ClusterConfig{Size: 3, Bin: bin, Dir: t.TempDir(), Formation: proc.JoinFirst,
		Env: map[string]string{"SHUTDOWN_TIMEOUT": shutdown.String()}, NodeEnv: nodeEnv})
	c.WaitVoters(30*time.Second, c.Nodes...)
	leader := c.WaitLeader(15 * time.Second)
	var acked []string
	for i := range 20 {
		key := fmt.Sprintf("k%02d", i)
		if err := set(leader, key, key); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, key)
	}
	var paused []*proc.Node
	for _, n := range c.Nodes {
		if n != leader {
			n.Pause()
			paused = append(paused, n)
		}
	}
	defer func() { // resume whatever the test did not, so cleanup can end them
		for _, n := range paused {
			if n.Running() && !n.Up() {
				n.Resume()
			}
		}
	}()
	// A write in flight: its entry goes to the paused followers too. It
	// cannot commit, so it is never acknowledged.
	inFlight := make(chan error, 1)
	go func() { inFlight <- set(leader, "unacked", "x") }()

	began := time.Now()
	err := leader.Stop(shutdown + 20*time.Second)
	took := time.Since(began)
	t.Logf("%s stopped in %v (SHUTDOWN_TIMEOUT %v): %v", leader.Name, took, shutdown, err)
	if err != nil {
		t.Fatalf("%s exited with %v after SIGTERM, want 0 (a stop within SHUTDOWN_TIMEOUT)\n%s", leader.Name, err, leader.Tail(30))
	}
	if bound := shutdown + server.StopOverrun; took > bound {
		t.Fatalf("%s took %v to stop; SHUTDOWN_TIMEOUT=%v bounds it (plus %v)\n%s", leader.Name, took, shutdown, server.StopOverrun, leader.Tail(30))
	}
	log := leader.Tail(100)
	if !strings.Contains(log, "closed raft connections with a request in flight to peers that do not answer") {
		t.Errorf("%s's log does not say it cut the connections to the paused peers:\n%s", leader.Name, log)
	}
	for _, n := range paused {
		if !strings.Contains(log, n.RaftAddr) {
			t.Errorf("%s's log does not name paused %s (%s):\n%s", leader.Name, n.Name, n.RaftAddr, log)
		}
	}
	<-inFlight // ended with the leader's stop (cut or refused); not acknowledged

	for _, n := range paused {
		n.Resume()
	}
	next := c.WaitLeader(20 * time.Second)
	for _, key := range acked {
		if v, err := get(next, key, ""); err != nil || v != key {
			t.Errorf("%s on the new leader %s: %q, %v", key, next.Name, v, err)
		}
	}
}
