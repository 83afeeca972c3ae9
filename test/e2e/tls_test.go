package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/proc"
	"github.com/raftkv/raftkv/internal/testpki"
	"github.com/raftkv/raftkv/internal/testwait"
)

// tlsEnv is the six TLS variables for a node whose HTTP certificate is
// api and whose Raft certificate is raft (both with their CA's file).
func tlsEnv(api, raft testpki.Files) map[string]string {
	return map[string]string{
		"TLS_CERT_FILE": api.Cert, "TLS_KEY_FILE": api.Key, "TLS_CA_FILE": api.CA,
		"RAFT_TLS_CERT_FILE": raft.Cert, "RAFT_TLS_KEY_FILE": raft.Key, "RAFT_TLS_CA_FILE": raft.CA,
	}
}

// TestTLSClusterEndToEnd runs three real processes with all six TLS
// variables, forming the cluster by RAFT_JOIN over HTTPS, then a fourth
// whose HTTP certificate is good but whose Raft certificate comes from a
// rogue CA: its /join is refused (the leader cannot reach it over Raft).
func TestTLSClusterEndToEnd(t *testing.T) {
	bin := raftkvBinary(t)
	tmp := t.TempDir()
	ca := testpki.NewCA(t, "cluster CA")
	rogue := testpki.NewCA(t, "rogue CA")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: nil, TLSClientConfig: testpki.ClientConfig(ca, ca.Issue(t, "operator")),
	}}

	// n1 bootstraps, the others join it by RAFT_JOIN, over HTTPS; each has
	// its own API and Raft certificates from the cluster CA.
	c := proc.StartCluster(t, proc.ClusterConfig{Size: 3, Bin: bin, Dir: tmp, Formation: proc.JoinFirst, Client: client,
		Env: map[string]string{"LOG_LEVEL": "info"},
		NodeEnv: func(_ int, name string) map[string]string {
			return tlsEnv(ca.Issue(t, name).Write(t, tmp, name+"-api", ca), ca.Issue(t, name).Write(t, tmp, name+"-raft", ca))
		}})
	nodes := c.Nodes
	c.WaitVoters(30*time.Second, nodes...)

	// Writes through a follower, reads through another, all over HTTPS.
	st, err := nodes[0].Status()
	if err != nil {
		t.Fatal(err)
	}
	writer, reader := 1, 2
	if st.LeaderID == "n2" {
		writer = 0
	}
	for k := range 20 {
		q := url.Values{"key": {fmt.Sprintf("k%d", k)}, "value": {strconv.Itoa(k)}}
		if err := nodes[writer].GetJSON("/set?"+q.Encode(), nil); err != nil {
			t.Fatalf("write via %s: %v", nodes[writer].Name, err)
		}
	}
	var got struct {
		Value string `json:"value"`
	}
	if err := nodes[reader].GetJSON("/get?key=k19", &got); err != nil || got.Value != "19" {
		t.Fatalf("linearizable read via %s: %q, %v", nodes[reader].Name, got.Value, err)
	}

	// Refused: plain http, and https without a client certificate.
	resp, err := http.Get("http://" + nodes[0].HTTPAddr + "/get?key=k1")
	if err != nil {
		t.Fatalf("plain http: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain http to an https node: %d, want 400", resp.StatusCode)
	}
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: testpki.ClientConfig(ca, nil)}}
	if resp, err = noCert.Get(nodes[0].URL("/get?key=k1")); err == nil {
		resp.Body.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("https without a client certificate: %v, want the handshake refused", err)
	}

	// The rogue asks to join over HTTPS (its API certificate is good), but
	// the leader contacts it over Raft first and the handshake fails: the
	// join is refused (409 joiner_unreachable, which its retry-join logs)
	// and it never enters the configuration or applies an entry.
	ports := freePorts(t, 2)
	env := tlsEnv(ca.Issue(t, "n4").Write(t, tmp, "n4-api", ca), rogue.Issue(t, "n4").Write(t, tmp, "n4-raft", rogue))
	maps.Copy(env, map[string]string{"RAFT_NODE_ID": "n4", "HTTP_SERVER_PORT": strconv.Itoa(ports[0]), "RAFT_SERVER_PORT": strconv.Itoa(ports[1]),
		"RAFT_VOLUME_DIR": filepath.Join(tmp, "n4"), "LOG_LEVEL": "info", "RAFT_JOIN": nodes[0].HTTPAddr})
	n4 := proc.StartNode(t, proc.Config{Name: "n4", Bin: bin, Dir: tmp, Env: env, Client: client})
	testwait.For(t, 30*time.Second, "n4's join refused and its Raft port refusing the leader", func() error {
		if !strings.Contains(n4.Log(), "refused a connection") {
			return errors.New("n4 has not refused a connection yet")
		}
		if !strings.Contains(n4.Log(), "joiner_unreachable") {
			return errors.New("n4 has not logged its refused join yet")
		}
		return nil
	})
	var members []node.Member
	if err := nodes[0].GetJSON("/nodes", &members); err != nil || len(members) != 3 {
		t.Fatalf("members with the rogue refused: %+v %v, want the 3", members, err)
	}
	for k := 20; k < 30; k++ {
		if err := nodes[writer].GetJSON(fmt.Sprintf("/set?key=k%d&value=%d", k, k), nil); err != nil {
			t.Fatalf("write with the rogue refused: %v", err)
		}
	}
	rogueSt, err := n4.Status()
	if err != nil {
		t.Fatal(err)
	}
	if rogueSt.AppliedIndex != 0 || rogueSt.Keys != 0 || rogueSt.LeaderID != "" {
		t.Fatalf("rogue n4: applied %d, %d keys, leader %q; want nothing", rogueSt.AppliedIndex, rogueSt.Keys, rogueSt.LeaderID)
	}
}

