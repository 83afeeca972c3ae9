// Command raftkv is both halves of the store: with no arguments (or
// `raftkv serve`) it runs one node, configured by environment variables
// (docs/configuration.md); its other commands are the command-line client
// of a running cluster (docs/cli.md), built on package client.
//
// main only wires the process to run (root.go). The command tree lives in
// this package, one small file per command group (serve.go, restore.go,
// healthcheck.go, kv.go, watch.go, txn.go, lease.go, lock.go, cluster.go),
// rather than in an internal/cli package: nothing else imports it, the
// node's own commands (serve, the offline restore, healthcheck) already
// lived here, and the tests reach every command through run with their
// own streams and environment either way.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv))
}
