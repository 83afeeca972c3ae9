package proc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/node"
)

// Client is a Node's HTTP client unless its Config names another: the
// nodes a test runs are on loopback or a private bridge, so it never uses
// a proxy.
var Client = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8},
}

// killWait bounds the wait for a process to go after SIGKILL.
const killWait = 10 * time.Second

// Config is what a Node runs.
type Config struct {
	Name string // names the node in messages and its log, <Dir>/<Name>.log
	Bin  string // the raftkv binary (see Builder)
	// Wrap is a command prefix that execs Bin in place, keeping the pid
	// (such as "ip netns exec NS"), so signals reach the daemon itself.
	Wrap []string
	Dir  string // working directory; the log is written here
	// Env is the daemon's configuration, added to BaseEnv. The node's
	// addresses come from it: ADVERTISE_ADDR (else BIND_ADDR, else
	// 127.0.0.1) with HTTP_SERVER_PORT and RAFT_SERVER_PORT, both required;
	// its URLs are https when TLS_CERT_FILE is set.
	Env    map[string]string
	Client *http.Client // for the node's HTTP API; nil means Client
}

// Node is one raftkv process a test started, which it may stop, signal and
// start again on the same volume. Its methods fail the test on errors of
// the harness itself (a signal that cannot be sent, a process that does not
// exit in time); what the daemon answers is returned for the test to judge.
type Node struct {
	Name     string
	HTTPAddr string // host:port that clients and peers use
	RaftAddr string
	Volume   string // RAFT_VOLUME_DIR
	LogPath  string // stdout and stderr of every run, appended

	t      testing.TB
	argv   []string
	env    []string
	dir    string
	scheme string
	client *http.Client

	mu     sync.Mutex
	proc   *Process // the current (or last) run
	paused bool
}

// StartNode starts a node. The process is killed when the test ends (only
// this process, and waited for, so its volume can be removed); if the test
// failed, the tail of its log is printed.
func StartNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n := newNode(t, cfg)
	t.Cleanup(n.cleanup)
	n.Restart()
	return n
}

func newNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	host := cfg.Env["ADVERTISE_ADDR"]
	if host == "" {
		host = cfg.Env["BIND_ADDR"]
	}
	if host == "" {
		host = "127.0.0.1"
	}
	hp, rp := cfg.Env["HTTP_SERVER_PORT"], cfg.Env["RAFT_SERVER_PORT"]
	if hp == "" || rp == "" {
		t.Fatalf("proc: node %s: Env needs HTTP_SERVER_PORT and RAFT_SERVER_PORT", cfg.Name)
	}
	n := &Node{
		Name:     cfg.Name,
		HTTPAddr: net.JoinHostPort(host, hp),
		RaftAddr: net.JoinHostPort(host, rp),
		Volume:   cfg.Env["RAFT_VOLUME_DIR"],
		LogPath:  filepath.Join(cfg.Dir, cfg.Name+".log"),
		t:        t,
		argv:     append(slices.Clone(cfg.Wrap), cfg.Bin),
		env:      BaseEnv(),
		dir:      cfg.Dir,
		scheme:   "http",
		client:   cfg.Client,
	}
	if cfg.Env["TLS_CERT_FILE"] != "" {
		n.scheme = "https"
	}
	if n.client == nil {
		n.client = Client
	}
	for k, v := range cfg.Env {
		n.env = append(n.env, k+"="+v)
	}
	return n
}

func (n *Node) cleanup() {
	if p := n.process(); p != nil {
		if err := p.Kill(killWait); err != nil {
			n.t.Errorf("%s: %v", n.Name, err)
		}
	}
	if n.t.Failed() {
		n.t.Logf("--- last lines of %s (%s) ---\n%s", n.Name, n.LogPath, n.Tail(40))
	}
}

func (n *Node) process() *Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// Restart starts the process again with the same environment and volume;
// the previous run must have exited.
func (n *Node) Restart() {
	n.t.Helper()
	if p := n.process(); p != nil && p.Running() {
		n.t.Fatalf("proc: restart %s: pid %d is still running", n.Name, p.Pid())
	}
	p, err := Start(Spec{Argv: n.argv, Env: n.env, Dir: n.dir, LogPath: n.LogPath})
	if err != nil {
		n.t.Fatalf("start %s: %v", n.Name, err)
	}
	n.mu.Lock()
	n.proc, n.paused = p, false
	n.mu.Unlock()
}

