package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/client"
)

// closedEndpoint is a loopback address nothing listens on: a command
// that got past its usage checks fails there quickly instead of reaching
// a node that happens to run on the default port.
func closedEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// cli runs the command line args in-process with env as the whole
// environment and stdin as standard input. The node never starts: a run
// that would start it records that in nodeRan instead.
type cliResult struct {
	code           int
	stdout, stderr string
	nodeRan        bool
}

func cli(env map[string]string, stdin string, args ...string) cliResult {
	var out, errb bytes.Buffer
	var r cliResult
	a := &app{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, lookup: envMap(env)}
	a.node = func() error { r.nodeRan = true; return nil }
	r.code = a.execute(args)
	r.stdout, r.stderr = out.String(), errb.String()
	return r
}

// TestUsage pins the commands that print help or refuse their command
// line: the exit code, where the text goes, and that none of them runs
// the node or sends a request (the endpoint is closed; a request would be
// exit 1, not 0 or 2).
func TestUsage(t *testing.T) {
	env := map[string]string{envEndpoints: closedEndpoint(t)}
	cases := []struct {
		args     []string
		stdin    string
		code     int
		stdout   string // must contain
		stderr   string // must contain
		node     bool   // the node runs
		noStdout bool
	}{
		{args: nil, node: true},
		{args: []string{"serve"}, node: true},
		{args: []string{"--help"}, stdout: "docs/configuration.md"},
		{args: []string{"-h"}, stdout: "HTTP_SERVER_PORT"},
		{args: []string{"-help"}, stdout: "RAFT_BOOTSTRAP_EXPECT"},
		{args: []string{"help"}, stdout: "usage: raftkv"},
		{args: []string{"help", "get"}, stdout: "usage: raftkv get KEY"},
		{args: []string{"help", "lease", "grant"}, stdout: "usage: raftkv lease grant TTL"},
		{args: []string{"get", "--help"}, stdout: "--consistency"},
		{args: []string{"restore", "--help"}, stdout: "usage: raftkv restore"},
		{args: []string{"healthcheck", "--help"}, stdout: "usage: raftkv healthcheck"},
		{args: []string{"help", "healthcheck"}, stdout: "Exits 0 if URL answers 200"},
		{args: []string{"version"}, stdout: "raftkv "},
		{args: []string{"--version"}, stdout: "raftkv "},
		{args: []string{"-version"}, stdout: "raftkv "},
		{args: []string{"completion", "bash"}, stdout: "bash completion"},
		{args: []string{"help", "bogus"}, code: 2, stderr: `no help topic "bogus"`, noStdout: true},
		{args: []string{"version", "x"}, code: 2, stderr: "version takes no arguments", noStdout: true},
		{args: []string{"start"}, code: 2, stderr: `unknown command "start"`, noStdout: true},
		{args: []string{"-v"}, code: 2, stderr: "unknown shorthand flag: 'v'", noStdout: true},
		{args: []string{"--verbose"}, code: 2, stderr: "unknown flag: --verbose", noStdout: true},
		{args: []string{"--endpoints", "x"}, code: 2, stderr: "flags need a command: --endpoints", noStdout: true},
		{args: []string{"serve", "-o", "json"}, code: 2, stderr: "serve takes no flags", noStdout: true},
		{args: []string{"serve", "x"}, code: 2, stderr: "serve takes no arguments", noStdout: true},
		{args: []string{"get"}, code: 2, stderr: "get takes 1 argument(s): KEY", noStdout: true},
		{args: []string{"get", "a", "b"}, code: 2, stderr: "usage: raftkv get KEY", noStdout: true},
		{args: []string{"get", "k", "-o", "yaml"}, code: 2, stderr: `--output "yaml": want table or json`},
		{args: []string{"get", "k", "--timeout", "-1s"}, code: 2, stderr: "--timeout -1s"},
		{args: []string{"get", "k", "--consistency", "strong"}, code: 2, stderr: `--consistency "strong"`},
		{args: []string{"put"}, code: 2, stderr: "put takes KEY [VALUE|-]"},
		{args: []string{"put", "k", "v", "--ttl", "1s", "--lease", "3"}, code: 2, stderr: "--ttl and --lease exclude each other"},
		{args: []string{"put", "k", "v", "--ttl", "0s"}, code: 2, stderr: "--ttl 0s"},
		{args: []string{"put", "k", "v", "--cas", "x"}, code: 2, stderr: `invalid argument "x" for "--cas"`},
		{args: []string{"del", "--prefix", "--cas", "1", "p"}, code: 2, stderr: "--cas applies to one key"},
		{args: []string{"ls", "a", "b"}, code: 2, stderr: "at most one PREFIX"},
		{args: []string{"watch", "--count", "-1"}, code: 2, stderr: "--count -1"},
		{args: []string{"txn"}, stdin: `{"compar":[]}`, code: 2, stderr: `unknown field "compar"`},
		{args: []string{"txn"}, stdin: `{"success":[{"op":"get","key":"a"}]} {}`, code: 2, stderr: "followed by more data"},
		{args: []string{"txn"}, stdin: ``, code: 2, stderr: "the input is empty"},
		{args: []string{"txn", "extra"}, code: 2, stderr: "txn takes no arguments"},
		{args: []string{"lease"}, code: 2, stderr: "lease needs a command"},
		{args: []string{"lease", "bogus"}, code: 2, stderr: `unknown command "bogus"`},
		{args: []string{"lease", "grant", "soon"}, code: 2, stderr: `TTL "soon"`},
		{args: []string{"lease", "show", "abc"}, code: 2, stderr: `lease id "abc"`},
		{args: []string{"lease", "revoke", "0"}, code: 2, stderr: `lease id "0"`},
		{args: []string{"lock", "name"}, code: 2, stderr: "lock takes NAME and a COMMAND"},
		{args: []string{"lock", "name", "--"}, code: 2, stderr: "lock takes NAME and a COMMAND"},
		{args: []string{"lock", "--ttl", "10ms", "name", "true"}, code: 2, stderr: "--ttl 10ms"},
		{args: []string{"members", "bogus"}, code: 2, stderr: `unknown command "bogus"`},
		{args: []string{"members", "add", "n4"}, code: 2, stderr: "add takes 2 argument(s): ID RAFTADDR"},
		{args: []string{"members", "transfer", "a", "b"}, code: 2, stderr: "at most one ID"},
		{args: []string{"restore", "--online", "--force", "f"}, code: 2, stderr: "--volume and --force are for the offline restore"},
		{args: []string{"restore", "--endpoints", "x", "f"}, code: 2, stderr: "--endpoints: only the online restore"},
		{args: []string{"restore", "-"}, code: 2, stderr: "the offline restore reads a FILE"},
		{args: []string{"restore", "--bogus"}, code: 2, stderr: "usage: raftkv restore"},
		{args: []string{"healthcheck", "--bogus"}, code: 2, stderr: "usage: raftkv healthcheck"},
		{args: []string{"get", "k", "--cert", "c.pem"}, code: 2, stderr: "--cert and --key"},
		{args: []string{"get", "k", "--endpoints", ","}, code: 2, stderr: "no endpoints"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := cli(env, tc.stdin, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\nstdout %q\nstderr %q", r.code, tc.code, r.stdout, r.stderr)
			}
			if r.nodeRan != tc.node {
				t.Errorf("node ran: %v, want %v", r.nodeRan, tc.node)
			}
			if !strings.Contains(r.stdout, tc.stdout) {
				t.Errorf("stdout %q lacks %q", r.stdout, tc.stdout)
			}
			if !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stderr %q lacks %q", r.stderr, tc.stderr)
			}
			if tc.noStdout && r.stdout != "" {
				t.Errorf("stdout %q, want none", r.stdout)
			}
			if tc.code == exitUsage && tc.args[0] != "healthcheck" && strings.Count(strings.TrimSpace(r.stderr), "\n") > 3 {
				t.Errorf("a mistake printed %d lines; want its error and the usage line:\n%s", strings.Count(r.stderr, "\n"), r.stderr)
			}
		})
	}
}

