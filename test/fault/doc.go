// Package fault is a Jepsen-style fault-injection suite for raftkv. Each
// scenario starts a three-node cluster of real raftkv processes, runs a
// concurrent client workload that records every operation (single-key
// registers, counters, a set, and a bank: transfers between a few accounts
// as transactions, read back with one range read), injects one fault
// (crash, pause, partition, hostile input), heals it, and then checks the
// history: linearizability per key with porcupine, the same total in every
// bank read, no lost or phantom writes, idempotent retries applied once,
// convergence of all replicas, recovery time, the error contract while
// there is no quorum, clean node logs, and the change feed: watchers that
// follow GET /watch/ through the fault, reconnecting anywhere with
// Last-Event-ID, each get exactly the committed changes in log order
// (watch_test.go).
//
// As root, every node runs in its own network namespace on a test-owned
// bridge, so partitions can drop packets between specific peers; otherwise
// the nodes share loopback and the partition scenarios are skipped.
//
// Environment: FAULT_SEED replays a run; FAULT_DURATION scales the load and
// fault phases (a factor, default 1); FAULT_SOAK=1 adds the long scenarios;
// FAULT_CAS=0 leaves compare-and-set and idempotency keys out of the
// workload (by default they are used, and required of the server), and
// with them the bank workload; FAULT_BANK=0 leaves the bank workload
// (transactions and range reads, see bank_test.go) out;
// FAULT_LOG_STORE sets every node's RAFT_LOG_STORE (boltdb or wal);
// FAULT_TOPOLOGY=loopback avoids namespaces even as root; FAULT_ARTIFACTS
// names where failure artifacts and summary.md go (default
// test-artifacts/fault in the repository); FAULT_KEEP=1 keeps the
// artifacts of passing scenarios too.
package fault
