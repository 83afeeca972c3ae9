package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testwait"
)

// TestNodeLifecycle drives a Node whose "daemon" is a shell loop, so the
// process control is checked without building raftkv.
func TestNodeLifecycle(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "daemon")
	// The loop is bounded (about a minute) in case the harness leaks it.
	script := "#!/bin/sh\ntrap 'echo bye; exit 0' TERM\necho \"up $RAFT_NODE_ID $$\"\n" +
		"i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	n := StartNode(t, Config{Name: "x", Bin: bin, Dir: dir, Env: map[string]string{
		"RAFT_NODE_ID": "x1", "HTTP_SERVER_PORT": "1", "RAFT_SERVER_PORT": "2", "TLS_CERT_FILE": "c",
	}})
	if err := n.Kill(); err == nil {
		t.Fatal("a killed process exited cleanly")
	}
	n.Restart()
	if n.HTTPAddr != "127.0.0.1:1" || n.RaftAddr != "127.0.0.1:2" || n.URL("/a") != "https://127.0.0.1:1/a" {
		t.Fatalf("addresses %s %s %s", n.HTTPAddr, n.RaftAddr, n.URL("/a"))
	}
	// The log spans both runs (the first may have died before printing):
	// wait for the restarted run's own start line, printed after it has
	// set its TERM trap.
	started := fmt.Sprintf("up x1 %d", n.process().Pid())
	testwait.For(t, 10*time.Second, "the restarted run's start line", func() error {
		if !strings.Contains(n.Log(), started) {
			return fmt.Errorf("log %q", n.Log())
		}
		return nil
	})
	n.Pause()
	if n.Up() || !n.Running() {
		t.Fatalf("paused: up %v running %v", n.Up(), n.Running())
	}
	n.Resume()
	if !n.Up() {
		t.Fatal("resumed node is not up")
	}
	if err := n.Stop(10 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if n.Up() || n.Running() {
		t.Fatal("stopped node still runs")
	}
	if !strings.HasSuffix(n.Tail(1), "bye") {
		t.Fatalf("log tail %q", n.Tail(5))
	}
}
