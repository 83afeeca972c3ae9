package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

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
