package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/raftkv/raftkv/internal/httpapi"
	"github.com/raftkv/raftkv/internal/testcluster"
	"github.com/raftkv/raftkv/internal/testwait"
)

// notReadyCodes are the reasons /ready may give while a node is not ready.
var notReadyCodes = map[string]bool{
	"no_leader": true, "not_member": true, "catching_up": true, "read_unconfirmed": true,
	"leader_unreachable": true, "forward_failed": true, "forward_timeout": true, "unavailable": true,
}

// ready fetches member i's /ready and checks its shape: 200 with
// ready=true, or 503 with ready=false and a known reason code.
func ready(t *testing.T, c *testcluster.Cluster, i int) testcluster.Response {
	t.Helper()
	r := c.Get(t, i, "/ready")
	switch r.Status {
	case http.StatusOK:
		if !r.Bool("ready") || r.String("status") != "ready" || r.String("id") != c.ID(i) {
			t.Fatalf("/ready on %s: 200 with body %s", c.ID(i), r.Body)
		}
		if r.Uint("applied_index") < r.Uint("leader_commit_index") {
			t.Fatalf("/ready on %s: 200 although applied %d < leader commit %d", c.ID(i), r.Uint("applied_index"), r.Uint("leader_commit_index"))
		}
	case http.StatusServiceUnavailable:
		if r.Bool("ready") || r.String("status") != "not_ready" || !notReadyCodes[r.Code()] || r.String("error") == "" {
			t.Fatalf("/ready on %s: 503 with body %s", c.ID(i), r.Body)
		}
		if r.Header.Get("Retry-After") == "" {
			t.Fatalf("/ready on %s: 503 without Retry-After", c.ID(i))
		}
	default:
		t.Fatalf("/ready on %s: %s", c.ID(i), r.Summary())
	}
	return r
}

// waitReady polls member i's /ready until it answers 200 and returns that
// answer, with the reason codes of the 503s seen before, in order, without
// repeats.
func waitReady(t *testing.T, c *testcluster.Cluster, i int, timeout time.Duration) (testcluster.Response, []string) {
	t.Helper()
	var last testcluster.Response
	var seen []string
	testwait.For(t, timeout, "/ready on "+c.ID(i)+" to answer 200", func() error {
		last = ready(t, c, i)
		if last.Status == http.StatusOK {
			return nil
		}
		if len(seen) == 0 || seen[len(seen)-1] != last.Code() {
			seen = append(seen, last.Code())
		}
		return fmt.Errorf("last %s (reasons seen %v)", last.Summary(), seen)
	})
	return last, seen
}

// TestReadyFreshJoiner: a node waiting to be joined is not ready
// (no_leader); once joined it is not ready while it receives the leader's
// snapshot (catching_up), and becomes ready only after applying what the
// leader had committed.
func TestReadyFreshJoiner(t *testing.T) {
	// A compacted log makes the joiner catch up from a snapshot of about
	// 16 MiB, which takes long enough to be seen.
	c := testcluster.Start(t, 3, testcluster.WithSnapshotThreshold(8))
	for i := range c.Size() {
		waitReady(t, c, i, catchUp)
	}
	l := c.Leader(t)
	const keys, size = 128, 128 << 10
	var last uint64
	for k := range keys {
		r := c.MustDo(t, l, http.MethodPut, fmt.Sprintf("/kv/fresh-%d", k), bytes.Repeat([]byte{'v'}, size), nil)
		if r.Status != http.StatusOK {
			t.Fatalf("PUT fresh-%d: %s", k, r.Summary())
		}
		last = r.Uint("index")
	}
	if r := c.Post(t, l, "/snapshot"); r.Status != http.StatusOK {
		t.Fatalf("POST /snapshot: %s", r.Summary())
	}

	j := c.AddUnjoined(t)
	for range 3 {
		if r := ready(t, c, j); r.Status != http.StatusServiceUnavailable || r.Code() != "no_leader" {
			t.Fatalf("/ready on unjoined %s: %s, want 503 no_leader", c.ID(j), r.Summary())
		}
	}
	if r := c.Get(t, l, fmt.Sprintf("/join?nodeId=%s&raftPort=%d", c.ID(j), c.RaftPort(j))); r.Status != http.StatusOK {
		t.Fatalf("join %s: %s", c.ID(j), r.Summary())
	}
	start := time.Now()
	r, seen := waitReady(t, c, j, catchUp)
	t.Logf("joiner ready %v after its join; reasons seen before: %v", time.Since(start).Round(time.Millisecond), seen)
	if r.Uint("applied_index") < last || r.Uint("leader_commit_index") < last {
		t.Fatalf("joiner ready with applied %d, leader commit %d; the last write before the join was %d", r.Uint("applied_index"), r.Uint("leader_commit_index"), last)
	}
	if got := c.Node(j).FSM().Stats().Keys; got < keys {
		t.Fatalf("joiner ready with %d keys, want at least %d", got, keys)
	}
	if !slices.Contains(seen, "catching_up") {
		t.Errorf("joiner never reported catching_up while receiving a %d MiB snapshot (saw %v)", keys*size>>20, seen)
	}
}

