package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/internal/proc"
)

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

// set writes key=value through n with the seed's /set request.
func set(n *proc.Node, key, value string) error {
	q := url.Values{"key": {key}, "value": {value}}
	code, body, err := n.Do(http.MethodGet, "/set?"+q.Encode(), nil)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("set %s on %s: %d %s", key, n.Name, code, bytes.TrimSpace(body))
	}
	return err
}

// get reads key from n; consistency "" is the default (linearizable).
func get(n *proc.Node, key, consistency string) (string, error) {
	q := url.Values{"key": {key}}
	if consistency != "" {
		q.Set("consistency", consistency)
	}
	var r struct {
		Value string `json:"value"`
	}
	err := n.GetJSON("/get?"+q.Encode(), &r)
	return r.Value, err
}

// snapshotDirs lists complete snapshots in n's FileSnapshotStore:
// <volume>/snapshots/<term>-<index>-<ms>/{meta.json,state.bin}.
func snapshotDirs(n *proc.Node) []string {
	entries, _ := os.ReadDir(filepath.Join(n.Volume, "snapshots"))
	var out []string
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		dir := filepath.Join(n.Volume, "snapshots", e.Name())
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
