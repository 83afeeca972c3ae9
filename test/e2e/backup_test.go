package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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

// runRestore runs `raftkv restore args...` with env and returns its exit
// code, stdout and stderr.
func runRestore(t *testing.T, bin string, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"restore"}, args...)...)
	cmd.Env = proc.BaseEnv()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("raftkv restore %v did not finish: %v", args, ctx.Err())
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	case err != nil:
		t.Fatalf("raftkv restore %v: %v", args, err)
	}
	return 0, stdout.String(), stderr.String()
}

// TestOfflineRestore: a backup of a cluster that is then killed is turned
// by `raftkv restore` into a fresh volume; the node started on it serves
// the data with linearizable reads and takes writes, and a second node
// joining with an empty volume receives the data.
func TestOfflineRestore(t *testing.T) {
	bin := raftkvBinary(t)
	tmp := t.TempDir()
	const keys = 300

	// The cluster that will die.
	ports := freePorts(t, 6)
	src := proc.StartNode(t, proc.Config{Name: "src", Bin: bin, Dir: tmp, Env: map[string]string{
		"RAFT_NODE_ID": "old1", "RAFT_VOLUME_DIR": filepath.Join(tmp, "src"),
		"HTTP_SERVER_PORT": strconv.Itoa(ports[0]), "RAFT_SERVER_PORT": strconv.Itoa(ports[1]),
	}})
	testwait.For(t, 20*time.Second, "the source node to take writes", func() error { return set(src, "0", "0") })
	for i := 1; i < keys; i++ {
		if err := set(src, strconv.Itoa(i), strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	backup := filepath.Join(tmp, "backup.snap")
	resp, err := proc.Client.Get(src.URL("/backup"))
	if err != nil {
		t.Fatalf("GET /backup: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /backup: %d, %d bytes, %v", resp.StatusCode, len(b), err)
	}
	if err := os.WriteFile(backup, b, 0o600); err != nil {
		t.Fatal(err)
	}
	src.Kill()

	volume := filepath.Join(tmp, "r1")
	env := map[string]string{
		"RAFT_NODE_ID": "r1", "RAFT_VOLUME_DIR": volume,
		"HTTP_SERVER_PORT": strconv.Itoa(ports[2]), "RAFT_SERVER_PORT": strconv.Itoa(ports[3]),
	}
	truncated := filepath.Join(tmp, "truncated.snap")
	if err := os.WriteFile(truncated, b[:len(b)-7], 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runRestore(t, bin, env, "--volume", volume, truncated)
	if code != 1 || !strings.Contains(stderr, "not a valid backup") {
		t.Fatalf("restore of a truncated file: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(volume); !os.IsNotExist(err) {
		t.Fatalf("a refused restore created the volume (%v)", err)
	}
	if code, _, _ := runRestore(t, bin, env); code != 2 {
		t.Fatalf("restore without a file: exit %d, want 2", code)
	}

	code, stdout, stderr := runRestore(t, bin, env, "--volume", volume, backup)
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("restored %d keys (%d bytes", keys, len(b))) {
		t.Fatalf("restore: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	t.Logf("raftkv restore: %s", strings.TrimSpace(stdout))
	code, _, stderr = runRestore(t, bin, env, "--volume", volume, backup)
	if code != 1 || !strings.Contains(stderr, "not empty") {
		t.Fatalf("restore into a used volume without --force: exit %d, stderr %q", code, stderr)
	}
	code, stdout, stderr = runRestore(t, bin, env, "--force", "--volume", volume, backup)
	if code != 0 || !strings.Contains(stdout, "removed "+filepath.Join(volume, "snapshots")) {
		t.Fatalf("restore --force: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}

	// The restored node forms a one-node cluster with the data.
	r1 := proc.StartNode(t, proc.Config{Name: "r1", Bin: bin, Dir: tmp, Env: env})
	testwait.For(t, 20*time.Second, "a linearizable read on the restored node", func() error {
		v, err := get(r1, strconv.Itoa(keys-1), "")
		if err == nil && v != strconv.Itoa(keys-1) {
			err = fmt.Errorf("value %q", v)
		}
		return err
	})
	t.Logf("restored node served its first linearizable read %v after start", time.Since(r1.Started()).Round(time.Millisecond))
	checkKeys(t, r1, 0, keys-1, "")
	if err := set(r1, "after", "restore"); err != nil {
		t.Fatal(err)
	}

	// A second node joins with an empty volume and receives everything.
	r2 := proc.StartNode(t, proc.Config{Name: "r2", Bin: bin, Dir: tmp, Env: map[string]string{
		"RAFT_NODE_ID": "r2", "RAFT_VOLUME_DIR": filepath.Join(tmp, "r2"),
		"HTTP_SERVER_PORT": strconv.Itoa(ports[4]), "RAFT_SERVER_PORT": strconv.Itoa(ports[5]),
		"RAFT_JOIN": r1.HTTPAddr,
	}})
	testwait.For(t, 30*time.Second, "r2 to join and catch up", func() error {
		v, err := get(r2, "after", "stale")
		if err == nil && v != "restore" {
			err = fmt.Errorf("value %q", v)
		}
		return err
	})
	checkKeys(t, r2, 0, keys-1, "stale")
	checkKeys(t, r2, 0, 10, "")
	// r2 joined as a learner; the leader promotes it once it has caught up.
	testwait.For(t, 15*time.Second, "r2 to be promoted to voter", func() error {
		st, err := r1.Status()
		if err == nil && (len(st.Configuration) != 2 || !st.Configuration[0].Voter || !st.Configuration[1].Voter) {
			err = fmt.Errorf("configuration after the join: %+v", st.Configuration)
		}
		return err
	})
	if err := set(r2, "via", "r2"); err != nil {
		t.Fatal(err)
	}
	if v, err := get(r1, "via", ""); err != nil || v != "r2" {
		t.Fatalf("read of a write through r2 on r1: %q, %v", v, err)
	}
	for _, n := range []*proc.Node{r1, r2} {
		if err := n.Stop(10 * time.Second); err != nil {
			t.Errorf("%s exit after SIGTERM: %v", n.Name, err)
		}
	}
}
