package e2e

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/proc"
	"github.com/raftkv/raftkv/internal/testwait"
)

// raftElectionTimeout is hashicorp/raft's default, which the binary uses:
// without a hand-off, followers notice a lost leader only after missing
// heartbeats for about this long, then elect.
const raftElectionTimeout = time.Second

// startExpectCluster starts three nodes the "one command per node" way:
// each gets the same RAFT_JOIN (all three HTTP addresses, its own
// included) and RAFT_BOOTSTRAP_EXPECT=3, plus extra variables; no /join
// request is sent.
func startExpectCluster(t *testing.T, extra map[string]string) *proc.Cluster {
	t.Helper()
	env := map[string]string{"LOG_LEVEL": "info"}
	maps.Copy(env, extra)
	return proc.StartCluster(t, proc.ClusterConfig{Size: 3, Bin: raftkvBinary(t), Dir: t.TempDir(), Formation: proc.Expect, Env: env})
}

// TestBootstrapExpect: three nodes started at once with RAFT_JOIN and
// RAFT_BOOTSTRAP_EXPECT=3 form one cluster by themselves; a restarted node
// (volume with state) rejoins it rather than bootstrapping again.
func TestBootstrapExpect(t *testing.T) {
	c := startExpectCluster(t, nil)
	nodes := c.Nodes
	c.WaitVoters(30*time.Second, nodes...)
	leader := c.WaitLeader(15 * time.Second)
	t.Logf("three nodes with RAFT_BOOTSTRAP_EXPECT=3: one cluster of 3 voters, leader %s, %v after the last process started",
		leader.Name, time.Since(nodes[2].Started()).Round(time.Millisecond))

	bootstrapped := 0
	for _, n := range nodes {
		if strings.Contains(n.Tail(200), "bootstrapped a new cluster") {
			bootstrapped++
		}
	}
	if bootstrapped == 0 {
		t.Fatalf("no node logged a bootstrap")
	}
	t.Logf("%d of 3 nodes bootstrapped with the shared configuration; the others were joined or caught up", bootstrapped)

	if err := set(nodes[1], "formed", "yes"); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if v, err := get(n, "formed", ""); err != nil || v != "yes" {
			t.Fatalf("linearizable read on %s: %q %v", n.Name, v, err)
		}
		testwait.For(t, 10*time.Second, "the write on "+n.Name+"'s replica", func() error {
			if v, err := get(n, "formed", "stale"); err != nil || v != "yes" {
				return fmt.Errorf("stale read on %s: %q %v", n.Name, v, err)
			}
			return nil
		})
	}

	// A restart keeps the cluster: the volume has state, so the expect
	// logic is skipped and the node rejoins from its log.
	n3 := nodes[2]
	if err := n3.Stop(20 * time.Second); err != nil {
		t.Fatalf("%s: exit after SIGTERM: %v", n3.Name, err)
	}
	n3.Restart()
	c.WaitVoters(30*time.Second, nodes...)
	if err := set(nodes[0], "after-restart", "1"); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the restarted node to catch up", func() error {
		if v, err := get(n3, "after-restart", "stale"); err != nil || v != "1" {
			return fmt.Errorf("stale read on %s: %q %v", n3.Name, v, err)
		}
		return nil
	})
	if c := strings.Count(n3.Tail(1000), "bootstrapped a new cluster"); c > 1 {
		t.Fatalf("%s bootstrapped %d times", n3.Name, c)
	}
}

// writer writes unique keys through one node, retrying each write with the
// same Idempotency-Key until it is acknowledged, and records what was.
type writer struct {
	via    *proc.Node
	prefix string // of its keys

	mu       sync.Mutex
	acked    []string
	retries  int
	lastFail string
}

// put writes key=key through w.via until a 200 or the deadline.
func (w *writer) put(key string, deadline time.Time) bool {
	for time.Now().Before(deadline) {
		req, err := http.NewRequest(http.MethodPut, w.via.URL("/kv/"+key), strings.NewReader(key))
		if err != nil {
			return false
		}
		req.Header.Set("Idempotency-Key", "w-"+key)
		resp, err := proc.Client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				w.mu.Lock()
				w.acked = append(w.acked, key)
				w.mu.Unlock()
				return true
			}
			err = fmt.Errorf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
		}
		w.mu.Lock()
		w.retries++
		w.lastFail = err.Error()
		w.mu.Unlock()
		time.Sleep(20 * time.Millisecond) // pace retries; the loop ends at the deadline
	}
	return false
}

// run writes until stop is closed (each write bounded by 15s) and closes done.
func (w *writer) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for i := 0; i < 100000; i++ {
		select {
		case <-stop:
			return
		default:
		}
		if !w.put(fmt.Sprintf("%s%05d", w.prefix, i), time.Now().Add(15*time.Second)) {
			return
		}
	}
}

// ackedCount sums the writers' acknowledged writes.
func ackedCount(ws []*writer) int {
	n := 0
	for _, w := range ws {
		w.mu.Lock()
		n += len(w.acked)
		w.mu.Unlock()
	}
	return n
}

