package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

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
