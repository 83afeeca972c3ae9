package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
)

// runCLI runs the binary with args in an empty working directory, with the
// base environment and free ports (so a binary that wrongly starts a node
// harms nothing), and returns the exit code, stdout, stderr and whether it
// left anything in that directory. A run that does not exit within the
// bound fails the test: it started a node.
func runCLI(t *testing.T, bin string, args ...string) (code int, stdout, stderr string, created []string) {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(proc.BaseEnv(), fmt.Sprintf("HTTP_SERVER_PORT=%d", ports[0]), fmt.Sprintf("RAFT_SERVER_PORT=%d", ports[1]))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("raftkv %s did not exit within 10s (it started a node?); stderr:\n%s", strings.Join(args, " "), errb.String())
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		created = append(created, e.Name())
	}
	return code, out.String(), errb.String(), created
}

// TestCLIHelpAndVersionStartNothing: help and version print and exit 0,
// mistakes print usage on stderr and exit 2; none of them starts a node or
// creates ./data.
func TestCLIHelpAndVersionStartNothing(t *testing.T) {
	bin := raftkvBinary(t)
	commit := builtCommit(t, bin)
	cases := []struct {
		args       []string
		code       int
		stdoutHas  string
		stderrHas  string
		stdoutNone bool
	}{
		{args: []string{"--help"}, stdoutHas: "docs/configuration.md"},
		{args: []string{"-h"}, stdoutHas: "docs/configuration.md"},
		{args: []string{"help"}, stdoutHas: "RAFT_BOOTSTRAP_EXPECT"},
		{args: []string{"version"}, stdoutHas: "raftkv "},
		{args: []string{"--version"}, stdoutHas: "raftkv "},
		{args: []string{"restore", "--help"}, stdoutHas: "usage: raftkv restore"},
		{args: []string{"healthcheck", "--help"}, stdoutHas: "usage: raftkv healthcheck"},
		{args: []string{"healthcheck", "-h"}, stdoutHas: "usage: raftkv healthcheck"},
		{args: []string{"start"}, code: 2, stderrHas: `unknown command "start"`, stdoutNone: true},
		{args: []string{"--verbose"}, code: 2, stderrHas: "unknown flag: --verbose", stdoutNone: true},
		{args: []string{"--endpoints", "127.0.0.1:1"}, code: 2, stderrHas: "flags need a command", stdoutNone: true},
		{args: []string{"serve", "--help"}, stdoutHas: "usage: raftkv serve"},
		{args: []string{"completion", "bash"}, stdoutHas: "bash completion"},
		{args: []string{"restore", "--bogus"}, code: 2, stderrHas: "usage: raftkv restore", stdoutNone: true},
		{args: []string{"healthcheck", "--bogus"}, code: 2, stderrHas: "usage: raftkv healthcheck", stdoutNone: true},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr, created := runCLI(t, bin, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if len(created) > 0 {
				t.Errorf("created %v in the working directory; want nothing", created)
			}
			if !strings.Contains(stdout, tc.stdoutHas) {
				t.Errorf("stdout %q lacks %q", stdout, tc.stdoutHas)
			}
			if !strings.Contains(stderr, tc.stderrHas) {
				t.Errorf("stderr %q lacks %q", stderr, tc.stderrHas)
			}
			if tc.stdoutNone && stdout != "" {
				t.Errorf("stdout %q, want nothing (usage goes to stderr on a mistake)", stdout)
			}
			if tc.args[0] == "version" || tc.args[0] == "--version" {
				if want := "commit " + commit; !strings.Contains(stdout, want) {
					t.Errorf("version %q lacks %q (go version -m)", stdout, want)
				}
			}
		})
	}
}

// builtCommit is the commit the toolchain recorded in bin (go version -m),
// or "unknown" when it recorded none (GOFLAGS=-buildvcs=false, no checkout).
func builtCommit(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 && strings.HasPrefix(f[1], "vcs.revision=") {
			return strings.TrimPrefix(f[1], "vcs.revision=")
		}
	}
	return "unknown"
}
