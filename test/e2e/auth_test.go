package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
	"github.com/raftkv/raftkv/internal/testwait"
)

func e2eToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// replaceFile writes content to path atomically, as rotation tooling should.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// authDo sends method u with a bearer token ("" for none) and returns the
// status and body.
func authDo(method, u, token string) (int, string, error) {
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := proc.Client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(bytes.TrimSpace(b)), err
}

// expect checks one request's status.
func expect(method, u, token string, want int) error {
	code, body, err := authDo(method, u, token)
	if err != nil {
		return err
	}
	if code != want {
		return fmt.Errorf("%s %s: %d %s, want %d", method, u, code, body, want)
	}
	return nil
}

// logCount counts lines of n's log that contain all of parts.
func logCount(n *proc.Node, parts ...string) int {
	count := 0
	for _, line := range strings.Split(n.Log(), "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			count++
		}
	}
	return count
}

// TestAuthTokensSIGHUP runs two real nodes with one shared tokens file:
// the second joins by itself (RAFT_JOIN) with the node credential; then
// the file is rotated and each process gets SIGHUP. A new token works, a
// removed one gets 401, and a broken file keeps the tokens in force. No
// log line ever holds a token.
func TestAuthTokensSIGHUP(t *testing.T) {
	bin := raftkvBinary(t)
	tmp := t.TempDir()
	tokens := filepath.Join(tmp, "tokens")
	admin, write, read := e2eToken(t), e2eToken(t), e2eToken(t)
	replaceFile(t, tokens, fmt.Sprintf("# shared by every node\n%s admin\n%s write\n%s read\n", admin, write, read))

	nodes := proc.StartCluster(t, proc.ClusterConfig{Size: 2, Bin: bin, Dir: tmp, Formation: proc.JoinFirst,
		Env: map[string]string{"AUTH_TOKENS_FILE": tokens, "LOG_LEVEL": "info"}}).Nodes
	n2 := nodes[1]

	// n2 joins through n1's admin-only /join with its own credential, then
	// a write through either node reaches the leader.
	testwait.For(t, 30*time.Second, "n2 to join with auth on and a write via n2", func() error {
		return expect(http.MethodGet, n2.URL("/set?key=a&value=1"), write, http.StatusOK)
	})
	for _, n := range nodes {
		if got := logCount(n, "authentication on", "admin_tokens=1", "read_tokens=1", "write_tokens=1"); got != 1 {
			t.Fatalf("%s: want one 'authentication on' line with counts per role, got %d", n.Name, got)
		}
		if err := expect(http.MethodGet, n.URL("/get?key=a"), "", http.StatusUnauthorized); err != nil {
			t.Fatal(err)
		}
		if err := expect(http.MethodGet, n.URL("/health"), "", http.StatusOK); err != nil {
			t.Fatal(err)
		}
	}

	// Rotate: the read token is replaced; SIGHUP every node.
	newRead := e2eToken(t)
	replaceFile(t, tokens, fmt.Sprintf("%s admin\n%s write\n%s read\n", admin, write, newRead))
	for _, n := range nodes {
		n.Signal(syscall.SIGHUP)
	}
	for _, n := range nodes {
		testwait.For(t, 10*time.Second, n.Name+" to reload", func() error {
			if logCount(n, "tokens reloaded", "read_tokens=1", "tokens=3") != 1 {
				return errors.New("no reload line yet")
			}
			return nil
		})
		if err := expect(http.MethodGet, n.URL("/get?key=a"), newRead, http.StatusOK); err != nil {
			t.Fatalf("new token after SIGHUP: %v", err)
		}
		if err := expect(http.MethodGet, n.URL("/get?key=a"), read, http.StatusUnauthorized); err != nil {
			t.Fatalf("removed token after SIGHUP: %v", err)
		}
	}

	// A broken file: an error line, and the tokens in force stay.
	replaceFile(t, tokens, fmt.Sprintf("%s admin\n%s sudo\n", e2eToken(t), read))
	for _, n := range nodes {
		n.Signal(syscall.SIGHUP)
	}
	for _, n := range nodes {
		testwait.For(t, 10*time.Second, n.Name+" to refuse the broken file", func() error {
			if logCount(n, "level=error", "reloading AUTH_TOKENS_FILE failed", "line 2") != 1 {
				return errors.New("no error line yet")
			}
			return nil
		})
		for _, c := range []struct {
			token string
			want  int
		}{{newRead, http.StatusOK}, {read, http.StatusUnauthorized}} {
			if err := expect(http.MethodGet, n.URL("/get?key=a"), c.token, c.want); err != nil {
				t.Fatalf("after a broken file: %v", err)
			}
		}
		if err := expect(http.MethodGet, n.URL("/set?key=b&value=2"), write, http.StatusOK); err != nil {
			t.Fatalf("write via %s after a broken file: %v", n.Name, err)
		}
	}
	for _, n := range nodes {
		for _, tok := range []string{admin, write, read, newRead} {
			if logCount(n, tok) != 0 {
				t.Fatalf("%s's log holds a token", n.Name)
			}
		}
	}
	for _, n := range nodes {
		if err := n.Stop(10 * time.Second); err != nil {
			t.Fatalf("%s exit after SIGTERM: %v", n.Name, err)
		}
	}
}