// TestReadyLosesQuorum: a node whose peers are gone turns not ready
// within a few election timeouts, and settles on no_leader.
func TestReadyLosesQuorum(t *testing.T) {
	for _, kill := range []string{"follower left alone", "leader left alone"} {
		t.Run(kill, func(t *testing.T) {
			c := testcluster.Start(t, 3)
			l := c.Leader(t)
			target := c.Followers(t)[0]
			if kill == "leader left alone" {
				target = l
			}
			waitReady(t, c, target, catchUp)
			for _, i := range others(c, target) {
				c.Kill(t, i)
			}
			start := time.Now()
			var last testcluster.Response
			testwait.For(t, catchUp, "/ready on "+c.ID(target)+" to answer 503 after losing both peers", func() error {
				if last = ready(t, c, target); last.Status != http.StatusServiceUnavailable {
					return fmt.Errorf("still %s", last.Summary())
				}
				return nil
			})
			t.Logf("%s not ready %v after losing quorum: %s", c.ID(target), time.Since(start).Round(time.Millisecond), last.Body)
			testwait.For(t, catchUp, "/ready on "+c.ID(target)+" to settle on 503 no_leader", func() error {
				if last = ready(t, c, target); last.Status != http.StatusServiceUnavailable || last.Code() != "no_leader" {
					return fmt.Errorf("got %s", last.Summary())
				}
				return nil
			})
			// The check is bounded even with no leader to ask.
			t0 := time.Now()
			ready(t, c, target)
			if d := time.Since(t0); d > 3*time.Second {
				t.Fatalf("/ready took %v without a quorum", d)
			}
		})
	}
}

// scrape fetches and parses member i's /metrics as Prometheus text.
func scrape(t *testing.T, c *testcluster.Cluster, i int) map[string]*dto.MetricFamily {
	t.Helper()
	r := c.Get(t, i, "/metrics")
	if r.Status != http.StatusOK {
		t.Fatalf("/metrics on %s: %s", c.ID(i), r.Summary())
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics on %s: Content-Type %q, want Prometheus text", c.ID(i), ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatalf("/metrics on %s does not parse as Prometheus text: %v", c.ID(i), err)
	}
	return fams
}

