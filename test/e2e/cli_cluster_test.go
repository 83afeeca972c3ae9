package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
	"github.com/raftkv/raftkv/internal/testwait"
)

// kvCLI runs the raftkv binary's client commands with RAFTKV_ENDPOINTS set
// and nothing else of the test's environment.
type kvCLI struct {
	t         *testing.T
	bin       string
	endpoints string
}

// run runs args with stdin and fails the test unless it exits with want
// within 20 s; it returns stdout and stderr.
func (k kvCLI) run(want int, stdin string, args ...string) (string, string) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.bin, args...)
	cmd.Env = append(proc.BaseEnv(), "RAFTKV_ENDPOINTS="+k.endpoints)
	cmd.Dir = k.t.TempDir()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		k.t.Fatalf("raftkv %s did not exit within 20s; stderr:\n%s", strings.Join(args, " "), errb.String())
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		k.t.Fatal(err)
	}
	if code != want {
		k.t.Fatalf("raftkv %s: exit %d, want %d\nstdout %s\nstderr %s", strings.Join(args, " "), code, want, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

// TestCLIReadmeFlow is the README's three-node flow done with the raftkv
// binary's subcommands instead of curl: join two nodes, write and read
// through any node, list, delete, a transaction, a lease, a lock, the
// members and status tables, and a watch that follows the cluster across
// the kill of the node it was reading from, losing and repeating nothing.
func TestCLIReadmeFlow(t *testing.T) {
	bin := raftkvBinary(t)
	c := proc.StartCluster(t, proc.ClusterConfig{Size: 3, Bin: bin, Dir: t.TempDir(), Formation: proc.Manual})
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	all := strings.Join([]string{n1.HTTPAddr, n2.HTTPAddr, n3.HTTPAddr}, ",")
	k := kvCLI{t: t, bin: bin, endpoints: n1.HTTPAddr}

	// n1 bootstraps; `raftkv members add` joins the others (the README's
	// two curl joins).
	testwait.For(t, 20*time.Second, "n1 to lead its one-node cluster", func() error {
		st, err := n1.Status()
		if err == nil && st.State != "Leader" {
			err = fmt.Errorf("n1 is %s", st.State)
		}
		return err
	})
	for _, n := range []*proc.Node{n2, n3} {
		out, _ := k.run(0, "", "members", "add", n.Name, n.RaftAddr, "--http-addr", n.HTTPAddr)
		if !strings.HasPrefix(out, "added "+n.Name) {
			t.Errorf("members add printed %q", out)
		}
	}
	c.WaitVoters(20*time.Second, n1, n2, n3)
	k.endpoints = all

	out, _ := k.run(0, "", "status", "--cluster")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 || strings.Count(out, " Leader ") != 1 {
		t.Errorf("status --cluster:\n%s", out)
	}
	out, _ = k.run(0, "", "members")
	for _, n := range c.Nodes {
		if !regexp.MustCompile(`(?m)^` + n.Name + ` +(Leader|Follower) +voter +true +` + regexp.QuoteMeta(n.RaftAddr)).MatchString(out) {
			t.Errorf("members lacks a voter row for %s:\n%s", n.Name, out)
		}
	}

	// Writes and reads through every node.
	for i, n := range c.Nodes {
		one := kvCLI{t: t, bin: bin, endpoints: n.HTTPAddr}
		one.run(0, "", "put", "key/"+strconv.Itoa(i), "value-"+n.Name)
	}
	for i := range c.Nodes {
		one := kvCLI{t: t, bin: bin, endpoints: c.Nodes[(i+1)%3].HTTPAddr}
		if out, _ := one.run(0, "", "get", "key/"+strconv.Itoa(i)); out != "value-"+c.Nodes[i].Name {
			t.Errorf("get key/%d = %q", i, out)
		}
	}
	_, stderr := k.run(3, "", "get", "missing")
	if !strings.Contains(stderr, "key_not_found") {
		t.Errorf("get missing: stderr %q", stderr)
	}
	if out, _ := k.run(0, "", "ls", "key/", "--keys"); out != "key/0\nkey/1\nkey/2\n" {
		t.Errorf("ls --keys = %q", out)
	}
	k.run(0, "", "del", "key/0")
	k.run(3, "", "del", "key/0")
	k.run(4, "", "put", "key/1", "x", "--cas", "0")

	// A transaction from stdin: the compare holds once, then fails.
	txn := `{"compare":[{"key":"key/1","target":"value","op":"=","value":"value-n2"}],
		"success":[{"op":"put","key":"key/1","value":"moved"},{"op":"delete","key":"key/2"}],
		"failure":[{"op":"get","key":"key/1"}]}`
	if out, _ := k.run(0, txn, "txn"); !strings.HasPrefix(out, "SUCCEEDED") {
		t.Errorf("txn printed %q", out)
	}
	if out, _ := k.run(4, txn, "txn"); !strings.Contains(out, "get key/1 = moved") {
		t.Errorf("failed txn printed %q", out)
	}

	// A lease takes its key with it.
	out, _ = k.run(0, "", "lease", "grant", "30s", "-o", "json")
	var lease struct{ ID uint64 }
	if err := json.Unmarshal([]byte(out), &lease); err != nil || lease.ID == 0 {
		t.Fatalf("lease grant -o json = %q (%v)", out, err)
	}
	id := strconv.FormatUint(lease.ID, 10)
	k.run(0, "", "put", "svc/web", "up", "--lease", id)
	k.run(0, "", "lease", "revoke", id)
	k.run(3, "", "get", "svc/web")

	// lock runs its command holding the lock; a second lock waits on it
	// and gives up (exit 5) without running its command.
	dir := t.TempDir()
	inner := fmt.Sprintf(`%q lock --wait 200ms job -- touch %q; echo "inner $?"; echo "token $RAFTKV_LOCK_TOKEN"; exit 9`, bin, filepath.Join(dir, "ran"))
	out, _ = k.run(9, "", "lock", "job", "--", "sh", "-c", inner)
	if !strings.Contains(out, "inner 5\n") || !regexp.MustCompile(`token [1-9]\d*\n`).MatchString(out) {
		t.Errorf("lock printed %q", out)
	}
	if fileExists(filepath.Join(dir, "ran")) {
		t.Error("the second lock ran its command while the first held the lock")
	}

	// A lock killed by SIGKILL takes its command with it (Linux's
	// parent-death signal): the command must not go on without the lock.
	lockKilledTakesCommand(t, bin, all, dir)

	// A watch goes on across the kill of the node it reads from. Watching
	// from a put's index, it misses nothing written after that, however
	// long it takes to connect.
	out, _ = k.run(0, "", "put", "w/0", "zero", "-o", "json")
	var put struct{ Index uint64 }
	if err := json.Unmarshal([]byte(out), &put); err != nil || put.Index == 0 {
		t.Fatalf("put -o json = %q (%v)", out, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watch := exec.CommandContext(ctx, bin, "watch", "w/", "--count", "3", "--index", strconv.FormatUint(put.Index, 10))
	watch.Env = append(proc.BaseEnv(), "RAFTKV_ENDPOINTS="+all)
	var werr bytes.Buffer
	watch.Stderr = &werr
	stdout, err := watch.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("watch ended before %s; stderr:\n%s", what, werr.String())
			}
			return l
		case <-ctx.Done():
			t.Fatalf("no watch line for %s within 30s; stderr:\n%s", what, werr.String())
		}
		return ""
	}
	k.run(0, "", "put", "w/1", "one")
	first := next("w/1")
	// The node serving the stream is the one with a watcher open.
	var victim *proc.Node
	testwait.For(t, 10*time.Second, "the node serving the watch", func() error {
		for _, n := range c.Nodes {
			_, body, err := n.Do("GET", "/metrics", nil)
			if err != nil {
				return err
			}
			if regexp.MustCompile(`(?m)^raftkv_watchers 1$`).Match(body) {
				victim = n
				return nil
			}
		}
		return errors.New("no node reports raftkv_watchers 1")
	})
	if err := victim.Kill(); err == nil {
		t.Fatalf("%s exited cleanly after SIGKILL", victim.Name)
	}
	var rest []string
	for _, n := range c.Nodes {
		if n != victim {
			rest = append(rest, n.HTTPAddr)
		}
	}
	others := kvCLI{t: t, bin: bin, endpoints: strings.Join(rest, ",")}
	others.run(0, "", "put", "w/2", "two")
	others.run(0, "", "del", "w/1")
	got := []string{first, next("w/2"), next("the delete of w/1")}
	want := []*regexp.Regexp{
		regexp.MustCompile(`^\d+\.\d+ put w/1 one$`),
		regexp.MustCompile(`^\d+\.\d+ put w/2 two$`),
		regexp.MustCompile(`^\d+\.\d+ delete w/1$`),
	}
	for i := range want {
		if !want[i].MatchString(got[i]) {
			t.Errorf("watch line %d = %q, want %s", i, got[i], want[i])
		}
	}
	if err := watch.Wait(); err != nil {
		t.Errorf("watch --count 3: %v; stderr:\n%s", err, werr.String())
	}
	if l, ok := <-lines; ok {
		t.Errorf("watch printed more than 3 lines: %q", l)
	}
	t.Logf("the watch read from %s, killed after its first event", victim.Name)

	// The tables show the dead node; status exits 1 for it.
	out, _ = k.run(0, "", "members", "-o", "json")
	var ms []struct {
		ID        string `json:"id"`
		Reachable bool   `json:"reachable"`
	}
	if err := json.Unmarshal([]byte(out), &ms); err != nil || len(ms) != 3 {
		t.Fatalf("members -o json = %q (%v)", out, err)
	}
	for _, m := range ms {
		if m.Reachable == (m.ID == victim.Name) {
			t.Errorf("members: %s reachable=%v with %s killed", m.ID, m.Reachable, victim.Name)
		}
	}
	out, _ = k.run(1, "", "status", "--timeout", "3s")
	if !strings.Contains(out, victim.HTTPAddr) || !strings.Contains(out, "ERROR") {
		t.Errorf("status with %s down:\n%s", victim.Name, out)
	}
}

// lockKilledTakesCommand SIGKILLs `raftkv lock` while its command runs and
// checks that the command ends too, well before its own 60 s.
func lockKilledTakesCommand(t *testing.T, bin, endpoints, dir string) {
	t.Helper()
	pidFile := filepath.Join(dir, "child.pid")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lock := exec.CommandContext(ctx, bin, "lock", "orphan", "--", "sh", "-c", fmt.Sprintf(`echo $$ > %q.tmp && mv %q.tmp %q && exec sleep 60`, pidFile, pidFile, pidFile))
	lock.Env = append(proc.BaseEnv(), "RAFTKV_ENDPOINTS="+endpoints)
	if err := lock.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	testwait.For(t, 15*time.Second, "the locked command to start", func() error {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return err
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	if err := lock.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = lock.Wait()
	// The command is the lock's child; once the lock died it is re-parented
	// (to init or a subreaper, which reaps it), so "gone" is: no process, or
	// a zombie, with that pid.
	testwait.For(t, 10*time.Second, "the locked command to end after its lock was killed", func() error {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil // gone
		}
		if f := strings.Fields(string(b)); len(f) > 2 && f[2] == "Z" {
			return nil // ended, not yet reaped
		}
		return fmt.Errorf("pid %d still runs: %s", pid, b)
	})
}
