package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
)

func TestCommand(t *testing.T) {
	cases := []struct {
		args         []string
		code         int
		exit         bool
		stdout       string
		stderr       string
		stdoutIsNone bool
	}{
		{args: nil, code: 0, exit: false, stdoutIsNone: true},
		{args: []string{"--help"}, exit: true, stdout: "docs/configuration.md"},
		{args: []string{"-h"}, exit: true, stdout: "HTTP_SERVER_PORT"},
		{args: []string{"help"}, exit: true, stdout: "usage: raftkv"},
		{args: []string{"version"}, exit: true, stdout: "raftkv "},
		{args: []string{"--version"}, exit: true, stdout: "raftkv "},
		{args: []string{"version", "x"}, code: 2, exit: true, stderr: "version takes no arguments", stdoutIsNone: true},
		{args: []string{"start"}, code: 2, exit: true, stderr: `unknown command "start"`, stdoutIsNone: true},
		{args: []string{"-v"}, code: 2, exit: true, stderr: "unknown flag -v", stdoutIsNone: true},
	}
	for _, tc := range cases {
		var out, errb bytes.Buffer
		code, exit := command(tc.args, &out, &errb)
		if code != tc.code || exit != tc.exit {
			t.Errorf("%q: (%d, %v), want (%d, %v)", tc.args, code, exit, tc.code, tc.exit)
		}
		if !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
			t.Errorf("%q: stdout %q stderr %q; want %q and %q in them", tc.args, out.String(), errb.String(), tc.stdout, tc.stderr)
		}
		if tc.stdoutIsNone && out.Len() > 0 {
			t.Errorf("%q: stdout %q, want none", tc.args, out.String())
		}
		if tc.code == 2 && !strings.Contains(errb.String(), "usage: raftkv") {
			t.Errorf("%q: stderr %q lacks the usage", tc.args, errb.String())
		}
	}
}

func TestFormatVersion(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/raftkv/raftkv", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}
	if got := formatVersion(bi); !strings.HasPrefix(got, "raftkv v1.2.3 commit abc123 (modified) go") {
		t.Errorf("formatVersion = %q", got)
	}
	bi.Settings = bi.Settings[:1]
	if got := formatVersion(bi); !strings.HasPrefix(got, "raftkv v1.2.3 commit abc123 go") {
		t.Errorf("unmodified: %q", got)
	}
	if got := formatVersion(&debug.BuildInfo{}); !strings.HasPrefix(got, "raftkv (devel) commit unknown go") {
		t.Errorf("no build info: %q", got)
	}
	if got := formatVersion(nil); !strings.HasPrefix(got, "raftkv (devel) commit unknown") {
		t.Errorf("nil: %q", got)
	}
}