// TestGracefulLeaderStop: SIGTERM to the leader of three. It exits 0; a
// new leader is in place long before an election timeout could have
// produced one; clients writing through the other nodes with retries lose
// no acknowledged write; the stopped node stays a member.
func TestGracefulLeaderStop(t *testing.T) {
	c := startExpectCluster(t, nil)
	nodes := c.Nodes
	c.WaitVoters(30*time.Second, nodes...)
	leader := c.WaitLeader(15 * time.Second)
	var survivors []*proc.Node
	for _, n := range nodes {
		if n != leader {
			survivors = append(survivors, n)
		}
	}

	// One writer through each survivor: whichever becomes leader, one of
	// them keeps going through a follower, i.e. through forwarding.
	var writers []*writer
	stop := make(chan struct{})
	var dones []chan struct{}
	var stopOnce sync.Once
	stopWriters := func() {
		stopOnce.Do(func() { close(stop) })
		for _, d := range dones {
			<-d
		}
	}
	defer stopWriters()
	for i, n := range survivors {
		w := &writer{via: n, prefix: fmt.Sprintf("w%d-", i)}
		done := make(chan struct{})
		writers, dones = append(writers, w), append(dones, done)
		go w.run(stop, done)
	}
	testwait.For(t, 10*time.Second, "the writers to get going", func() error {
		if n := ackedCount(writers); n < 40 {
			return fmt.Errorf("%d writes acknowledged", n)
		}
		return nil
	})

	signalled := time.Now()
	leader.Signal(syscall.SIGTERM)
	// Poll the survivors for a new leader while the old one stops.
	var nl *proc.Node
	gap := testwait.For(t, 10*time.Second, "a new leader after SIGTERM", func() error {
		for _, n := range survivors {
			st, err := n.Status()
			if err == nil && st.LeaderID != "" && st.LeaderID != leader.Name && st.State == "Leader" {
				nl = n
				return nil
			}
		}
		return fmt.Errorf("no new leader yet")
	})
	exitErr := leader.Wait(20 * time.Second)
	exited := time.Since(signalled)
	if exitErr != nil {
		t.Fatalf("%s exited with %v after SIGTERM, want code 0", leader.Name, exitErr)
	}
	t.Logf("SIGTERM to leader %s: %s leads after %v (raft election timeout %v); process exited 0 after %v",
		leader.Name, nl.Name, gap.Round(time.Millisecond), raftElectionTimeout, exited.Round(time.Millisecond))
	if gap >= raftElectionTimeout {
		t.Fatalf("a new leader took %v, not less than an election timeout (%v): no hand-off", gap, raftElectionTimeout)
	}
	for _, line := range []string{"handed off leadership before stopping", "raft and its stores closed; stopped"} {
		if !strings.Contains(leader.Tail(50), line) {
			t.Fatalf("%s did not log %q", leader.Name, line)
		}
	}

	// Keep writing a little after the change, then check every
	// acknowledged write on the new leader, linearizably.
	before := ackedCount(writers)
	testwait.For(t, 15*time.Second, "writes after the leader change", func() error {
		if n := ackedCount(writers) - before; n < 40 {
			return fmt.Errorf("%d writes acknowledged since the change", n)
		}
		return nil
	})
	stopWriters()
	for _, w := range writers {
		for _, k := range w.acked {
			if v, err := get(nl, k, ""); err != nil || v != k {
				t.Fatalf("acknowledged write %s lost: read on %s gives %q, %v", k, nl.Name, v, err)
			}
		}
		t.Logf("writer through %s: %d writes acknowledged, all present on %s; %d attempts retried (last failure %q)",
			w.via.Name, len(w.acked), nl.Name, w.retries, w.lastFail)
	}

	// A plain stop does not leave: the stopped node is still a voter.
	var members []node.Member
	if err := nl.GetJSON("/nodes", &members); err != nil {
		t.Fatal(err)
	}
	if len(members) != 3 {
		t.Fatalf("after a plain SIGTERM the cluster lists %+v, want all 3", members)
	}
}

// TestLeaveOnTerminate: with LEAVE_ON_TERMINATE=true a stopping follower,
// then a stopping leader, remove themselves from the configuration; both
// exit 0 and the last node carries on alone.
func TestLeaveOnTerminate(t *testing.T) {
	c := startExpectCluster(t, map[string]string{"LEAVE_ON_TERMINATE": "true"})
	nodes := c.Nodes
	c.WaitVoters(30*time.Second, nodes...)
	leader := c.WaitLeader(15 * time.Second)
	if err := set(leader, "before", "1"); err != nil {
		t.Fatal(err)
	}

	var follower *proc.Node
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	var rest []*proc.Node
	for _, n := range nodes {
		if n != follower {
			rest = append(rest, n)
		}
	}
	if err := follower.Stop(20 * time.Second); err != nil {
		t.Fatalf("%s: exit after SIGTERM: %v", follower.Name, err)
	}
	if !strings.Contains(follower.Tail(50), "left the cluster") {
		t.Fatalf("%s did not log leaving the cluster", follower.Name)
	}
	took := c.WaitVoters(10*time.Second, rest...)
	t.Logf("follower %s stopped with LEAVE_ON_TERMINATE: gone from /nodes %v after its exit", follower.Name, took.Round(time.Millisecond))

	leader = c.WaitLeader(15 * time.Second) // the rest are the nodes that are up
	var last *proc.Node
	for _, n := range rest {
		if n != leader {
			last = n
		}
	}
	if err := leader.Stop(20 * time.Second); err != nil {
		t.Fatalf("%s: exit after SIGTERM: %v", leader.Name, err)
	}
	c.WaitVoters(10*time.Second, last)
	testwait.For(t, 10*time.Second, "a write on the last node", func() error { return set(last, "after", "1") })
	if v, err := get(last, "before", ""); err != nil || v != "1" {
		t.Fatalf("read on %s: %q %v", last.Name, v, err)
	}
}