// TestTLSBadConfigFailsFast: a TLS misconfiguration stops the binary at
// start with one line naming the variable.
func TestTLSBadConfigFailsFast(t *testing.T) {
	bin := raftkvBinary(t)
	tmp := t.TempDir()
	ca := testpki.NewCA(t, "cluster CA")
	good := ca.Issue(t, "n1").Write(t, tmp, "good", ca)
	other := testpki.NewCA(t, "other CA")
	tests := []struct {
		name    string
		env     []string
		wantVar string
	}{
		{"cert without key", []string{"TLS_CERT_FILE=" + good.Cert}, "TLS_KEY_FILE"},
		{"missing ca", []string{"TLS_CERT_FILE=" + good.Cert, "TLS_KEY_FILE=" + good.Key, "TLS_CA_FILE=" + filepath.Join(tmp, "nope")}, "TLS_CA_FILE"},
		{"raft without ca", []string{"RAFT_TLS_CERT_FILE=" + good.Cert, "RAFT_TLS_KEY_FILE=" + good.Key}, "RAFT_TLS_CA_FILE"},
		{"raft cert from another ca", []string{"RAFT_TLS_CERT_FILE=" + good.Cert, "RAFT_TLS_KEY_FILE=" + good.Key,
			"RAFT_TLS_CA_FILE=" + other.Issue(t, "x").Write(t, tmp, "other", other).CA}, "RAFT_TLS_CERT_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Dir = tmp
			cmd.Env = append(append(proc.BaseEnv(), "RAFT_VOLUME_DIR="+filepath.Join(tmp, "volume")), tt.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if ctx.Err() != nil || !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("want exit code 2, got %v (ctx %v)\nstderr: %s", err, ctx.Err(), stderr.String())
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], ": "+tt.wantVar+": ") {
				t.Fatalf("want one stderr line naming %s, got %q", tt.wantVar, stderr.String())
			}
		})
	}
}
