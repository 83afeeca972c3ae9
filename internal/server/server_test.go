package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/logging"
	"github.com/raftkv/raftkv/internal/server"
	"github.com/raftkv/raftkv/internal/testcluster"
	"github.com/raftkv/raftkv/internal/testwait"
)

// The nodes here are configured as the daemon is, from environment
// variables through config.Load, and use testcluster's raft timings.

// freePorts returns n distinct ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	for len(out) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close() // held until all are picked, so none repeats
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out
}

// harness starts nodes from environment maps and stops what is left at
// the end of the test.
type harness struct {
	t    *testing.T
	dir  string
	sink *sink

	mu    sync.Mutex
	nodes []*server.Server
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, dir: t.TempDir(), sink: &sink{t: t}}
	t.Cleanup(h.sink.close)
	t.Cleanup(func() {
		for _, s := range h.nodes {
			_ = s.Close() // a no-op for nodes already stopped
		}
	})
	return h
}

// start loads env as the daemon does, on top of a loopback node named id
// with the given ports, and starts it.
func (h *harness) start(id string, httpPort, raftPort int, env ...string) *server.Server {
	h.t.Helper()
	vars := map[string]string{
		"RAFT_NODE_ID":     id,
		"HTTP_SERVER_PORT": strconv.Itoa(httpPort),
		"RAFT_SERVER_PORT": strconv.Itoa(raftPort),
		"RAFT_VOLUME_DIR":  filepath.Join(h.dir, id),
		"REQUEST_TIMEOUT":  "3s",
	}
	for i := 0; i+1 < len(env); i += 2 {
		vars[env[i]] = env[i+1]
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		h.t.Fatalf("config for %s: %v", id, err)
	}
	logger, err := logging.New("warn", logging.FormatText, h.sink.writer(id))
	if err != nil {
		h.t.Fatal(err)
	}
	s, err := server.Start(cfg, server.WithLogger(logger),
		server.WithRaftTimeouts(testcluster.HeartbeatTimeout, testcluster.ElectionTimeout, testcluster.LeaderLeaseTimeout))
	if err != nil {
		h.t.Fatalf("start %s: %v", id, err)
	}
	h.mu.Lock()
	h.nodes = append(h.nodes, s)
	h.mu.Unlock()
	return s
}

// voters reports "" once s sees exactly the wanted nodes as voters, each
// with its HTTP address, and follows a leader among them.
func voters(s *server.Server, want ...*server.Server) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	members, err := s.Node().Members(ctx)
	if err != nil {
		return err.Error()
	}
	addrs := map[string]string{}
	for _, w := range want {
		addrs[w.Node().ID()] = w.HTTPAddr()
	}
	if len(members) != len(want) {
		return fmt.Sprintf("%s sees %d members, want %d", s.Node().ID(), len(members), len(want))
	}
	for _, m := range members {
		if !m.Voter || addrs[m.ID] != m.HTTPAddr {
			return fmt.Sprintf("%s sees %+v", s.Node().ID(), m)
		}
	}
	if l, ok := s.Node().Leader(); !ok || addrs[l.ID] == "" {
		return s.Node().ID() + " follows no member"
	}
	return ""
}

func waitVoters(t *testing.T, nodes ...*server.Server) {
	t.Helper()
	testwait.For(t, testcluster.StartTimeout, "every node to see the others as voters", func() error {
		for _, s := range nodes {
			if why := voters(s, nodes...); why != "" {
				return errors.New(why)
			}
		}
		return nil
	})
}

func get(t *testing.T, s *server.Server, target string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.HTTPAddr() + target)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", target, s.Node().ID(), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func leaderOf(nodes ...*server.Server) *server.Server {
	for _, s := range nodes {
		if s.Node().IsLeader() {
			return s
		}
	}
	return nil
}