// metric sums the samples of family name whose labels include want
// (name=value pairs); a histogram or summary contributes its count. ok is
// false when no sample matched.
func metric(fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	sum, found := 0.0, false
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		for k := 0; k+1 < len(want); k += 2 {
			if labels[want[k]] != want[k+1] {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Summary != nil:
			sum += float64(m.GetSummary().GetSampleCount())
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, found
}

func mustMetric(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	v, ok := metric(fams, name, want...)
	if !ok {
		t.Fatalf("metric %s%v not exported", name, want)
	}
	return v
}

// TestMetrics: /metrics parses as Prometheus text, and after N writes
// through the leader and N through a follower the counters moved by
// exactly what those writes explain.
func TestMetrics(t *testing.T) {
	c := testcluster.Start(t, 3)
	l := c.Leader(t)
	f := c.Followers(t)[0]
	const n = 25

	lb, fb := scrape(t, c, l), scrape(t, c, f)
	setLabels := []string{"route", "/set", "method", "GET", "code", "200"}
	for k := range n {
		c.MustSet(t, l, fmt.Sprintf("m-leader-%d", k), "v")
		c.MustSet(t, f, fmt.Sprintf("m-follower-%d", k), "v")
	}
	if r := c.Get(t, f, "/no/such/path"); r.Status != http.StatusNotFound {
		t.Fatalf("GET /no/such/path: %s", r.Summary())
	}
	if r := c.Post(t, l, "/snapshot"); r.Status != http.StatusOK || !r.Bool("created") {
		t.Fatalf("POST /snapshot: %s", r.Summary())
	}
	la, fa := scrape(t, c, l), scrape(t, c, f)

	delta := func(before, after map[string]*dto.MetricFamily, name string, labels ...string) float64 {
		t.Helper()
		a := mustMetric(t, after, name, labels...)
		b, _ := metric(before, name, labels...)
		return a - b
	}
	checks := []struct {
		what          string
		before, after map[string]*dto.MetricFamily
		name          string
		labels        []string
		min, max      float64
	}{
		{"leader: /set requests", lb, la, "raftkv_http_requests_total", setLabels, n, n},
		{"follower: /set requests", fb, fa, "raftkv_http_requests_total", setLabels, n, n},
		{"leader: /set latency samples", lb, la, "raftkv_http_request_duration_seconds", []string{"route", "/set", "method", "GET"}, n, n},
		{"follower: unmatched 404", fb, fa, "raftkv_http_requests_total", []string{"route", "unmatched", "code", "404"}, 1, 1},
		// Sequential writes travel one per round trip; batching could only
		// make fewer.
		{"follower: peer applies", fb, fa, "raftkv_forwarded_requests_total", []string{"kind", "peer_apply", "outcome", "ok"}, 1, n},
		{"follower: peer apply latency", fb, fa, "raftkv_forward_duration_seconds", []string{"kind", "peer_apply"}, 1, n},
		{"leader: peer applies served", lb, la, "raftkv_http_requests_total", []string{"route", "/internal/apply", "code", "200"}, 1, n},
		{"leader: commands applied", lb, la, "raftkv_apply_commands_total", []string{"outcome", "applied"}, 2 * n, 2*n + 2},
		{"leader: apply latency samples", lb, la, "raftkv_apply_duration_seconds", nil, 2 * n, 2*n + 2},
		{"leader: keys", lb, la, "raftkv_fsm_keys", nil, 2 * n, 2 * n},
		{"leader: bytes", lb, la, "raftkv_fsm_bytes", nil, 2 * n * float64(len("m-leader-0v")), 2 * n * float64(len("m-follower-10v"))},
		{"leader: applied index", lb, la, "raftkv_raft_applied_index", nil, 2 * n, 2*n + 2},
		{"leader: commit index", lb, la, "raftkv_raft_commit_index", nil, 2 * n, 2*n + 2},
		{"leader: snapshots", lb, la, "raftkv_snapshots_total", []string{"outcome", "ok"}, 1, 1},
		{"leader: snapshot durations", lb, la, "raftkv_snapshot_duration_seconds", nil, 1, 1},
		{"follower: commands proposed here", fb, fa, "raftkv_apply_commands_total", nil, 0, 0},
	}
	for _, ck := range checks {
		if d := delta(ck.before, ck.after, ck.name, ck.labels...); d < ck.min || d > ck.max {
			t.Errorf("%s: %s%v moved by %v, want %v..%v", ck.what, ck.name, ck.labels, d, ck.min, ck.max)
		}
	}

	gauges := []struct {
		fams   map[string]*dto.MetricFamily
		name   string
		labels []string
		want   float64
	}{
		{la, "raftkv_raft_state", []string{"state", "leader"}, 1},
		{la, "raftkv_raft_state", []string{"state", "follower"}, 0},
		{fa, "raftkv_raft_state", []string{"state", "follower"}, 1},
		{la, "raftkv_raft_has_leader", nil, 1},
		{la, "raftkv_raft_members", []string{"suffrage", "voter"}, 3},
		{la, "raftkv_raft_last_contact_seconds", nil, 0},
		{la, "raftkv_raft_term", nil, mustMetric(t, fa, "raftkv_raft_term")},
	}
	for _, g := range gauges {
		if v := mustMetric(t, g.fams, g.name, g.labels...); v != g.want {
			t.Errorf("%s%v = %v, want %v", g.name, g.labels, v, g.want)
		}
	}
	if v := mustMetric(t, fa, "raftkv_raft_last_contact_seconds"); v < 0 || v > 5 {
		t.Errorf("follower's last contact with the leader %vs ago, want a recent one", v)
	}
	if v := mustMetric(t, la, "raftkv_raft_term"); v < 1 {
		t.Errorf("term %v", v)
	}
	// hashicorp/raft's own go-metrics, and the runtime collectors.
	for _, name := range []string{"raft_commitTime", "raft_apply", "raft_fsm_applyBatch", "go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := la[name]; !ok {
			t.Errorf("leader's /metrics lacks %s", name)
		}
	}
}

// logCapture collects every member's log entries, by node id.
type logCapture struct {
	mu    sync.Mutex
	hooks map[string]*logtest.Hook
}

func (lc *logCapture) setup(id string, l *logrus.Logger) {
	l.SetLevel(logrus.DebugLevel)
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.hooks[id] == nil {
		lc.hooks[id] = &logtest.Hook{}
	}
	l.AddHook(lc.hooks[id])
}

// find returns node id's entries with message msg at level whose fields
// satisfy match.
func (lc *logCapture) find(id, msg string, level logrus.Level, match func(logrus.Fields) bool) []logrus.Entry {
	lc.mu.Lock()
	h := lc.hooks[id]
	lc.mu.Unlock()
	if h == nil {
		return nil
	}
	var out []logrus.Entry
	for _, e := range h.AllEntries() {
		if e.Message == msg && e.Level == level && match(e.Data) {
			out = append(out, *e)
		}
	}
	return out
}

// TestRequestAndEventLogs: each request is logged once at debug with its
// fields, on the node that served it and, with the same request id, on
// the leader it was handed to; membership and leader changes are logged
// at info.
func TestRequestAndEventLogs(t *testing.T) {
	lc := &logCapture{hooks: map[string]*logtest.Hook{}}
	c := testcluster.Start(t, 3, testcluster.WithLoggerSetup(lc.setup))
	l := c.Leader(t)
	f := c.Followers(t)[0]
	leaderID, followerID := c.ID(l), c.ID(f)

	// A write through the follower, named by an idempotency key.
	r := c.MustDo(t, f, http.MethodPut, "/kv/logs/a", []byte("1"), http.Header{httpapi.HeaderIdempotencyKey: {"idem-logs-1"}})
	if r.Status != http.StatusOK {
		t.Fatalf("PUT via follower: %s", r.Summary())
	}
	// A proxied request, named by X-Request-Id.
	r = c.MustDo(t, f, http.MethodGet, "/nodes", nil, http.Header{httpapi.HeaderRequestID: {"rid-logs-7"}})
	if r.Status != http.StatusOK || r.ServedBy() != leaderID {
		t.Fatalf("GET /nodes via follower: %s served by %q", r.Summary(), r.ServedBy())
	}
	// No id at all, and a path that matches no route.
	c.GetKey(t, l, "logs/a", "")
	c.Get(t, l, "/nope")

	requestLine := func(id string, match func(logrus.Fields) bool) logrus.Fields {
		t.Helper()
		var got []logrus.Entry
		// The line is written after the answer: poll briefly.
		testwait.For(t, 2*time.Second, id+"'s request line", func() error {
			if got = lc.find(id, "request", logrus.DebugLevel, match); len(got) == 0 {
				return errors.New("no matching line yet")
			}
			return nil
		})
		if len(got) != 1 {
			t.Fatalf("%s: %d matching request lines, want 1", id, len(got))
		}
		d := got[0].Data
		for _, k := range []string{"method", "route", "status", "duration_ms", "forwarded_to", "request_id"} {
			if _, ok := d[k]; !ok {
				t.Fatalf("%s: request line lacks %q: %v", id, k, d)
			}
		}
		if ms, ok := d["duration_ms"].(float64); !ok || ms < 0 || ms > 10_000 {
			t.Fatalf("%s: duration_ms %v", id, d["duration_ms"])
		}
		return d
	}
	byID := func(rid string) func(logrus.Fields) bool {
		return func(d logrus.Fields) bool { return d["request_id"] == rid }
	}

	d := requestLine(followerID, byID("idem-logs-1"))
	if d["method"] != "PUT" || d["route"] != "/kv/" || d["status"] != 200 || d["forwarded_to"] != leaderID {
		t.Errorf("follower's line for the PUT: %v", d)
	}
	d = requestLine(followerID, byID("rid-logs-7"))
	if d["route"] != "/nodes" || d["status"] != 200 || !strings.HasPrefix(fmt.Sprint(d["forwarded_to"]), leaderID+"@") {
		t.Errorf("follower's line for the proxied GET /nodes: %v", d)
	}
	d = requestLine(leaderID, byID("rid-logs-7"))
	if d["route"] != "/nodes" || d["status"] != 200 || d["forwarded_to"] != "" {
		t.Errorf("leader's line for the proxied GET /nodes: %v", d)
	}
	d = requestLine(leaderID, func(d logrus.Fields) bool { return d["route"] == "/get" })
	if rid, _ := d["request_id"].(string); rid == "" {
		t.Errorf("leader's line for GET /get has no generated request id: %v", d)
	}
	d = requestLine(leaderID, func(d logrus.Fields) bool { return d["route"] == "unmatched" })
	if d["status"] != 404 {
		t.Errorf("line for an unknown path: %v", d)
	}

	// Membership: the leader that applied the join says so once.
	j := c.AddUnjoined(t)
	if r := c.Get(t, l, fmt.Sprintf("/join?nodeId=%s&raftPort=%d", c.ID(j), c.RaftPort(j))); r.Status != http.StatusOK {
		t.Fatalf("join: %s", r.Summary())
	}
	change := func(want string) func(logrus.Fields) bool {
		return func(d logrus.Fields) bool { return d["node"] == c.ID(j) && d["change"] == want }
	}
	if got := lc.find(leaderID, "membership changed", logrus.InfoLevel, change("added")); len(got) != 1 {
		t.Errorf("leader logged %d info lines for the join of %s, want 1", len(got), c.ID(j))
	}
	waitReady(t, c, j, catchUp)
	if r := c.Post(t, l, "/leave?nodeId="+c.ID(j)); r.Status != http.StatusOK {
		t.Fatalf("leave: %s", r.Summary())
	}
	if got := lc.find(leaderID, "membership changed", logrus.InfoLevel, change("removed")); len(got) != 1 {
		t.Errorf("leader logged %d info lines for the removal of %s, want 1", len(got), c.ID(j))
	}
	c.Kill(t, j)

	// Leader change: every survivor logs the new leader at info.
	c.Kill(t, l)
	nl := c.Leader(t)
	for _, i := range c.Running() {
		id := c.ID(i)
		testwait.For(t, catchUp, id+" to log an info line for the new leader "+c.ID(nl), func() error {
			if len(lc.find(id, "leader changed", logrus.InfoLevel, func(d logrus.Fields) bool { return d["leader_id"] == c.ID(nl) })) == 0 {
				return errors.New("no such line yet")
			}
			return nil
		})
	}
}

// nodesRow is one row of GET /nodes.
type nodesRow struct {
	ID            string   `json:"id"`
	HTTPAddr      string   `json:"http_addr"`
	Voter         bool     `json:"voter"`
	Leader        bool     `json:"leader"`
	Reachable     bool     `json:"reachable"`
	Suffrage      string   `json:"suffrage"`
	State         string   `json:"state"`
	LastContactMs *float64 `json:"last_contact_ms"`
	MatchIndex    *uint64  `json:"match_index"`
	AppliedIndex  *uint64  `json:"applied_index"`
	Lag           *uint64  `json:"lag"`
}

func getNodes(t *testing.T, c *testcluster.Cluster, i int, target string) (map[string]nodesRow, testcluster.Response) {
	t.Helper()
	r := c.Get(t, i, target)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s on %s: %s", target, c.ID(i), r.Summary())
	}
	var rows []nodesRow
	if err := r.Decode(&rows); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	out := map[string]nodesRow{}
	for _, row := range rows {
		out[row.ID] = row
	}
	return out, r
}

