package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testcluster"
	"github.com/raftkv/raftkv/internal/testwait"
)

// TestCommandsAgainstCluster runs every client command in-process against
// a three-node in-process cluster and pins its output in both formats
// and its exit code.
func TestCommandsAgainstCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := testcluster.Start(t, 3)
	var urls []string
	for i := range 3 {
		urls = append(urls, c.URL(i))
	}
	env := map[string]string{envEndpoints: strings.Join(urls, ",")}
	// run fails the test unless the command exits with want.
	run := func(t *testing.T, want int, stdin string, args ...string) cliResult {
		t.Helper()
		r := cli(env, stdin, args...)
		if r.code != want {
			t.Fatalf("raftkv %s: exit %d, want %d\nstdout %q\nstderr %q", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
		}
		return r
	}
	decode := func(t *testing.T, s string, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(s), v); err != nil {
			t.Fatalf("-o json printed %q: %v", s, err)
		}
	}

	t.Run("put get del", func(t *testing.T) {
		r := run(t, 0, "", "put", "color", "blue")
		if !regexp.MustCompile(`^OK index \d+\n$`).MatchString(r.stdout) {
			t.Errorf("put printed %q", r.stdout)
		}
		if r := run(t, 0, "", "get", "color"); r.stdout != "blue" {
			t.Errorf("get printed %q, want the raw value and no newline (not a terminal)", r.stdout)
		}
		var kv map[string]any
		decode(t, run(t, 0, "", "get", "color", "-o", "json", "--consistency", "leader").stdout, &kv)
		if kv["key"] != "color" || kv["value"] != "blue" || kv["mod_index"] == nil || kv["create_index"] == nil || kv["ttl"] != nil {
			t.Errorf("get -o json = %v", kv)
		}
		r = run(t, exitNotFound, "", "get", "missing")
		if r.stdout != "" || !strings.Contains(r.stderr, `raftkv get: key not found: "missing" (404 key_not_found from http://`) {
			t.Errorf("get missing: stdout %q stderr %q", r.stdout, r.stderr)
		}
		// Binary from stdin; -o json gives it as base64.
		run(t, 0, "\xff\xfe", "put", "bin")
		if r := run(t, 0, "", "get", "bin"); r.stdout != "\xff\xfe" {
			t.Errorf("get bin = %q", r.stdout)
		}
		kv = nil
		decode(t, run(t, 0, "", "get", "bin", "-o", "json").stdout, &kv)
		if kv["value_base64"] != "//4=" || kv["value"] != nil {
			t.Errorf("get bin -o json = %v", kv)
		}
		run(t, 0, "from stdin", "put", "dash", "-")
		if r := run(t, 0, "", "get", "dash"); r.stdout != "from stdin" {
			t.Errorf("put KEY - read %q", r.stdout)
		}
		// CAS: a stale mod_index is exit 4 and changes nothing.
		var w indexJSON
		decode(t, run(t, 0, "", "put", "cas", "1", "--cas", "0", "-o", "json").stdout, &w)
		r = run(t, exitCompareFailed, "", "put", "cas", "2", "--cas", strconv.FormatUint(w.Index+100, 10))
		if !strings.Contains(r.stderr, "cas_failed") {
			t.Errorf("cas stderr %q", r.stderr)
		}
		run(t, exitCompareFailed, "", "put", "cas", "2", "--cas", "0")
		if r := run(t, 0, "", "get", "cas"); r.stdout != "1" {
			t.Errorf("after failed CAS: %q", r.stdout)
		}
		run(t, 0, "", "put", "cas", "3", "--cas", strconv.FormatUint(w.Index, 10))
		run(t, 0, "", "put", "ttl", "x", "--ttl", "30s")
		kv = nil
		decode(t, run(t, 0, "", "get", "ttl", "-o", "json").stdout, &kv)
		if ttl, _ := kv["ttl"].(float64); ttl <= 0 || ttl > 30000 || kv["lease"] == nil {
			t.Errorf("a TTL key: %v", kv)
		}

		run(t, 0, "", "del", "color")
		run(t, exitNotFound, "", "del", "color")
		run(t, exitNotFound, "", "get", "color")
	})

	t.Run("ls", func(t *testing.T) {
		for _, k := range []string{"u/1/name", "u/1/mail", "u/2/name", "v"} {
			run(t, 0, "", "put", k, "val-"+k)
		}
		r := run(t, 0, "", "ls", "u/")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "KEY") || !strings.HasPrefix(lines[1], "u/1/mail") || !strings.Contains(lines[1], "val-u/1/mail") {
			t.Errorf("ls table:\n%s", r.stdout)
		}
		if r := run(t, 0, "", "ls", "u/", "--keys"); r.stdout != "u/1/mail\nu/1/name\nu/2/name\n" {
			t.Errorf("ls --keys = %q", r.stdout)
		}
		var l listJSON
		decode(t, run(t, 0, "", "ls", "u/", "--separator", "/", "-o", "json").stdout, &l)
		if len(l.Items) != 0 || strings.Join(l.Prefixes, ",") != "u/1/,u/2/" || l.Index == 0 {
			t.Errorf("ls --separator -o json = %+v", l)
		}
		// Shell completion of a key: keys and next-level prefixes.
		if r := run(t, 0, "", "__complete", "get", "u/"); !strings.HasPrefix(r.stdout, "u/1/\nu/2/\n:") {
			t.Errorf("completing get u/ = %q", r.stdout)
		}
		if r := run(t, 0, "", "__complete", "ls", "u/1/"); !strings.HasPrefix(r.stdout, "u/1/mail\nu/1/name\n:") {
			t.Errorf("completing ls u/1/ = %q", r.stdout)
		}
		var dj deletedJSON
		decode(t, run(t, 0, "", "del", "--prefix", "u/", "-o", "json").stdout, &dj)
		if dj.Deleted != 3 || dj.Prefix != "u/" {
			t.Errorf("del --prefix = %+v", dj)
		}
		if r := run(t, 0, "", "ls", "u/"); r.stdout != "" {
			t.Errorf("ls after del --prefix = %q, want nothing", r.stdout)
		}
	})

	t.Run("txn", func(t *testing.T) {
		run(t, 0, "", "put", "acct/a", "100")
		txn := `{"compare":[{"key":"acct/a","target":"value","op":"=","value":"100"}],
			"success":[{"op":"put","key":"acct/a","value":"60"},{"op":"put","key":"acct/b","value":"40"}],
			"failure":[{"op":"get","key":"acct/a"}]}`
		r := run(t, 0, txn, "txn")
		if !strings.HasPrefix(r.stdout, "SUCCEEDED index ") || !strings.Contains(r.stdout, "\nput acct/b index ") {
			t.Errorf("txn printed %q", r.stdout)
		}
		file := filepath.Join(t.TempDir(), "t.json")
		if err := os.WriteFile(file, []byte(txn), 0o600); err != nil {
			t.Fatal(err)
		}
		r = run(t, exitCompareFailed, "", "txn", "-f", file, "-o", "json")
		var res struct {
			Succeeded bool `json:"succeeded"`
			Results   []struct {
				Value string `json:"value"`
			} `json:"results"`
		}
		decode(t, r.stdout, &res)
		if res.Succeeded || len(res.Results) != 1 || res.Results[0].Value != "60" {
			t.Errorf("failed txn -o json = %s", r.stdout)
		}
	})

	t.Run("lease", func(t *testing.T) {
		var l leaseJSON
		decode(t, run(t, 0, "", "lease", "grant", "30s", "-o", "json").stdout, &l)
		if l.ID == 0 || l.TTL != 30000 {
			t.Fatalf("lease grant -o json = %+v", l)
		}
		id := strconv.FormatUint(l.ID, 10)
		run(t, 0, "", "put", "svc/1", "up", "--lease", id)
		decode(t, run(t, 0, "", "lease", "show", id, "-o", "json").stdout, &l)
		if l.KeyCount != 1 || len(l.Keys) != 1 || l.Keys[0] != "svc/1" || l.GrantedTTL != 30000 {
			t.Errorf("lease show -o json = %+v", l)
		}
		if r := run(t, 0, "", "lease", "keepalive", id, "--once"); !strings.HasPrefix(r.stdout, "lease "+id+" refreshed, TTL 30s") {
			t.Errorf("keepalive --once printed %q", r.stdout)
		}
		if r := run(t, 0, "", "lease", "revoke", id); r.stdout != "lease "+id+" revoked, 1 keys deleted\n" {
			t.Errorf("revoke printed %q", r.stdout)
		}
		run(t, exitNotFound, "", "get", "svc/1")
		run(t, exitNotFound, "", "lease", "show", id)
		run(t, exitNotFound, "", "lease", "keepalive", id)
		run(t, exitNotFound, "", "put", "svc/2", "up", "--lease", id)
	})

	t.Run("lock", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "token")
		// The command runs with the token and its status is lock's.
		run(t, 7, "", "lock", "job", "--", "sh", "-c", `echo "$RAFTKV_LOCK_NAME $RAFTKV_LOCK_TOKEN $RAFTKV_LOCK_LEASE" > "$0"; exit 7`, out)
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(b))
		if len(f) != 3 || f[0] != "job" || f[1] == "0" || f[2] == "0" {
			t.Fatalf("the command saw %q", b)
		}
		// Released afterwards: its lease is revoked.
		lease, _ := strconv.ParseUint(f[2], 10, 64)
		run(t, exitNotFound, "", "lease", "show", f[2])

		// Held by someone else: exit 5 and the command does not run.
		cl, err := client.New(urls)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		other, err := cl.Grant(ctx, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		token, err := cl.Lock(ctx, "job", other.ID, 0)
		if err != nil || token == lease {
			t.Fatalf("lock by another holder: %d, %v", token, err)
		}
		marker := filepath.Join(dir, "ran")
		r := run(t, exitLockHeld, "", "lock", "--wait", "0", "job", "touch", marker)
		if !strings.Contains(r.stderr, "lock_held") {
			t.Errorf("stderr %q", r.stderr)
		}
		start := time.Now()
		run(t, exitLockHeld, "", "lock", "--wait", "300ms", "job", "--", "touch", marker)
		if waited := time.Since(start); waited < 300*time.Millisecond {
			t.Errorf("--wait 300ms gave up after %v", waited)
		}
		if _, err := os.Stat(marker); !os.IsNotExist(err) {
			t.Errorf("the command ran without the lock (%v)", err)
		}
		// A waiting lock gets it once the holder's lease expires: hand
		// the lock to a lease of 1 s that nobody keeps alive.
		if err := cl.Unlock(ctx, "job", token); err != nil {
			t.Fatal(err)
		}
		short, err := cl.Grant(ctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Lock(ctx, "job", short.ID, 0); err != nil {
			t.Fatal(err)
		}
		run(t, 0, "", "lock", "--wait", "10s", "job", "touch", marker)
		if _, err := os.Stat(marker); err != nil {
			t.Errorf("the command did not run after the lock was freed: %v", err)
		}
	})

	t.Run("lease lost under keepalive and lock", func(t *testing.T) {
		cl, err := client.New(urls)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()

		// keepalive runs until the lease is gone, then exits 3.
		l, err := cl.Grant(ctx, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan cliResult, 1)
		go func() { done <- cli(env, "", "lease", "keepalive", strconv.FormatUint(l.ID, 10)) }()
		testwait.For(t, 5*time.Second, "keepalive to refresh the lease", func() error {
			info, err := cl.LeaseInfo(ctx, l.ID)
			if err == nil && info.TTL <= 0 {
				err = fmt.Errorf("lease %d: %+v", l.ID, info)
			}
			return err
		})
		if _, err := cl.Revoke(ctx, l.ID); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-done:
			if r.code != exitNotFound || !strings.Contains(r.stderr, "lease_not_found") {
				t.Errorf("keepalive after the revoke: exit %d, stderr %q", r.code, r.stderr)
			}
		case <-ctx.Done():
			t.Fatal("keepalive did not end within 20 s of the revoke")
		}

		// lock whose lease is revoked under it stops its command with
		// SIGTERM and says so.
		leaseFile := filepath.Join(t.TempDir(), "lease")
		go func() {
			done <- cli(env, "", "lock", "--ttl", "3s", "lost", "--", "sh", "-c", `echo "$RAFTKV_LOCK_LEASE" > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 30`, leaseFile)
		}()
		var id uint64
		testwait.For(t, 10*time.Second, "the locked command to start", func() error {
			b, err := os.ReadFile(leaseFile)
			if err == nil {
				id, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
			}
			return err
		})
		if _, err := cl.Revoke(ctx, id); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-done:
			if r.code != 128+15 || !strings.Contains(r.stderr, `lost the lock "lost"`) {
				t.Errorf("lock after its lease was revoked: exit %d, stderr %q stdout %q; want 143 (SIGTERM) and the reason", r.code, r.stderr, r.stdout)
			}
		case <-ctx.Done():
			t.Fatal("lock's command was not stopped within 20 s of losing the lock")
		}
	})

	t.Run("members and status", func(t *testing.T) {
		r := run(t, 0, "", "members")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID ") || strings.Count(r.stdout, "Leader") != 1 {
			t.Errorf("members table:\n%s", r.stdout)
		}
		var ms []struct {
			ID          string  `json:"id"`
			RaftAddr    string  `json:"raft_addr"`
			HTTPAddr    string  `json:"http_addr"`
			Voter       bool    `json:"voter"`
			Leader      bool    `json:"leader"`
			Term        *uint64 `json:"term"`
			CommitIndex *uint64 `json:"commit_index"`
		}
		decode(t, run(t, 0, "", "members", "-o", "json").stdout, &ms)
		leaders := 0
		for _, m := range ms {
			if m.Leader {
				leaders++
			}
			if !m.Voter || m.RaftAddr == "" || m.HTTPAddr == "" || m.Term == nil || *m.Term == 0 || m.CommitIndex == nil {
				t.Errorf("member %+v", m)
			}
		}
		if len(ms) != 3 || leaders != 1 {
			t.Errorf("members -o json: %d members, %d leaders", len(ms), leaders)
		}
		var follower string
		for _, m := range ms {
			if !m.Leader {
				follower = m.ID
			}
		}
		var ch changeJSON
		decode(t, run(t, 0, "", "members", "transfer", follower, "-o", "json").stdout, &ch)
		if ch.Change != "transferred" || ch.Leader != follower {
			t.Errorf("members transfer %s -o json = %+v", follower, ch)
		}
		run(t, exitNotFound, "", "members", "transfer", "n9")
		run(t, exitNotFound, "", "members", "remove", "n9")
		run(t, exitNotFound, "", "members", "promote", "n9")

		r = run(t, 0, "", "status")
		if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 4 || strings.Contains(lines[0], "ERROR") {
			t.Errorf("status table:\n%s", r.stdout)
		}
		closed := closedEndpoint(t)
		r = run(t, exitError, "", "status", "--endpoints", urls[0]+","+closed, "--timeout", "3s")
		if !strings.Contains(r.stdout, "ERROR") || !strings.Contains(r.stdout, closed) || !strings.Contains(r.stderr, "1 of 2 endpoints did not answer") {
			t.Errorf("status with a dead endpoint:\nstdout %s\nstderr %s", r.stdout, r.stderr)
		}
		var sts []statusJSON
		decode(t, run(t, 0, "", "status", "--cluster", "--endpoints", urls[1], "-o", "json").stdout, &sts)
		if len(sts) != 3 {
			t.Fatalf("status --cluster: %d rows", len(sts))
		}
		for _, s := range sts {
			var st struct {
				ID    string `json:"id"`
				State string `json:"state"`
			}
			if err := json.Unmarshal(s.Status, &st); err != nil || st.ID == "" || st.State == "" {
				t.Errorf("status row %s: %s (%v)", s.Endpoint, s.Status, err)
			}
		}
	})

	t.Run("backup and online restore", func(t *testing.T) {
		run(t, 0, "", "put", "kept", "1")
		file := filepath.Join(t.TempDir(), "b.snap")
		var bj backupJSON
		decode(t, run(t, 0, "", "backup", file, "-o", "json").stdout, &bj)
		if st, err := os.Stat(file); err != nil || st.Size() != bj.Bytes || bj.Keys == 0 || bj.Index == 0 || len(bj.SHA256) != 64 {
			t.Fatalf("backup: %+v, file %v", bj, err)
		}
		run(t, 0, "", "put", "later", "1")
		run(t, 0, "", "put", "kept", "2")
		r := run(t, 0, "", "restore", "--online", file)
		if !strings.HasPrefix(r.stdout, fmt.Sprintf("restored %d keys", bj.Keys)) {
			t.Errorf("restore printed %q", r.stdout)
		}
		run(t, exitNotFound, "", "get", "later")
		if r := run(t, 0, "", "get", "kept"); r.stdout != "1" {
			t.Errorf("kept after restore = %q, want the backup's 1", r.stdout)
		}
		// A failed backup leaves no file behind.
		bad := filepath.Join(t.TempDir(), "bad.snap")
		run(t, exitError, "", "backup", bad, "--endpoints", closedEndpoint(t), "--timeout", "2s")
		if entries, _ := os.ReadDir(filepath.Dir(bad)); len(entries) != 0 {
			t.Errorf("a failed backup left %v", entries)
		}
	})

	t.Run("watch", func(t *testing.T) {
		var w indexJSON
		decode(t, run(t, 0, "", "put", "w/a", "1", "-o", "json").stdout, &w)
		run(t, 0, "", "put", "w/b", "2")
		run(t, 0, "", "del", "w/a")
		from := strconv.FormatUint(w.Index-1, 10)
		r := run(t, 0, "", "watch", "w/", "--index", from, "--count", "3")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 3 || !regexp.MustCompile(`^\d+\.\d+ put w/a 1$`).MatchString(lines[0]) ||
			!strings.HasSuffix(lines[1], " put w/b 2") || !strings.HasSuffix(lines[2], " delete w/a") {
			t.Errorf("watch printed:\n%s", r.stdout)
		}
		r = run(t, 0, "", "watch", "w/", "--index", from, "--count", "1", "-o", "json")
		var ev eventJSON
		decode(t, r.stdout, &ev)
		if ev.Type != "put" || ev.Key != "w/a" || ev.Value == nil || *ev.Value != "1" || ev.Index != w.Index || ev.ModIndex != w.Index {
			t.Errorf("watch -o json = %s", r.stdout)
		}
	})

	t.Run("endpoints from flag and environment", func(t *testing.T) {
		closed := closedEndpoint(t)
		_, port, _ := strings.Cut(strings.TrimPrefix(urls[0], "http://"), ":")
		run(t, 0, "", "put", "where", "here")
		get := []string{"get", "where", "--timeout", "2s"}
		cases := []struct {
			name string
			env  map[string]string
			args []string
			code int
		}{
			{"env", map[string]string{envEndpoints: urls[1]}, get, 0},
			{"flag wins over env", map[string]string{envEndpoints: closed}, append([]string{"--endpoints", urls[2]}, get...), 0},
			{"flag after the command", map[string]string{envEndpoints: closed}, append(get, "--endpoints="+urls[2]), 0},
			{"env wins over HTTP_SERVER_PORT", map[string]string{envEndpoints: closed, "HTTP_SERVER_PORT": port}, get, exitError},
			{"HTTP_SERVER_PORT", map[string]string{"HTTP_SERVER_PORT": port}, get, 0},
			{"bare host:port and a dead one first", map[string]string{envEndpoints: closed + "," + strings.TrimPrefix(urls[0], "http://")}, get, 0},
		}
		for _, tc := range cases {
			r := cli(tc.env, "", tc.args...)
			if r.code != tc.code || (tc.code == 0 && r.stdout != "here") {
				t.Errorf("%s: exit %d stdout %q stderr %q; want exit %d", tc.name, r.code, r.stdout, r.stderr, tc.code)
			}
		}
	})
}

