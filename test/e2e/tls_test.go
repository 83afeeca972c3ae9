package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testpki"
)

// tlsEnv is the six TLS variables for a node whose HTTP certificate is
// api and whose Raft certificate is raft (both with their CA's file).
func tlsEnv(api, raft testpki.Files) map[string]string {
	return map[string]string{
		"TLS_CERT_FILE": api.Cert, "TLS_KEY_FILE": api.Key, "TLS_CA_FILE": api.CA,
		"RAFT_TLS_CERT_FILE": raft.Cert, "RAFT_TLS_KEY_FILE": raft.Key, "RAFT_TLS_CA_FILE": raft.CA,
	}
}

// httpsGet GETs u with client and decodes a 200 answer into out.
func httpsGet(client *http.Client, u string, out any) error {
	resp, err := client.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, bytes.TrimSpace(body))
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

// TestTLSClusterEndToEnd runs three real processes with all six TLS
// variables, forming the cluster by RAFT_JOIN over HTTPS, then a fourth
// whose HTTP certificate is good but whose Raft certificate comes from a
// rogue CA: it is let into the configuration by /join but gets nothing.
func TestTLSClusterEndToEnd(t *testing.T) {
	bin := raftkvBinary(t)
	tmp := t.TempDir()
	ports := freePorts(t, 8)
	ca := testpki.NewCA(t, "cluster CA")
	rogue := testpki.NewCA(t, "rogue CA")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: nil, TLSClientConfig: testpki.ClientConfig(ca, ca.Issue(t, "operator")),
	}}
	base := func(i int) string { return fmt.Sprintf("https://127.0.0.1:%d", ports[2*i]) }

	// nodeVars is the environment of node i (n1 bootstraps, the others
	// join it by RAFT_JOIN, over HTTPS) with the given Raft certificate.
	nodeVars := func(i int, raft testpki.Files) map[string]string {
		name := fmt.Sprintf("n%d", i+1)
		vars := tlsEnv(ca.Issue(t, name).Write(t, tmp, name+"-api", ca), raft)
		vars["RAFT_NODE_ID"] = name
		vars["HTTP_SERVER_PORT"] = strconv.Itoa(ports[2*i])
		vars["RAFT_SERVER_PORT"] = strconv.Itoa(ports[2*i+1])
		vars["RAFT_VOLUME_DIR"] = filepath.Join(tmp, name)
		vars["LOG_LEVEL"] = "info"
		if i > 0 {
			vars["RAFT_JOIN"] = fmt.Sprintf("127.0.0.1:%d", ports[0])
		}
		return vars
	}
	names := []string{"n1", "n2", "n3"}
	var nodes []*node
	for i, name := range names {
		raft := ca.Issue(t, name).Write(t, tmp, name+"-raft", ca)
		nodes = append(nodes, startNode(t, bin, name, tmp, nodeVars(i, raft)))
	}

	waitFor(t, 30*time.Second, "three voters with their https addresses on every node", func() error {
		for i := range nodes {
			var members []member
			if err := httpsGet(client, base(i)+"/nodes", &members); err != nil {
				return err
			}
			if len(members) != 3 {
				return fmt.Errorf("%s lists %d members", names[i], len(members))
			}
			for _, m := range members {
				if !m.Voter || m.HTTPAddr == "" {
					return fmt.Errorf("%s lists %+v", names[i], m)
				}
			}
		}
		return nil
	})

	// Writes through a follower, reads through another, all over HTTPS.
	var st status
	if err := httpsGet(client, base(0)+"/status", &st); err != nil {
		t.Fatal(err)
	}
	writer, reader := 1, 2
	if st.LeaderID == "n2" {
		writer = 0
	}
	for k := range 20 {
		q := url.Values{"key": {fmt.Sprintf("k%d", k)}, "value": {strconv.Itoa(k)}}
		if err := httpsGet(client, base(writer)+"/set?"+q.Encode(), nil); err != nil {
			t.Fatalf("write via %s: %v", names[writer], err)
		}
	}
	var got struct {
		Value string `json:"value"`
	}
	if err := httpsGet(client, base(reader)+"/get?key=k19", &got); err != nil || got.Value != "19" {
		t.Fatalf("linearizable read via %s: %q, %v", names[reader], got.Value, err)
	}

	// Refused: plain http, and https without a client certificate.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/get?key=k1", ports[0]))
	if err != nil {
		t.Fatalf("plain http: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain http to an https node: %d, want 400", resp.StatusCode)
	}
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: testpki.ClientConfig(ca, nil)}}
	if err := httpsGet(noCert, base(0)+"/get?key=k1", nil); err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("https without a client certificate: %v, want the handshake refused", err)
	}

	// The rogue joins itself over HTTPS (its API certificate is good), but
	// Raft refuses it: it never applies an entry while the cluster commits.
	n4 := startNode(t, bin, "n4", tmp, nodeVars(3, rogue.Issue(t, "n4").Write(t, tmp, "n4-raft", rogue)))
	waitFor(t, 30*time.Second, "n4 in the configuration and its Raft port refusing the leader", func() error {
		var members []member
		if err := httpsGet(client, base(0)+"/nodes", &members); err != nil {
			return err
		}
		if len(members) != 4 {
			return fmt.Errorf("%d members", len(members))
		}
		log, _ := os.ReadFile(n4.logPath)
		if !bytes.Contains(log, []byte("refused a connection")) {
			return errors.New("n4 has not refused a connection yet")
		}
		return nil
	})
	for k := 20; k < 30; k++ {
		if err := httpsGet(client, base(writer)+fmt.Sprintf("/set?key=k%d&value=%d", k, k), nil); err != nil {
			t.Fatalf("write with the rogue in the configuration: %v", err)
		}
	}
	var rogueSt struct {
		status
		Keys int `json:"keys"`
	}
	if err := httpsGet(client, base(3)+"/status", &rogueSt); err != nil {
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
			cmd.Env = append(append(baseEnv(), "RAFT_VOLUME_DIR="+filepath.Join(tmp, "volume")), tt.env...)
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
