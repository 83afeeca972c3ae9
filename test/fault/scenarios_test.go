package fault

import (
	"cmp"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/internal/testwait"
)

// scenario is one fault schedule. inject runs after the warm-up with the
// workload going; it injects the fault, heals it and measures recovery.
type scenario struct {
	id, title string
	soak      bool // only with FAULT_SOAK=1
	partition bool // needs a topology that can partition
	inject    func(r *run)
}

var scenarios = []scenario{
	{id: "S0", title: "no fault", inject: func(r *run) { r.sleep(7 * time.Second) }},
	{id: "S1", title: "SIGKILL a follower, restart", inject: func(r *run) {
		f := r.follower()
		r.crash([]int{f}, 5*time.Second)
	}},
	{id: "S2", title: "SIGKILL the leader, restart", inject: func(r *run) {
		r.crash([]int{r.leader()}, 5*time.Second)
	}},
	{id: "S3", title: "SIGSTOP the leader past the election timeout, SIGCONT", inject: func(r *run) {
		r.pause(r.leader(), 6*time.Second)
	}},
	{id: "S5", title: "partition the leader from both peers, heal", partition: true, inject: func(r *run) {
		l := r.leader()
		r.partition(6*time.Second, []int{l}, [2]int{l, (l + 1) % 3}, [2]int{l, (l + 2) % 3})
	}},
	// S7 kills both followers: the leader is left alone, still taking
	// writes it cannot commit (S2 and S11 lose the leader itself).
	{id: "S7", title: "SIGKILL both followers (majority lost), restart", inject: func(r *run) {
		l := r.leader()
		r.crash([]int{(l + 1) % 3, (l + 2) % 3}, 5*time.Second)
	}},
	{id: "S11", title: "SIGKILL all three at once, restart", inject: func(r *run) {
		r.crash([]int{0, 1, 2}, 2*time.Second)
	}},
	{id: "S16", title: "hostile input and slow clients", inject: hostile},
	{id: "S17", title: "membership: join a node of another cluster and a mistyped port, then SIGKILL the leader", inject: joinStranger},
	{id: "S18", title: "a byte flipped in a follower's newest snapshot, restart", inject: corruptSnapshot},
	{id: "S19", title: "TTL keys written, touched and read through every node across a leader SIGKILL (TTL checker)", inject: ttlAcrossLeaderKill},

	{id: "S4", title: "SIGSTOP a follower, SIGCONT", soak: true, inject: func(r *run) {
		r.pause(r.follower(), 6*time.Second)
	}},
	{id: "S6", title: "partition a follower from both peers, heal", soak: true, partition: true, inject: func(r *run) {
		f := r.follower()
		r.partition(6*time.Second, []int{f}, [2]int{f, (f + 1) % 3}, [2]int{f, (f + 2) % 3})
	}},
	{id: "S8", title: "bridge: cut leader and one follower, the other sees both", soak: true, partition: true, inject: func(r *run) {
		r.partition(8*time.Second, nil, [2]int{r.leader(), r.follower()})
	}},
	{id: "S9", title: "rolling SIGTERM restarts", soak: true, inject: rollingRestart},
	{id: "S10", title: "snapshot catch-up of a far-behind follower", soak: true, inject: snapshotCatchUp},
	{id: "S12", title: "membership: a follower leaves and re-joins under load", soak: true, inject: func(r *run) {
		r.leaveRejoin(r.follower())
	}},
	{id: "S13", title: "membership: the leader leaves (leadership transfer) and re-joins under load", soak: true, inject: func(r *run) {
		r.leaveRejoin(r.leader())
	}},
}

func TestFaults(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.id, func(t *testing.T) { runScenario(t, sc) })
	}
}

// Phase lengths at FAULT_DURATION=1.
const (
	warmup       = 3 * time.Second
	afterRecover = 3 * time.Second
	recoverBound = 10 * time.Second // C4
)

// run is the state of one scenario execution.
type run struct {
	t      *testing.T
	sc     scenario
	seed   uint64
	rng    *rand.Rand
	c      *cluster
	h      *history
	w      *workload
	res    *result
	events []event  // fault timeline
	wins   []window // no-quorum windows (C5)
	info   *porcupine.LinearizationInfo
	cas    bool
	idem   bool
	// watchers follow the feed through the faults (watch_test.go).
	watchers []*feedWatcher
}