// TestNodesLag: /nodes shows, from the leader's view, each member's
// suffrage, contact and replication lag; a member that cannot receive the
// log shows a positive lag, which returns to 0 once it catches up.
func TestNodesLag(t *testing.T) {
	c := testcluster.Start(t, 3)
	l := c.Leader(t)
	f := c.Followers(t)[0]
	fid := c.ID(f)

	var rows map[string]nodesRow
	testwait.For(t, catchUp, "every lag to reach 0", func() error {
		rows, _ = getNodes(t, c, l, "/nodes")
		for _, row := range rows {
			if row.Lag == nil || *row.Lag != 0 {
				return fmt.Errorf("rows %+v", rows)
			}
		}
		if len(rows) != 3 {
			return fmt.Errorf("rows %+v", rows)
		}
		return nil
	})
	for id, row := range rows {
		if !row.Reachable || row.Suffrage != "voter" || !row.Voter || row.MatchIndex == nil || row.AppliedIndex == nil || row.LastContactMs == nil {
			t.Errorf("row %s: %+v", id, row)
		}
		if row.Leader != (id == c.ID(l)) || (row.Leader && row.State != "Leader") || (!row.Leader && row.State != "Follower") {
			t.Errorf("row %s: leader %v state %q", id, row.Leader, row.State)
		}
	}
	// A follower hands /nodes to the leader unless ?stale.
	if _, r := getNodes(t, c, f, "/nodes"); r.ServedBy() != c.ID(l) {
		t.Errorf("/nodes on a follower served by %q, want the leader %s", r.ServedBy(), c.ID(l))
	}
	if _, r := getNodes(t, c, f, "/nodes?stale"); r.ServedBy() != fid {
		t.Errorf("/nodes?stale on a follower served by %q, want %s", r.ServedBy(), fid)
	}
	if r := c.Get(t, f, "/nodes?stale=maybe"); r.Status != http.StatusBadRequest {
		t.Errorf("/nodes?stale=maybe: %s, want 400", r.Summary())
	}

	// The follower moves: it runs, but the leader still sends its log to the
	// old Raft address, so it falls behind by every write meanwhile.
	c.Kill(t, f)
	const writes = 50
	for k := range writes {
		c.MustSet(t, l, fmt.Sprintf("lag-%d", k), "v")
	}
	rows, _ = getNodes(t, c, l, "/nodes")
	if row := rows[fid]; row.Reachable || row.Lag != nil || row.MatchIndex != nil {
		t.Errorf("row of the stopped %s: %+v, want unreachable with no lag", fid, row)
	}
	c.RestartMoved(t, f)
	testwait.For(t, catchUp, "the moved "+fid+" to be reachable", func() error {
		if rows, _ = getNodes(t, c, l, "/nodes"); !rows[fid].Reachable || rows[fid].Lag == nil {
			return fmt.Errorf("row %+v", rows[fid])
		}
		return nil
	})
	if lag := *rows[fid].Lag; lag < writes {
		t.Errorf("moved %s: lag %d, want at least %d", fid, lag, writes)
	}
	if r := ready(t, c, f); r.Status != http.StatusServiceUnavailable {
		t.Errorf("/ready on the cut-off %s: %s", fid, r.Summary())
	}

	// Tell the cluster where it is now: it catches up, lag 0, ready.
	r := c.Get(t, l, fmt.Sprintf("/join?nodeId=%s&raftPort=%d", fid, c.RaftPort(f)))
	if r.Status != http.StatusOK || r.String("change") != "updated" {
		t.Fatalf("re-join of moved %s: %s", fid, r.Summary())
	}
	testwait.For(t, catchUp, "the moved "+fid+" to catch up", func() error {
		if rows, _ = getNodes(t, c, l, "/nodes"); rows[fid].Lag == nil || *rows[fid].Lag != 0 {
			return fmt.Errorf("row %+v", rows[fid])
		}
		return nil
	})
	waitReady(t, c, f, catchUp)
}