// TestExitCodeOfErrors pins the mapping of client errors to exit codes,
// and that every other error is 1.
func TestExitCodeOfErrors(t *testing.T) {
	cases := []struct {
		err  error
		code int
	}{
		{clientErr(404, "key_not_found"), exitNotFound},
		{clientErr(404, "lease_not_found"), exitNotFound},
		{clientErr(404, "node_not_found"), exitNotFound},
		{clientErr(409, "cas_failed"), exitCompareFailed},
		{clientErr(409, "lock_held"), exitLockHeld},
		{clientErr(409, "last_voter"), exitError},
		{clientErr(503, "no_leader"), exitError},
		{clientErr(401, "unauthorized"), exitError},
		{fmt.Errorf("wrapped: %w", clientErr(404, "key_not_found")), exitNotFound},
		{errors.New("disk full"), exitError},
	}
	for _, tc := range cases {
		if got := codeOf(tc.err); got != tc.code {
			t.Errorf("codeOf(%v) = %d, want %d", tc.err, got, tc.code)
		}
	}
}

func TestDescribe(t *testing.T) {
	err := clientErr(404, "key_not_found")
	if got, want := describe(err), `key not found: "k" (404 key_not_found from http://127.0.0.1:8000)`; got != want {
		t.Errorf("describe = %q, want %q", got, want)
	}
	if got, want := describe(fmt.Errorf("granting the lease: %w", err)), `granting the lease: key not found: "k" (404 key_not_found from http://127.0.0.1:8000)`; got != want {
		t.Errorf("describe of a wrapped error = %q, want %q", got, want)
	}
	if got := describe(errors.New("raftkv client: backup broke")); got != "backup broke" {
		t.Errorf("describe of a client's own error = %q", got)
	}
}

func TestPrintable(t *testing.T) {
	cases := []struct {
		in   string
		max  int
		want string
	}{
		{"blue", 0, "blue"},
		{"héllo wörld", 0, "héllo wörld"},
		{"a\nb", 0, `"a\nb"`},
		{"\xff\xfe", 0, `"\xff\xfe"`},
		{"abcdefgh", 5, "abcd…"},
		{"", 0, ""},
	}
	for _, tc := range cases {
		if got := printable([]byte(tc.in), tc.max); got != tc.want {
			t.Errorf("printable(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

func clientErr(status int, code string) *client.Error {
	return &client.Error{Status: status, Code: code, Message: `key not found: "k"`, Endpoint: "http://127.0.0.1:8000"}
}