type event struct {
	start, end time.Duration
	what       string
}

func runScenario(t *testing.T, sc scenario) {
	res := &result{id: sc.id, title: sc.title, status: "skip"}
	results = append(results, res)
	if sc.soak && !config.soak {
		t.Skip("soak scenario: set FAULT_SOAK=1 to run it")
	}
	seed := scenarioSeed(sc.id)
	t.Logf("%s %s: seed %d (replay: FAULT_SEED=%d)", sc.id, sc.title, seed, config.seed)
	started := time.Now()
	t.Cleanup(func() {
		res.wall = time.Since(started)
		if res.status != "skip" && !t.Failed() && !t.Skipped() {
			res.status = "pass"
		}
	})
	topo := newTopology(t, 3)
	res.topology = topo.name()
	if why := topo.canPartition(); sc.partition && why != "" {
		t.Skip(why)
	}
	res.status = "FAIL"
	c := startCluster(t, topo)
	r := &run{t: t, sc: sc, seed: seed, rng: rand.New(rand.NewPCG(seed, 0)), c: c, res: res}
	r.cas, r.idem = checkFeatures(t, c)
	res.features = fmt.Sprintf("cas=%v idem=%v", r.cas, r.idem)
	t.Logf("topology %s; %s", topo.name(), res.features)

	r.h = newHistory()
	opts := workloadOpts{clients: 6, rate: 200, keys: 8, cas: r.cas, idem: r.idem, seed: seed}
	if r.cas && r.idem && config.bank {
		opts.bankClients, opts.bankRate = 3, 30
	}
	r.w = newWorkload(c, r.h, opts)
	// Runs before the cluster is torn down, so the node logs still exist.
	t.Cleanup(func() {
		r.w.stop()
		if t.Failed() || os.Getenv("FAULT_KEEP") == "1" {
			r.saveArtifacts()
		}
	})
	if r.w.bank != nil {
		if err := r.w.bank.create(15 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	r.watchers = startWatchers(c)
	t.Cleanup(func() {
		for _, w := range r.watchers {
			w.cancel()
		}
	})
	r.w.start()
	r.sleep(warmup)
	sc.inject(r)
	r.sleep(afterRecover)
	r.w.stop()
	r.check()
}

// check runs every checker over the finished run.
func (r *run) check() {
	t, w := r.t, r.w
	var problems []string
	problems = append(problems, w.finishCounters(20*time.Second)...)
	if w.bank != nil {
		problems = append(problems, w.bank.finish(20*time.Second)...)
		problems = append(problems, w.bank.problems...)
	}

	keys := slices.Clone(w.keys)
	if w.bank != nil {
		keys = append(keys, w.bank.keys...)
	}
	for _, cl := range w.counterClients() {
		keys = append(keys, cl.ctrKey)
	}
	for _, o := range r.h.snapshot() {
		if o.Kind == opSet {
			keys = append(keys, o.Key)
		}
	}
	conv := r.c.waitConverged(15*time.Second, keys)
	r.res.notes = append(r.res.notes, fmt.Sprintf("converged in %v", conv.Round(time.Millisecond)))

	sc := w.checkSet(20 * time.Second)
	problems = append(problems, sc.problems()...)
	deadline := time.Now().Add(10 * time.Second)
	for _, k := range w.keys {
		if w.finalRead(k, deadline) == nil {
			problems = append(problems, "final read of "+k+" failed")
		}
	}

	problems = append(problems, r.checkNoPhantomKeys()...)
	problems = append(problems, r.checkWatchers(r.watchers)...)

	ops := r.h.snapshot()
	res, info, took := checkLinearizable(ops, 30*time.Second)
	r.info = &info
	r.res.linearizable = string(res)
	r.res.checkTime = took
	if res != porcupine.Ok {
		problems = append(problems, fmt.Sprintf("C1: porcupine says %s (checked %d ops in %v)", res, len(porcupineOps(ops)), took.Round(time.Millisecond)))
	}

	if w.bank != nil {
		bankProblems, st := checkBank(ops)
		problems = append(problems, bankProblems...)
		r.res.notes = append(r.res.notes, fmt.Sprintf("bank: %d range reads checked (total %d), %d transfers: %d applied, %d compare failed, %d unknown; %d resent after an unknown outcome, %d answered as replays",
			st.reads, bankTotal, st.transfers, st.succeeded, st.failedCompare, st.unknown, st.resent, st.replayed))
		if st.reads == 0 || st.succeeded == 0 {
			problems = append(problems, fmt.Sprintf("bank: the workload did not run: %d range reads, %d applied transfers", st.reads, st.succeeded))
		}
	}

	minority, checked := checkMinority(ops, r.wins)
	problems = append(problems, first(minority, 10)...)
	if len(r.wins) > 0 {
		r.res.notes = append(r.res.notes, fmt.Sprintf("C5 checked %d minority ops", checked))
	}
	problems = append(problems, unexpectedStatuses(ops)...)
	for _, p := range r.c.logProblems() {
		problems = append(problems, "C6: "+p)
	}

	ct := countOps(ops)
	r.res.ops, r.res.counts = len(ops), ct
	r.res.maxGap = maxWriteGap(ops, r.w.started, r.w.stopped)
	r.res.sets = fmt.Sprintf("%d/%d/%d", sc.acked, sc.failed, sc.unknown)
	r.res.counter = w.counterStats()
	t.Logf("%d ops (ok %d, fail %d, unknown %d); porcupine %s in %v; set keys acked/failed/unknown %s; counter increments %d; max write gap %v",
		len(ops), ct.ok, ct.fail, ct.unknown, res, took.Round(time.Millisecond), r.res.sets, r.res.counter, r.res.maxGap.Round(time.Millisecond))
	for _, p := range problems {
		t.Error(p)
	}
}

// checkNoPhantomKeys (C2, second half): the store holds exactly the keys
// the final reads found, so no key appeared that no client wrote. Every
// key a client ever wrote has been read by then.
func (r *run) checkNoPhantomKeys() []string {
	want := 0
	for _, p := range r.w.present {
		if p {
			want++
		}
	}
	var problems []string
	for _, n := range r.c.Nodes {
		st, err := n.Status()
		if err != nil {
			problems = append(problems, err.Error())
		} else if st.Keys != want {
			problems = append(problems, fmt.Sprintf("C2: %s holds %d keys, but the final reads found %d: a key no client wrote exists, or a read missed one", n.Name, st.Keys, want))
		}
	}
	return problems
}

// sleep waits d scaled by FAULT_DURATION.
func (r *run) sleep(d time.Duration) { time.Sleep(time.Duration(float64(d) * config.scale)) }

func (r *run) leader() int { return r.c.index(r.c.WaitLeader(15 * time.Second)) }

// follower picks one of the two followers at random (seeded).
func (r *run) follower() int {
	l := r.leader()
	return (l + 1 + r.rng.IntN(2)) % 3
}

func (r *run) ids(nodes []int) []string {
	var out []string
	for _, i := range nodes {
		out = append(out, r.c.Nodes[i].Name)
	}
	return out
}

// begin records the start of a fault; the returned func records its end.
func (r *run) begin(what string) func() {
	r.t.Logf("fault: %s", what)
	r.res.faults = append(r.res.faults, what)
	e := len(r.events)
	r.events = append(r.events, event{start: time.Since(r.h.t0), what: what})
	return func() { r.events[e].end = time.Since(r.h.t0) }
}

// crash SIGKILLs nodes, holds, restarts them and measures recovery. When
// the victims are a majority, the survivor is a minority for C5.
func (r *run) crash(victims []int, hold time.Duration) {
	l := r.leader()
	end := r.begin("SIGKILL " + strings.Join(r.ids(victims), ", "))
	if len(victims) == len(r.c.Nodes) {
		r.c.killAll()
	} else {
		for _, v := range victims {
			r.c.Nodes[v].Kill()
		}
	}
	start := time.Since(r.h.t0)
	if 2*len(victims) > len(r.c.Nodes) && !slices.Contains(victims, l) && r.idem {
		// The leader is alone: give it steps that cannot commit now but may
		// once it is re-elected (see burstCounters).
		r.w.burstCounters(r.c.Nodes[l], 12)
		if r.w.bank != nil {
			r.w.bank.burst(r.c.Nodes[l], 6)
		}
	}
	r.sleep(hold)
	var survivors []int
	for i := range r.c.Nodes {
		if !slices.Contains(victims, i) {
			survivors = append(survivors, i)
		}
	}
	if 2*len(victims) > len(r.c.Nodes) && len(survivors) > 0 {
		r.wins = append(r.wins, window{start: start, end: time.Since(r.h.t0), minority: r.ids(survivors)})
	}
	for _, v := range victims {
		r.c.Nodes[v].Restart()
	}
	end()
	r.recover()
}

// pause SIGSTOPs node i for hold, then SIGCONTs it. If i was the leader,
// a burst of linearizable reads is queued on it a second before it
// resumes: they are answered the moment it runs again, racing its
// discovery that it was deposed, so a resumed ex-leader that serves reads
// from its own state without confirming its leadership gets caught.
func (r *run) pause(i int, hold time.Duration) {
	wasLeader := i == r.leader()
	end := r.begin("SIGSTOP " + r.c.Nodes[i].Name)
	r.c.Nodes[i].Pause()
	if !wasLeader {
		r.sleep(hold)
	} else {
		r.sleep(hold - time.Second)
		done := r.w.burstReads(r.c.Nodes[i], 16)
		time.Sleep(time.Second)
		defer func() { <-done }()
	}
	r.c.Nodes[i].Resume()
	end()
	r.recover()
}

// partition cuts the given links for hold, then heals; minority lists the
// nodes cut off from a quorum (C5).
func (r *run) partition(hold time.Duration, minority []int, links ...[2]int) {
	var desc []string
	for _, l := range links {
		desc = append(desc, r.c.Nodes[l[0]].Name+"-"+r.c.Nodes[l[1]].Name)
	}
	end := r.begin("partition " + strings.Join(desc, " "))
	for _, l := range links {
		if err := r.c.topo.cut(l[0], l[1]); err != nil {
			r.t.Fatal(err)
		}
	}
	start := time.Since(r.h.t0)
	r.sleep(hold)
	if len(minority) > 0 {
		r.wins = append(r.wins, window{start: start, end: time.Since(r.h.t0), minority: r.ids(minority)})
	}
	if err := r.c.topo.heal(); err != nil {
		r.t.Fatal(err)
	}
	end()
	r.recover()
}

// recover (C4) measures the time from now (the heal) until a write
// through some node succeeds; the probe writes are set-keyspace keys.
func (r *run) recover() {
	start := time.Now()
	for i := 0; ; i++ {
		n := r.c.Nodes[i%len(r.c.Nodes)]
		if r.w.probe.setAdd(n).Outcome == outcomeOK {
			break
		}
		if time.Since(start) > recoverBound {
			r.t.Errorf("C4: no write succeeded within %v of the heal", recoverBound)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	d := time.Since(start)
	r.t.Logf("recovered: first write %v after the heal", d.Round(time.Millisecond))
	r.res.recovery = max(r.res.recovery, d)
}

// rollingRestart (S9) SIGTERMs each node in turn, restarts it, and waits
// for it to catch up before the next.
func rollingRestart(r *run) {
	for i, n := range r.c.Nodes {
		end := r.begin("SIGTERM " + n.Name)
		if err := n.Stop(15 * time.Second); err != nil {
			r.t.Errorf("%s exited uncleanly after SIGTERM: %v", n.Name, err)
		}
		r.sleep(time.Second)
		n.Restart()
		end()
		r.recover()
		r.waitCaughtUp(i, 15*time.Second)
		r.sleep(time.Second)
	}
}

// waitCaughtUp waits until node i has applied the leader's commit index.
func (r *run) waitCaughtUp(i int, timeout time.Duration) time.Duration {
	return testwait.For(r.t, timeout, r.c.Nodes[i].Name+" to catch up", func() error {
		l, err := r.c.Leader()
		if err != nil {
			return err
		}
		ls, err := l.Status()
		if err != nil {
			return err
		}
		st, err := r.c.Nodes[i].Status()
		if err != nil {
			return err
		}
		if st.AppliedIndex < ls.CommitIndex {
			return fmt.Errorf("%s applied %d, leader committed %d", st.ID, st.AppliedIndex, ls.CommitIndex)
		}
		return nil
	})
}

// snapshotCatchUp (S10) keeps a follower down while the leader compacts
// its log far past the follower's last index, so the follower can only
// catch up by installing a snapshot.
func snapshotCatchUp(r *run) {
	f := r.follower()
	st, err := r.c.Nodes[f].Status()
	if err != nil {
		r.t.Fatal(err)
	}
	end := r.begin("SIGKILL " + r.c.Nodes[f].Name + " while the log grows")
	r.c.Nodes[f].Kill()
	testwait.For(r.t, time.Duration(float64(60*time.Second)*config.scale), "the leader to compact past the follower", func() error {
		ls, err := r.c.Nodes[r.leader()].Status()
		if err != nil {
			return err
		}
		if ls.LastSnapshotIndex < st.AppliedIndex+4*snapshotThreshold {
			return fmt.Errorf("leader snapshot at %d, follower stopped at %d", ls.LastSnapshotIndex, st.AppliedIndex)
		}
		return nil
	})
	r.c.Nodes[f].Restart()
	end()
	r.recover()
	d := r.waitCaughtUp(f, 20*time.Second)
	if !strings.Contains(r.c.Nodes[f].Log(), "Installed remote snapshot") {
		r.t.Errorf("%s caught up without installing a snapshot (no \"Installed remote snapshot\" in its log)", r.c.Nodes[f].Name)
	}
	r.res.notes = append(r.res.notes, fmt.Sprintf("follower caught up via snapshot in %v", d.Round(time.Millisecond)))
}

// leaveRejoin (S12, S13) removes node i with /leave (for the leader: a
// leadership transfer first), waits, and adds it back under the same id.
func (r *run) leaveRejoin(i int) {
	n := r.c.Nodes[i]
	end := r.begin("leave and re-join " + n.Name)
	via := r.c.Nodes[(i+1)%3]
	code, body, err := via.Do(http.MethodPost, "/leave?nodeId="+n.Name, nil)
	if err != nil || code != http.StatusOK {
		r.t.Fatalf("leave %s: %d %s %v", n.Name, code, body, err)
	}
	r.sleep(3 * time.Second)
	join := fmt.Sprintf("/join?nodeId=%s&raftAddr=%s&httpAddr=%s", n.Name, n.RaftAddr, n.HTTPAddr)
	testwait.For(r.t, 15*time.Second, "the re-join of "+n.Name, func() error {
		code, body, err := via.Do(http.MethodPost, join, nil)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("join: %d %s", code, body)
		}
		return err
	})
	end()
	r.recover()
	r.c.waitReady(20 * time.Second)
	r.waitCaughtUp(i, 15*time.Second)
}

// checkFeatures checks that the server supports compare-and-set and
// idempotency keys, which the workload uses unless FAULT_CAS=0, and that a
// retry with the same idempotency key returns the original outcome for
// each kind of write (deterministically, before any fault). Requests go
// through a follower, so the header must survive forwarding.
func checkFeatures(t *testing.T, c *cluster) (cas, idem bool) {
	t.Helper()
	if config.cas == "0" {
		return false, false
	}
	l := c.index(c.WaitLeader(10 * time.Second))
	n := c.Nodes[(l+1)%len(c.Nodes)]
	type answer struct {
		code     int
		index    string
		replayed bool
	}
	send := func(method, path, rid string) answer {
		req, _ := http.NewRequest(method, n.URL(path), strings.NewReader("x"))
		if rid != "" {
			req.Header.Set("Idempotency-Key", rid)
		}
		resp, err := c.admin.Do(req)
		if err != nil {
			t.Fatalf("feature check %s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		var body struct {
			Index uint64 `json:"index"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		idx := resp.Header.Get("X-Raft-Index")
		if idx == "" {
			idx = fmt.Sprint(body.Index)
		}
		return answer{resp.StatusCode, idx, resp.Header.Get("X-Raft-Replayed") != ""}
	}
	const k = "/kv/feature-check"
	// A cas that cannot hold on an absent key: 409 if cas is supported.
	if a := send(http.MethodPut, k+"?cas=987654321", ""); a.code != http.StatusConflict {
		t.Fatalf("the server does not support compare-and-set (PUT ?cas=987654321 on an absent key answered %d); FAULT_CAS=0 runs without it", a.code)
	}
	// twice sends a write twice with one idempotency key: the second answer
	// must repeat the first, marked as replayed.
	check := func(what string, first, again answer, want int) {
		if first.code != want || first.replayed || again != (answer{first.code, first.index, true}) {
			t.Fatalf("idempotency: %s: first answer %+v (want %d), retry %+v (want the first answer again, replayed); "+
				"FAULT_CAS=0 runs without cas and idempotency checks", what, first, want, again)
		}
	}
	twice := func(what, method, path, rid string, want int) {
		check(what, send(method, path, rid), send(method, path, rid), want)
	}
	must := func(method, path string, want int) {
		if a := send(method, path, ""); a.code != want {
			t.Fatalf("feature check: %s %s: %+v, want %d", method, path, a, want)
		}
	}
	twice("cas=0 on an absent key", http.MethodPut, k+"?cas=0", "fc-1", http.StatusOK) // a re-execution: 409
	twice("plain put", http.MethodPut, k, "fc-2", http.StatusOK)                       // a re-execution: new index
	twice("failed cas", http.MethodPut, k+"?cas=1", "fc-3", http.StatusConflict)
	// The original outcome is replayed even once the condition would hold.
	first := send(http.MethodPut, k+"?cas=0", "fc-4")
	must(http.MethodDelete, k, http.StatusOK)
	check("cas=0 that failed while the key existed, retried after a delete", first, send(http.MethodPut, k+"?cas=0", "fc-4"), http.StatusConflict)
	must(http.MethodPut, k, http.StatusOK)
	twice("delete", http.MethodDelete, k, "fc-5", http.StatusOK) // a re-execution: 404
	// The key is absent again: no key is left behind (see checkNoPhantomKeys).
	return true, true
}

func scenarioSeed(id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return uint64(config.seed) ^ h.Sum64()
}

// corruptSnapshot (S18) SIGKILLs a follower that holds at least two
// snapshots, flips one byte in the newest one's state.bin and restarts it.
// The node must set the snapshot aside, start (from the older snapshot and
// its log, or empty with a copy from the leader) and catch up; it panicked
// with "log not found" on every start before snapshots were checked.
func corruptSnapshot(r *run) {
	f := r.follower()
	n := r.c.Nodes[f]
	var names []string
	testwait.For(r.t, time.Duration(float64(30*time.Second)*config.scale), n.Name+" to hold two snapshots", func() (err error) {
		names, err = snapshotsNewestFirst(n.Volume)
		if err == nil && len(names) < 2 {
			err = fmt.Errorf("%d snapshots: %v", len(names), names)
		}
		return err
	})
	end := r.begin("SIGKILL " + n.Name + ", flip a byte in its newest snapshot, restart")
	n.Kill()
	names, err := snapshotsNewestFirst(n.Volume) // a newer one may have completed meanwhile
	if err != nil || len(names) == 0 {
		r.t.Fatalf("snapshots of %s: %v %v", n.Name, names, err)
	}
	state := filepath.Join(n.Volume, "snapshots", names[0], "state.bin")
	b, err := os.ReadFile(state)
	if err != nil {
		r.t.Fatal(err)
	}
	b[r.rng.IntN(len(b))] ^= 1 << r.rng.IntN(8)
	if err := os.WriteFile(state, b, 0o600); err != nil {
		r.t.Fatal(err)
	}
	r.sleep(2 * time.Second) // the cluster moves on without it
	n.Restart()
	end()
	r.recover()
	d := r.waitCaughtUp(f, 20*time.Second)
	log := n.Log()
	if !strings.Contains(log, "snapshot is corrupt") {
		r.t.Errorf("%s did not report the corrupt snapshot %s", n.Name, names[0])
	}
	how := "from its older snapshot and log"
	if strings.Contains(log, "starting with an empty log") {
		how = "from an empty log and a copy from the leader"
	}
	r.res.notes = append(r.res.notes, fmt.Sprintf("%s caught up %s in %v", n.Name, how, d.Round(time.Millisecond)))
}

// snapshotsNewestFirst lists the complete snapshots in a volume, newest
// (highest index; raft names them term-index-millis) first.
func snapshotsNewestFirst(volume string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(volume, "snapshots"))
	if err != nil {
		return nil, err
	}
	type snap struct {
		name  string
		index uint64
	}
	var snaps []snap
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if _, err := os.Stat(filepath.Join(volume, "snapshots", e.Name(), "meta.json")); err != nil {
			continue
		}
		parts := strings.Split(e.Name(), "-")
		if len(parts) != 3 {
			continue
		}
		index, err := strconv.ParseUint(parts[1], 10, 64)
		if err != nil {
			continue
		}
		snaps = append(snaps, snap{e.Name(), index})
	}
	slices.SortFunc(snaps, func(a, b snap) int { return cmp.Compare(b.index, a.index) })
	var out []string
	for _, s := range snaps {
		out = append(out, s.name)
	}
	return out, nil
}
