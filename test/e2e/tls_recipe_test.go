package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
	"github.com/raftkv/raftkv/internal/testwait"
)

// shBlocks returns the ```sh blocks of doc that follow the line starting
// with after.
func shBlocks(t *testing.T, doc, after string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "\n"+after)
	if !ok {
		t.Fatalf("no paragraph starting %q", after)
	}
	var blocks []string
	for {
		_, body, ok := strings.Cut(rest, "```sh\n")
		if !ok {
			return blocks
		}
		block, tail, ok := strings.Cut(body, "```")
		if !ok {
			t.Fatal("unterminated sh block")
		}
		blocks, rest = append(blocks, block), tail
	}
}

// TestSecurityTLSRecipe runs docs/security.md's certificate recipe as
// written (openssl in bash), starts the binary with the variables the
// recipe's start line sets, and runs its curl lines against it: the
// documented local start must work on one machine. Only the port is moved
// (8000 may be taken).
func TestSecurityTLSRecipe(t *testing.T) {
	bin := raftkvBinary(t)
	for _, tool := range []string{"openssl", "curl", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := shBlocks(t, string(doc), "A CA and certificates with openssl")
	if len(blocks) < 2 {
		t.Fatalf("want the recipe and the start block, got %d blocks", len(blocks))
	}
	dir := t.TempDir()
	run := func(script string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s\n%v\n%s", script, err, out)
		}
		return string(out)
	}
	run(blocks[0])

	// The start block: VAR=value words up to bin/raftkv, then curl lines.
	start, curls, _ := strings.Cut(blocks[1], "bin/raftkv\n")
	ports := freePorts(t, 2)
	env := map[string]string{"HTTP_SERVER_PORT": strconv.Itoa(ports[0]), "RAFT_SERVER_PORT": strconv.Itoa(ports[1])}
	for _, w := range strings.Fields(strings.ReplaceAll(start, "\\\n", " ")) {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			t.Fatalf("start line word %q is not VAR=value", w)
		}
		env[k] = filepath.Join(dir, v)
	}
	if env["TLS_CERT_FILE"] == "" || env["RAFT_TLS_CERT_FILE"] == "" {
		t.Fatalf("the start line sets no TLS files: %q", start)
	}
	client, err := recipeClient(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := proc.StartNode(t, proc.Config{Name: "n1", Bin: bin, Dir: dir, Env: env, Client: client})
	testwait.For(t, 20*time.Second, "the node up with the recipe's certificates", func() error {
		if !n.Running() {
			t.Fatalf("the node exited:\n%s", n.Tail(20))
		}
		code, _, err := n.Do("GET", "/health", nil)
		if err == nil && code != 200 {
			err = fmt.Errorf("/health %d", code)
		}
		return err
	})
	var outs []string
	for _, line := range strings.Split(strings.TrimSpace(curls), "\n") {
		if !strings.HasPrefix(line, "curl ") {
			t.Fatalf("unexpected line in the start block: %q", line)
		}
		line = strings.Replace(line, ":8000/", ":"+strconv.Itoa(ports[0])+"/", 1)
		outs = append(outs, run(strings.Replace(line, "curl ", "curl -sS --fail-with-body ", 1)))
	}
	if len(outs) < 2 || !strings.Contains(outs[len(outs)-1], `"value":"1"`) {
		t.Fatalf("curl answers %q; want the last to read back value 1", outs)
	}
}

// recipeClient trusts the recipe's CA and presents its admin certificate.
func recipeClient(dir string) (*http.Client, error) {
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in ca.crt")
	}
	admin, err := tls.LoadX509KeyPair(filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"))
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil,
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{admin}}}}, nil
}
