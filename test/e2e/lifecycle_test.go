package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// raftElectionTimeout is hashicorp/raft's default, which the binary uses:
// without a hand-off, followers notice a lost leader only after missing
// heartbeats for about this long, then elect.
const raftElectionTimeout = time.Second

// startExpectCluster starts three nodes the "one command per node" way:
// each gets the same RAFT_JOIN (all three HTTP addresses, its own
// included) and RAFT_BOOTSTRAP_EXPECT=3, plus extra variables; no /join
// request is sent.
func startExpectCluster(t *testing.T, extra map[string]string) []*node {
	t.Helper()
	bin := raftkvBinary(t)
	tmp := t.TempDir()
	ports := freePorts(t, 6)
	var seeds []string
	for i := range 3 {
		seeds = append(seeds, fmt.Sprintf("127.0.0.1:%d", ports[2*i]))
	}
	var nodes []*node
	for i, name := range []string{"n1", "n2", "n3"} {
		vars := map[string]string{
			"RAFT_NODE_ID":          name,
			"HTTP_SERVER_PORT":      strconv.Itoa(ports[2*i]),
			"RAFT_SERVER_PORT":      strconv.Itoa(ports[2*i+1]),
			"RAFT_VOLUME_DIR":       filepath.Join(tmp, name),
			"RAFT_JOIN":             strings.Join(seeds, ","),
			"RAFT_BOOTSTRAP_EXPECT": "3",
			"LOG_LEVEL":             "info",
		}
		for k, v := range extra {
			vars[k] = v
		}
		nodes = append(nodes, startNode(t, bin, name, tmp, vars))
	}
	return nodes
}

// TestBootstrapExpect: three nodes started at once with RAFT_JOIN and
// RAFT_BOOTSTRAP_EXPECT=3 form one cluster by themselves; a restarted node
// (volume with state) rejoins it rather than bootstrapping again.
func TestBootstrapExpect(t *testing.T) {
	nodes := startExpectCluster(t, nil)
	waitVoters(t, nodes, nodes, 30*time.Second)
	leader, _ := agreedLeader(t, nodes)
	t.Logf("three nodes with RAFT_BOOTSTRAP_EXPECT=3: one cluster of 3 voters, leader %s, %v after the last process started",
		leader.name, time.Since(nodes[2].started()).Round(time.Millisecond))

	bootstrapped := 0
	for _, n := range nodes {
		if strings.Contains(tail(n.logPath, 200), "bootstrapped a new cluster") {
			bootstrapped++
		}
	}
	if bootstrapped == 0 {
		t.Fatalf("no node logged a bootstrap")
	}
	t.Logf("%d of 3 nodes bootstrapped with the shared configuration; the others were joined or caught up", bootstrapped)

	if err := nodes[1].set("formed", "yes"); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if v, err := n.get("formed", ""); err != nil || v != "yes" {
			t.Fatalf("linearizable read on %s: %q %v", n.name, v, err)
		}
		waitFor(t, 10*time.Second, "the write on "+n.name+"'s replica", func() error {
			if v, err := n.get("formed", "stale"); err != nil || v != "yes" {
				return fmt.Errorf("stale read on %s: %q %v", n.name, v, err)
			}
			return nil
		})
	}

	// A restart keeps the cluster: the volume has state, so the expect
	// logic is skipped and the node rejoins from its log.
	n3 := nodes[2]
	if err := n3.signal(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatalf("%s: exit after SIGTERM: %v", n3.name, err)
	}
	n3.start()
	waitVoters(t, nodes, nodes, 30*time.Second)
	if err := nodes[0].set("after-restart", "1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the restarted node to catch up", func() error {
		if v, err := n3.get("after-restart", "stale"); err != nil || v != "1" {
			return fmt.Errorf("stale read on %s: %q %v", n3.name, v, err)
		}
		return nil
	})
	if c := strings.Count(tail(n3.logPath, 1000), "bootstrapped a new cluster"); c > 1 {
		t.Fatalf("%s bootstrapped %d times", n3.name, c)
	}
}

// writer writes unique keys through one node, retrying each write with the
// same Idempotency-Key until it is acknowledged, and records what was.
type writer struct {
	via    *node
	prefix string // of its keys

	mu       sync.Mutex
	acked    []string
	retries  int
	lastFail string
}

