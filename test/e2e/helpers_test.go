package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
)

// client talks only to loopback nodes, so it never uses a proxy.
var client = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8},
}

// builder builds the daemon once per test binary run.
var builder proc.Builder

func TestMain(m *testing.M) {
	code := m.Run()
	builder.Remove()
	os.Exit(code)
}

// repoRoot is the module root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := proc.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// raftkvBinary builds ./cmd/raftkv once per test binary run. End-to-end
// tests start real processes, so they are skipped with -short.
func raftkvBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the raftkv binary; skipped with -short")
	}
	bin, err := builder.Binary(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports, err := proc.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// baseEnv is the minimal environment of a node process.
func baseEnv() []string { return proc.BaseEnv() }

// node is one raftkv process the test started (and may restart).
type node struct {
	t        *testing.T
	bin      string
	name     string
	env      []string
	dir      string // working directory of the process
	volume   string // RAFT_VOLUME_DIR
	httpPort int
	raftPort int
	logPath  string
	run      *proc.Process // the current (or last) process
}

// startNode starts bin with baseEnv plus vars, logging stdout and stderr to
// dir/<name>.log. The process is killed when the test ends; if the test
// failed, the tail of its log is printed.
func startNode(t *testing.T, bin, name, dir string, vars map[string]string) *node {
	t.Helper()
	n := &node{t: t, bin: bin, name: name, env: baseEnv(), dir: dir, volume: vars["RAFT_VOLUME_DIR"],
		logPath: filepath.Join(dir, name+".log")}
	n.httpPort, _ = strconv.Atoi(vars["HTTP_SERVER_PORT"])
	n.raftPort, _ = strconv.Atoi(vars["RAFT_SERVER_PORT"])
	for k, v := range vars {
		n.env = append(n.env, k+"="+v)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- last lines of %s (%s) ---\n%s", n.name, n.logPath, tail(n.logPath, 40))
		}
	})
	n.start()
	return n
}

// start runs the process (again) with the same environment and volume.
func (n *node) start() {
	n.t.Helper()
	p, err := proc.Start(proc.Spec{Argv: []string{n.bin}, Env: n.env, Dir: n.dir, LogPath: n.logPath})
	if err != nil {
		n.t.Fatalf("start %s: %v", n.name, err)
	}
	n.run = p
	// Kill only this process, and wait for it so its volume can be removed.
	n.t.Cleanup(func() {
		if err := p.Kill(10 * time.Second); err != nil {
			n.t.Errorf("%s: %v", n.name, err)
		}
	})
}

func (n *node) started() time.Time { return n.run.Started() }

// signal sends sig and waits up to timeout for the process to exit,
// returning cmd.Wait's error.
func (n *node) signal(sig syscall.Signal, timeout time.Duration) error {
	n.t.Helper()
	if err := n.run.Signal(sig); err != nil {
		n.t.Fatalf("signal %s: %v", n.name, err)
	}
	err, ok := n.run.Wait(timeout)
	if !ok {
		n.t.Fatalf("%s did not exit within %v of %v", n.name, timeout, sig)
	}
	return err
}

func (n *node) url(pathAndQuery string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", n.httpPort, pathAndQuery)
}

// httpDo sends a request and returns the status and body.
func httpDo(method, u string) (int, []byte, error) {
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}

// httpGetJSON GETs u and decodes a 200 answer into out (if not nil); any
// other status is an error that quotes the body.
func httpGetJSON(u string, out any) (int, error) {
	code, body, err := httpDo(http.MethodGet, u)
	if err != nil {
		return code, err
	}
	if code != http.StatusOK {
		return code, fmt.Errorf("GET %s: %d %s", u, code, bytes.TrimSpace(body))
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return code, fmt.Errorf("GET %s: decode %q: %v", u, body, err)
		}
	}
	return code, nil
}

// waitFor polls cond every 25ms until it returns nil, failing the test with
// cond's last error after timeout. It returns how long the wait took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	const every = 25 * time.Millisecond
	start := time.Now()
	deadline := start.Add(timeout)
	err := errors.New("never checked")
	for i := 0; i <= int(timeout/every); i++ {
		if err = cond(); err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(every)
	}
	t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
	return 0
}

// status and member mirror the JSON of GET /status and GET /nodes.
type status struct {
	ID                string   `json:"id"`
	State             string   `json:"state"`
	LeaderID          string   `json:"leader_id"`
	CommitIndex       uint64   `json:"commit_index"`
	AppliedIndex      uint64   `json:"applied_index"`
	LastSnapshotIndex uint64   `json:"last_snapshot_index"`
	Configuration     []member `json:"configuration"`
}

type member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Voter    bool   `json:"voter"`
}

func (n *node) status() (status, error) {
	var st status
	_, err := httpGetJSON(n.url("/status"), &st)
	return st, err
}

// set writes key=value through n with the seed's /set request.
func (n *node) set(key, value string) error {
	q := url.Values{"key": {key}, "value": {value}}
	code, body, err := httpDo(http.MethodGet, n.url("/set?"+q.Encode()))
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("set %s on %s: %d %s", key, n.name, code, bytes.TrimSpace(body))
	}
	return err
}

// get reads key from n; consistency "" is the default (linearizable).
func (n *node) get(key, consistency string) (string, error) {
	q := url.Values{"key": {key}}
	if consistency != "" {
		q.Set("consistency", consistency)
	}
	var r struct {
		Value string `json:"value"`
	}
	_, err := httpGetJSON(n.url("/get?"+q.Encode()), &r)
	return r.Value, err
}

// snapshotDirs lists complete snapshots in n's FileSnapshotStore:
// <volume>/snapshots/<term>-<index>-<ms>/{meta.json,state.bin}.
func (n *node) snapshotDirs() []string {
	entries, _ := os.ReadDir(filepath.Join(n.volume, "snapshots"))
	var out []string
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		dir := filepath.Join(n.volume, "snapshots", e.Name())
		if fileExists(filepath.Join(dir, "meta.json")) && fileExists(filepath.Join(dir, "state.bin")) {
			out = append(out, e.Name())
		}
	}
	return out
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string { return proc.Tail(path, n) }

// waitVoters waits until every node in nodes lists, in its own view of the
// configuration (/nodes?stale), exactly want as voters with their HTTP
// addresses.
func waitVoters(t *testing.T, nodes, want []*node, timeout time.Duration) time.Duration {
	t.Helper()
	return waitFor(t, timeout, fmt.Sprintf("%d nodes to list %d voters", len(nodes), len(want)), func() error {
		for _, n := range nodes {
			var members []member
			if _, err := httpGetJSON(n.url("/nodes?stale"), &members); err != nil {
				return err
			}
			if len(members) != len(want) {
				return fmt.Errorf("%s lists %d members: %+v", n.name, len(members), members)
			}
			for i, m := range members {
				w := member{ID: want[i].name, Voter: true,
					RaftAddr: fmt.Sprintf("127.0.0.1:%d", want[i].raftPort),
					HTTPAddr: fmt.Sprintf("127.0.0.1:%d", want[i].httpPort)}
				if m != w {
					return fmt.Errorf("%s lists %+v, want %+v", n.name, m, w)
				}
			}
		}
		return nil
	})
}