// Started is when the current run started.
func (n *Node) Started() time.Time { return n.process().Started() }

// Running reports whether the current run has not exited (it may be
// paused).
func (n *Node) Running() bool { return n.process().Running() }

// Up reports whether the node runs and is not paused: whether it can be
// expected to answer.
func (n *Node) Up() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc.Running() && !n.paused
}

// Signal sends sig to the current run; an exited run is not an error.
func (n *Node) Signal(sig syscall.Signal) {
	n.t.Helper()
	if err := n.process().Signal(sig); err != nil {
		n.t.Fatalf("%v to %s: %v", sig, n.Name, err)
	}
}

// Pause stops the process with SIGSTOP; Resume continues it (SIGCONT).
func (n *Node) Pause() {
	n.t.Helper()
	n.Signal(syscall.SIGSTOP)
	n.mu.Lock()
	n.paused = true
	n.mu.Unlock()
}

// Resume continues a paused process.
func (n *Node) Resume() {
	n.t.Helper()
	n.Signal(syscall.SIGCONT)
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
}

// Wait waits up to timeout for the current run to exit and returns its
// exit error (nil for status 0); the test fails if it is still running.
func (n *Node) Wait(timeout time.Duration) error {
	n.t.Helper()
	err, ok := n.process().Wait(timeout)
	if !ok {
		n.t.Fatalf("%s did not exit within %v", n.Name, timeout)
	}
	return err
}

// Stop sends SIGTERM and waits up to timeout for the exit, returning the
// exit error (nil for a clean stop).
func (n *Node) Stop(timeout time.Duration) error {
	n.t.Helper()
	n.Signal(syscall.SIGTERM)
	return n.Wait(timeout)
}

// Kill sends SIGKILL (which also ends a paused process) and waits for the
// exit, returning the exit error (which a killed process has).
func (n *Node) Kill() error {
	n.t.Helper()
	n.Signal(syscall.SIGKILL)
	return n.Wait(killWait)
}

// URL is the address of pathAndQuery on the node's HTTP API.
func (n *Node) URL(pathAndQuery string) string {
	return n.scheme + "://" + n.HTTPAddr + pathAndQuery
}

// Do sends a request to the node and returns the status and body.
func (n *Node) Do(method, pathAndQuery string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, n.URL(pathAndQuery), bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// GetJSON GETs pathAndQuery and decodes a 200 answer into out (unless out
// is nil); any other status is an error that quotes the body.
func (n *Node) GetJSON(pathAndQuery string, out any) error {
	code, body, err := n.Do(http.MethodGet, pathAndQuery, nil)
	switch {
	case err != nil:
		return err
	case code != http.StatusOK:
		return fmt.Errorf("GET %s: %d %s", n.URL(pathAndQuery), code, bytes.TrimSpace(body))
	case out != nil:
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("GET %s: decode %q: %v", n.URL(pathAndQuery), body, err)
		}
	}
	return nil
}

// Status is the node's GET /status.
func (n *Node) Status() (node.Status, error) {
	var st node.Status
	if err := n.GetJSON("/status", &st); err != nil {
		return st, fmt.Errorf("%s: %w", n.Name, err)
	}
	return st, nil
}

// Members is the configuration in the node's own view (GET /nodes?stale),
// which it serves without asking the leader.
func (n *Node) Members() ([]node.Member, error) {
	var ms []node.Member
	if err := n.GetJSON("/nodes?stale", &ms); err != nil {
		return nil, fmt.Errorf("%s: %w", n.Name, err)
	}
	return ms, nil
}

// Log is everything the node's runs have written so far ("" if none).
func (n *Node) Log() string {
	b, _ := os.ReadFile(n.LogPath)
	return string(b)
}

// Tail is the last lines of the node's log.
func (n *Node) Tail(lines int) string { return Tail(n.LogPath, lines) }