// put writes key=key through w.via until a 200 or the deadline.
func (w *writer) put(key string, deadline time.Time) bool {
	for time.Now().Before(deadline) {
		req, err := http.NewRequest(http.MethodPut, w.via.url("/kv/"+key), strings.NewReader(key))
		if err != nil {
			return false
		}
		req.Header.Set("Idempotency-Key", "w-"+key)
		resp, err := client.Do(req)
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
	nodes := startExpectCluster(t, nil)
	waitVoters(t, nodes, nodes, 30*time.Second)
	leader, _ := agreedLeader(t, nodes)
	var survivors []*node
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
	waitFor(t, 10*time.Second, "the writers to get going", func() error {
		if n := ackedCount(writers); n < 40 {
			return fmt.Errorf("%d writes acknowledged", n)
		}
		return nil
	})

	signalled := time.Now()
	if err := leader.run.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Poll the survivors for a new leader while the old one stops.
	var newLeader string
	gap := waitFor(t, 10*time.Second, "a new leader after SIGTERM", func() error {
		for _, n := range survivors {
			st, err := n.status()
			if err == nil && st.LeaderID != "" && st.LeaderID != leader.name && st.State == "Leader" {
				newLeader = n.name
				return nil
			}
		}
		return fmt.Errorf("no new leader yet")
	})
	exitErr, ok := leader.run.Wait(20 * time.Second)
	exited := time.Since(signalled)
	if !ok {
		t.Fatalf("%s did not exit within 20s of SIGTERM", leader.name)
	}
	if exitErr != nil {
		t.Fatalf("%s exited with %v after SIGTERM, want code 0", leader.name, exitErr)
	}
	t.Logf("SIGTERM to leader %s: %s leads after %v (raft election timeout %v); process exited 0 after %v",
		leader.name, newLeader, gap.Round(time.Millisecond), raftElectionTimeout, exited.Round(time.Millisecond))
	if gap >= raftElectionTimeout {
		t.Fatalf("a new leader took %v, not less than an election timeout (%v): no hand-off", gap, raftElectionTimeout)
	}
	for _, line := range []string{"handed off leadership before stopping", "raft and its stores closed; stopped"} {
		if !strings.Contains(tail(leader.logPath, 50), line) {
			t.Fatalf("%s did not log %q", leader.name, line)
		}
	}

	// Keep writing a little after the change, then check every
	// acknowledged write on the new leader, linearizably.
	before := ackedCount(writers)
	waitFor(t, 15*time.Second, "writes after the leader change", func() error {
		if n := ackedCount(writers) - before; n < 40 {
			return fmt.Errorf("%d writes acknowledged since the change", n)
		}
		return nil
	})
	stopWriters()
	var nl *node
	for _, n := range survivors {
		if n.name == newLeader {
			nl = n
		}
	}
	for _, w := range writers {
		for _, k := range w.acked {
			if v, err := nl.get(k, ""); err != nil || v != k {
				t.Fatalf("acknowledged write %s lost: read on %s gives %q, %v", k, nl.name, v, err)
			}
		}
		t.Logf("writer through %s: %d writes acknowledged, all present on %s; %d attempts retried (last failure %q)",
			w.via.name, len(w.acked), nl.name, w.retries, w.lastFail)
	}

	// A plain stop does not leave: the stopped node is still a voter.
	var members []member
	if _, err := httpGetJSON(nl.url("/nodes"), &members); err != nil {
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
	nodes := startExpectCluster(t, map[string]string{"LEAVE_ON_TERMINATE": "true"})
	waitVoters(t, nodes, nodes, 30*time.Second)
	leader, _ := agreedLeader(t, nodes)
	if err := leader.set("before", "1"); err != nil {
		t.Fatal(err)
	}

	var follower *node
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	var rest []*node
	for _, n := range nodes {
		if n != follower {
			rest = append(rest, n)
		}
	}
	if err := follower.signal(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatalf("%s: exit after SIGTERM: %v", follower.name, err)
	}
	if !strings.Contains(tail(follower.logPath, 50), "left the cluster") {
		t.Fatalf("%s did not log leaving the cluster", follower.name)
	}
	took := waitVoters(t, rest, rest, 10*time.Second)
	t.Logf("follower %s stopped with LEAVE_ON_TERMINATE: gone from /nodes %v after its exit", follower.name, took.Round(time.Millisecond))

	leader, _ = agreedLeader(t, rest)
	var last *node
	for _, n := range rest {
		if n != leader {
			last = n
		}
	}
	if err := leader.signal(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatalf("%s: exit after SIGTERM: %v", leader.name, err)
	}
	waitVoters(t, []*node{last}, []*node{last}, 10*time.Second)
	waitFor(t, 10*time.Second, "a write on the last node", func() error { return last.set("after", "1") })
	if v, err := last.get("before", ""); err != nil || v != "1" {
		t.Fatalf("read on %s: %q %v", last.name, v, err)
	}
}
