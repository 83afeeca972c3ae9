package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// usageText is what `raftkv --help` prints. The variables listed are the
// ones a first start needs; docs/configuration.md has all of them.
const usageText = `usage: raftkv [COMMAND]

Runs one node of a replicated key-value store, configured by environment
variables. With none set it serves a one-node store on 127.0.0.1:8000 and
keeps its data in ./data/n1.

Commands:
  (none)       run the node
  restore      write a backup into a volume, offline (raftkv restore --help)
  healthcheck  exit 0 if the node answers /ready (raftkv healthcheck --help)
  version      print the version and exit (also --version)
  help         print this text and exit (also -h, --help)

Main variables (all of them: docs/configuration.md):
  RAFT_NODE_ID           this node's id (default n1)
  HTTP_SERVER_PORT       HTTP API port (default 8000)
  RAFT_SERVER_PORT       Raft transport port (default 9000)
  RAFT_VOLUME_DIR        data directory (default ./data/$RAFT_NODE_ID)
  BIND_ADDR              IP both listeners bind to (default 127.0.0.1)
  ADVERTISE_ADDR         host other nodes and clients use (default BIND_ADDR)
  RAFT_BOOTSTRAP         form a one-node cluster on an empty volume (default
                         true unless RAFT_JOIN or RAFT_BOOTSTRAP_EXPECT is set)
  RAFT_JOIN              HTTP addresses of members to join (host:port or URL)
  RAFT_BOOTSTRAP_EXPECT  form a cluster once this many nodes see each other
  SHUTDOWN_TIMEOUT       bound on a graceful stop (default 10s)
  AUTH_TOKENS_FILE       bearer tokens; set: requests need a token
  TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE   HTTPS for the API
  LOG_LEVEL, LOG_FORMAT  info/debug/..., text or json
`

// command handles the arguments that do not run the node: help, version
// and mistakes. It returns the exit code and true when the process should
// exit with it; false means run the node (no arguments).
func command(args []string, stdout, stderr io.Writer) (int, bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return badUsage(stderr, "help takes no arguments")
		}
		fmt.Fprint(stdout, usageText)
		return 0, true
	case "version", "-version", "--version":
		if len(args) > 1 {
			return badUsage(stderr, "version takes no arguments")
		}
		fmt.Fprintln(stdout, versionLine())
		return 0, true
	}
	if strings.HasPrefix(args[0], "-") {
		return badUsage(stderr, fmt.Sprintf("unknown flag %s", args[0]))
	}
	return badUsage(stderr, fmt.Sprintf("unknown command %q", args[0]))
}

func badUsage(stderr io.Writer, msg string) (int, bool) {
	fmt.Fprintf(stderr, "raftkv: %s\n\n%s", msg, usageText)
	return 2, true
}

// versionLine names the module version and the VCS commit the binary was
// built from, as the Go toolchain recorded them. A build outside a module
// version (go build in a checkout) says "(devel)"; a build without VCS
// information (go build of a copied tree, -buildvcs=false) says so.
func versionLine() string {
	bi, _ := debug.ReadBuildInfo()
	return formatVersion(bi)
}

// formatVersion is versionLine for the given build information (nil: none).
func formatVersion(bi *debug.BuildInfo) string {
	version, commit, modified := "(devel)", "unknown", false
	if bi != nil {
		if v := bi.Main.Version; v != "" {
			version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if modified {
		commit += " (modified)"
	}
	return fmt.Sprintf("raftkv %s commit %s %s %s/%s", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