// TestRetryJoinAndStopOrder forms a three-node cluster the way the
// documented RAFT_JOIN set-up does, n2 and n3 asking n1 to admit them
// (retry-join), then stops it in order: the leader hands off, a follower
// leaves, the last node stops alone.
func TestRetryJoinAndStopOrder(t *testing.T) {
	h := newHarness(t)
	p := freePorts(t, 6)
	n1 := h.start("n1", p[0], p[1])
	testwait.For(t, testcluster.StartTimeout, "n1 to lead its bootstrapped cluster", func() error {
		if !n1.Node().IsLeader() {
			return errors.New("it does not lead")
		}
		return nil
	})
	join := "RAFT_JOIN"
	n2 := h.start("n2", p[2], p[3], join, n1.HTTPAddr())
	n3 := h.start("n3", p[4], p[5], join, "127.0.0.1:1,"+n1.HTTPAddr()) // a dead join address first
	all := []*server.Server{n1, n2, n3}
	waitVoters(t, all...)

	if code, body := get(t, n3, "/set?key=k&value=v"); code != http.StatusOK {
		t.Fatalf("write via n3: %d %s", code, body)
	}
	testwait.For(t, testcluster.StartTimeout, "n2 to have k", func() error {
		if code, body := get(t, n2, "/get?key=k&consistency=stale"); code != http.StatusOK || !strings.Contains(body, `"v"`) {
			return fmt.Errorf("stale read: %d %s", code, body)
		}
		return nil
	})

	// The leader stops: it hands leadership off first, so another node
	// leads the moment Stop returns.
	leader := leaderOf(all...)
	if leader == nil {
		t.Fatal("no leader")
	}
	var rest []*server.Server
	for _, s := range all {
		if s != leader {
			rest = append(rest, s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leader.Stop(ctx, false); err != nil {
		t.Fatalf("stop the leader: %v", err)
	}
	if leaderOf(rest...) == nil {
		t.Fatalf("no leader among the others right after the leader's Stop: no hand-off")
	}
	if _, err := http.Get("http://" + leader.HTTPAddr() + "/health"); err == nil {
		t.Fatalf("a stopped node still answers HTTP")
	}
	if err := leader.Stop(ctx, false); err != nil {
		t.Fatalf("a second Stop: %v, want the first one's nil", err)
	}

	// A follower stops with leave (LEAVE_ON_TERMINATE): the last node
	// then holds a configuration of the stopped leader and itself.
	follower, last := rest[0], rest[1]
	if follower.Node().IsLeader() {
		follower, last = last, follower
	}
	if err := follower.Stop(ctx, true); err != nil {
		t.Fatalf("stop a follower with leave: %v", err)
	}
	ms, err := last.Node().Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID == follower.Node().ID() {
			t.Fatalf("%s is still a member after stopping with leave: %+v", m.ID, ms)
		}
	}
	if err := last.Stop(ctx, false); err != nil {
		t.Fatalf("stop the last node: %v", err)
	}
}

// TestBootstrapExpect forms a cluster from three empty nodes that list
// each other in RAFT_JOIN and wait for RAFT_BOOTSTRAP_EXPECT=3.
func TestBootstrapExpect(t *testing.T) {
	h := newHarness(t)
	p := freePorts(t, 6)
	var addrs []string
	for i := 0; i < 3; i++ {
		addrs = append(addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(p[2*i])))
	}
	var nodes []*server.Server
	for i := 0; i < 3; i++ {
		nodes = append(nodes, h.start(fmt.Sprintf("n%d", i+1), p[2*i], p[2*i+1],
			"RAFT_JOIN", strings.Join(addrs, ","), "RAFT_BOOTSTRAP_EXPECT", "3"))
	}
	waitVoters(t, nodes...)
}

// TestStartFailsCleanly: a port clash fails Start before raft opens the
// volume, and leaves nothing running.
func TestStartFailsCleanly(t *testing.T) {
	h := newHarness(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port
	p := freePorts(t, 1)
	vars := map[string]string{
		"HTTP_SERVER_PORT": strconv.Itoa(busy), "RAFT_SERVER_PORT": strconv.Itoa(p[0]),
		"RAFT_VOLUME_DIR": filepath.Join(h.dir, "n1"),
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	logger, _ := logging.New("error", logging.FormatText, io.Discard)
	if s, err := server.Start(cfg, server.WithLogger(logger)); err == nil || !strings.Contains(err.Error(), "listen for http") {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("Start on a busy port: %v, want a listen error", err)
	}
	// The raft port was never taken.
	rl, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p[0])))
	if err != nil {
		t.Fatalf("the raft port is held after a failed Start: %v", err)
	}
	rl.Close()
}

// TestReloadTokens: the SIGHUP method reloads a node's tokens file, keeps
// the tokens in force when it is broken, and says when auth is off.
func TestReloadTokens(t *testing.T) {
	h := newHarness(t)
	p := freePorts(t, 4)
	off := h.start("off", p[0], p[1])
	if err := off.ReloadTokens(); !errors.Is(err, server.ErrAuthOff) {
		t.Fatalf("reload with auth off: %v, want ErrAuthOff", err)
	}

	path := filepath.Join(h.dir, "tokens")
	admin, reader := strings.Repeat("a", 20), strings.Repeat("r", 20)
	writeFile(t, path, admin+" admin\n")
	on := h.start("on", p[2], p[3], "AUTH_TOKENS_FILE", path)
	status := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+on.HTTPAddr()+"/status", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(reader); got != http.StatusUnauthorized {
		t.Fatalf("unknown token: %d, want 401", got)
	}
	writeFile(t, path, admin+" admin\n"+reader+" read\n")
	if err := on.ReloadTokens(); err != nil {
		t.Fatal(err)
	}
	if got := status(reader); got != http.StatusOK {
		t.Fatalf("token added by the reload: %d, want 200", got)
	}
	writeFile(t, path, admin+" admin\n"+reader+" reader\n")
	if err := on.ReloadTokens(); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("reload of a broken file: %v, want an error naming line 2", err)
	}
	if got := status(reader); got != http.StatusOK {
		t.Fatalf("after a failed reload: %d, want the tokens in force (200)", got)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// sink passes log lines to t.Log until the test ends: raft may still log
// from its goroutines during cleanup, and t.Log after the test panics.
type sink struct {
	mu     sync.Mutex
	t      *testing.T
	closed bool
}

func (s *sink) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

func (s *sink) writer(prefix string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed {
			s.t.Log(prefix + ": " + strings.TrimRight(string(p), "\n"))
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