// TestAuthOffWarnsAndSurvivesSIGHUP: without AUTH_TOKENS_FILE the node
// says so loudly once, keeps serving after SIGHUP (whose default action
// would kill it), and answers admin routes from loopback.
func TestAuthOffWarnsAndSurvivesSIGHUP(t *testing.T) {
	bin := raftkvBinary(t)
	tmp := t.TempDir()
	ports := freePorts(t, 2)
	n := proc.StartNode(t, proc.Config{Name: "open", Bin: bin, Dir: tmp, Env: map[string]string{
		"HTTP_SERVER_PORT": strconv.Itoa(ports[0]),
		"RAFT_SERVER_PORT": strconv.Itoa(ports[1]),
		"RAFT_VOLUME_DIR":  filepath.Join(tmp, "volume"),
	}})
	testwait.For(t, 20*time.Second, "a write on the open node", func() error { return set(n, "a", "1") })
	if got := logCount(n, "level=warning", "AUTHENTICATION IS OFF"); got != 1 {
		t.Fatalf("want one warning line about authentication being off, got %d", got)
	}
	n.Signal(syscall.SIGHUP)
	testwait.For(t, 10*time.Second, "the SIGHUP to be handled", func() error {
		if logCount(n, "nothing to reload") != 1 {
			return errors.New("not yet")
		}
		return nil
	})
	if !n.Running() {
		t.Fatal("SIGHUP killed the node")
	}
	if err := expect(http.MethodPost, n.URL("/snapshot"), "", http.StatusOK); err != nil {
		t.Fatalf("admin route from loopback with auth off: %v", err)
	}
}

// TestAuthBadTokensFileFailsFast: a broken tokens file stops the node at
// start with one line naming the variable and the file's line.
func TestAuthBadTokensFileFailsFast(t *testing.T) {
	bin := raftkvBinary(t)
	tmp := t.TempDir()
	tokens := filepath.Join(tmp, "tokens")
	secret := e2eToken(t)
	for _, c := range []struct{ name, file, want string }{
		{"unknown role", secret + " root\n", "line 1: unknown role"},
		{"short token", "# x\nshort admin\n", "line 2: token is 5 characters"},
		{"no admin", secret + " read\n", "no admin token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			replaceFile(t, tokens, c.file)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Dir = tmp
			cmd.Env = append(proc.BaseEnv(), "AUTH_TOKENS_FILE="+tokens, "RAFT_VOLUME_DIR="+filepath.Join(tmp, "volume"),
				"HTTP_SERVER_PORT="+strconv.Itoa(freePorts(t, 1)[0]), "RAFT_SERVER_PORT="+strconv.Itoa(freePorts(t, 1)[0]))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if ctx.Err() != nil || !errors.As(err, &exit) || exit.ExitCode() <= 0 {
				t.Fatalf("want a quick non-zero exit, got %v\nstderr: %s", err, stderr.String())
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "AUTH_TOKENS_FILE") || !strings.Contains(lines[0], c.want) || strings.Contains(lines[0], secret) {
				t.Fatalf("want one stderr line naming AUTH_TOKENS_FILE and %q (and no token), got %q", c.want, stderr.String())
			}
		})
	}
}