// TestTLSAndToken: against a node with HTTPS, client certificates
// required and tokens, the certificate files and the token come from the
// flags or from RAFTKV_CACERT, RAFTKV_CERT, RAFTKV_KEY and RAFTKV_TOKEN;
// without the token the answer is 401 (exit 1), and a bare host:port
// endpoint means https once a certificate is given.
func TestTLSAndToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	const admin, reader = "cli-test-admin-token-0123456789", "cli-test-read-token-0123456789"
	if err := os.WriteFile(tokens, []byte(admin+" admin\n"+reader+" read\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := testcluster.Start(t, 1, testcluster.WithTLS(), testcluster.WithAuthTokensFile(tokens))
	files := c.CA().Issue(t, "raftkv cli").Write(t, dir, "cli", c.CA())
	hostPort := strings.TrimPrefix(c.URL(0), "https://")

	env := map[string]string{envEndpoints: hostPort, envCACert: files.CA, envCert: files.Cert, envKey: files.Key, envToken: admin}
	if r := cli(env, "", "put", "k", "v"); r.code != 0 {
		t.Fatalf("put with the environment: exit %d, stderr %q", r.code, r.stderr)
	}
	flags := []string{"--endpoints", c.URL(0), "--cacert", files.CA, "--cert", files.Cert, "--key", files.Key, "--token", reader}
	if r := cli(nil, "", append([]string{"get", "k"}, flags...)...); r.code != 0 || r.stdout != "v" {
		t.Errorf("get with the flags: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// The read token may not write: 403.
	if r := cli(nil, "", append([]string{"put", "k", "w"}, flags...)...); r.code != exitError || !strings.Contains(r.stderr, "403 forbidden") {
		t.Errorf("put with a read token: exit %d, stderr %q", r.code, r.stderr)
	}
	noToken := map[string]string{envEndpoints: hostPort, envCACert: files.CA, envCert: files.Cert, envKey: files.Key}
	if r := cli(noToken, "", "get", "k"); r.code != exitError || !strings.Contains(r.stderr, "401 unauthorized") {
		t.Errorf("get without a token: exit %d, stderr %q", r.code, r.stderr)
	}
	// A flag wins over its variable: a wrong token in the environment,
	// the right one on the command line.
	wrong := map[string]string{envEndpoints: hostPort, envCACert: files.CA, envCert: files.Cert, envKey: files.Key, envToken: "not-a-valid-token-at-all"}
	if r := cli(wrong, "", "get", "k", "--token", reader); r.code != 0 {
		t.Errorf("--token over RAFTKV_TOKEN: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := cli(map[string]string{envEndpoints: hostPort, envCACert: filepath.Join(dir, "missing.pem")}, "", "get", "k"); r.code != exitUsage {
		t.Errorf("a missing CA file: exit %d, want 2; stderr %q", r.code, r.stderr)
	}
}

// minWatchHistory is a history short enough to outrun with a few puts.
const minWatchHistory = 8

// TestWatchHistoryCompacted: a watch from a position the node no longer
// keeps history for exits 1 with the server's reason and what to do.
func TestWatchHistoryCompacted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := testcluster.Start(t, 1, testcluster.WithWatchHistory(minWatchHistory))
	env := map[string]string{envEndpoints: c.URL(0)}
	for i := range minWatchHistory + 20 {
		if r := cli(env, "", "put", "h/"+strconv.Itoa(i), "x"); r.code != 0 {
			t.Fatalf("put: exit %d, stderr %q", r.code, r.stderr)
		}
	}
	r := cli(env, "", "watch", "h/", "--index", "1", "--count", "1")
	if r.code != exitError || !strings.Contains(r.stderr, "history_compacted") || !strings.Contains(r.stderr, "list again, then watch") || r.stdout != "" {
		t.Errorf("watch from a compacted position: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
