// Package integration holds raftkv's in-process cluster tests: real nodes
// and HTTP APIs on loopback, started by internal/testcluster, driven only
// through the HTTP API (and read-only node accessors for assertions).
package integration
