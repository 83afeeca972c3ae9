package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
	"github.com/raftkv/raftkv/internal/testwait"
)

// TestBootstrapPending: a node waiting for its RAFT_BOOTSTRAP_EXPECT peers
// answers /ready and requests with 503 bootstrap_pending (not no_leader),
// at once rather than after the request timeout, saying how many of how
// many nodes it has seen and which join addresses do not answer.
func TestBootstrapPending(t *testing.T) {
	bin := raftkvBinary(t)
	dir := t.TempDir()
	ports := freePorts(t, 6)
	httpAddr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[2*i]) }
	join := httpAddr(0) + "," + httpAddr(1) + "," + httpAddr(2)
	const requestTimeout = 10 * time.Second
	start := func(i int) *proc.Node {
		return proc.StartNode(t, proc.Config{Name: fmt.Sprintf("p%d", i+1), Bin: bin, Dir: dir, Env: map[string]string{
			"RAFT_NODE_ID":          fmt.Sprintf("p%d", i+1),
			"HTTP_SERVER_PORT":      strconv.Itoa(ports[2*i]),
			"RAFT_SERVER_PORT":      strconv.Itoa(ports[2*i+1]),
			"RAFT_VOLUME_DIR":       fmt.Sprintf("%s/p%d", dir, i+1),
			"RAFT_JOIN":             join,
			"RAFT_BOOTSTRAP_EXPECT": "3",
			"REQUEST_TIMEOUT":       requestTimeout.String(),
		}})
	}
	type answer struct {
		Code  string `json:"code"`
		Error string `json:"error"`
	}
	ask := func(n *proc.Node, path string) (int, answer, time.Duration, error) {
		began := time.Now()
		code, body, err := n.Do(http.MethodGet, path, nil)
		took := time.Since(began)
		var a answer
		if err == nil {
			err = json.Unmarshal(body, &a)
		}
		return code, a, took, err
	}
	// pending waits until n's /ready and a write both answer 503
	// bootstrap_pending with every want in the message.
	pending := func(n *proc.Node, want ...string) {
		t.Helper()
		testwait.For(t, 20*time.Second, n.Name+" reporting bootstrap_pending with "+strings.Join(want, ", "), func() error {
			for _, path := range []string{"/ready", "/set?key=k&value=v", "/get?key=k"} {
				code, a, took, err := ask(n, path)
				if err != nil {
					return err
				}
				if code != http.StatusServiceUnavailable || a.Code != "bootstrap_pending" {
					return fmt.Errorf("%s: %d %+v", path, code, a)
				}
				for _, w := range want {
					if !strings.Contains(a.Error, w) {
						return fmt.Errorf("%s: message %q lacks %q", path, a.Error, w)
					}
				}
				if took > requestTimeout/4 {
					t.Errorf("%s took %v; bootstrap_pending must answer at once, not after REQUEST_TIMEOUT (%v)", path, took, requestTimeout)
				}
			}
			return nil
		})
	}
	p1 := start(0)
	pending(p1, "seen 1 of 3", "no answer from "+httpAddr(1)+", "+httpAddr(2))
	p2 := start(1)
	pending(p1, "seen 2 of 3", "p2 at "+httpAddr(1), "no answer from "+httpAddr(2))
	pending(p2, "seen 2 of 3", "p1 at "+httpAddr(0))

	p3 := start(2)
	for _, n := range []*proc.Node{p1, p2, p3} {
		testwait.For(t, 30*time.Second, n.Name+" ready once all three are up", func() error {
			code, a, _, err := ask(n, "/ready")
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("%d %+v", code, a)
			}
			return err
		})
	}
}
