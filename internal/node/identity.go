package node

// Cluster identity (etcd's cluster id). A cluster gets its id when it is
// bootstrapped: a random one on a node that bootstraps alone, or, with
// RAFT_BOOTSTRAP_EXPECT, one derived from the sorted bootstrap
// configuration, so every node of it computes the same id without talking.
// A node that is joined learns the id from its leader (cluster's
// retry-join) and keeps it in its stable store; it never changes after.
// Every node-to-node HTTP call carries it, and a node that has an id
// refuses a call that carries another one.
//
// A volume from a build without cluster ids has none until its leader
// (which has none either) is upgraded; such a node accepts every call, as
// before.

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// stableKeyClusterID is where the stable store keeps the cluster id.
var stableKeyClusterID = []byte("raftkv_cluster_id")

// ClusterIDLen is the length of a cluster id: 16 hex digits.
const ClusterIDLen = 16

// newClusterID is a random id, for a cluster bootstrapped by one node.
func newClusterID() string {
	b := make([]byte, ClusterIDLen/2)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// DeriveClusterID is the id of a cluster bootstrapped with servers: the
// same list (in any order) gives the same id on every node.
func DeriveClusterID(servers []Server) string {
	servers = slices.Clone(servers)
	slices.SortFunc(servers, func(a, b Server) int { return cmp.Compare(a.ID, b.ID) })
	var b strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&b, "%s=%s\n", s.ID, s.RaftAddr)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:ClusterIDLen/2])
}

// ValidClusterID reports whether id has the form of a cluster id.
func ValidClusterID(id string) bool {
	if len(id) != ClusterIDLen {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// loadClusterID reads the id from the stable store ("" if none yet).
func (n *Node) loadClusterID() error {
	v, err := n.stable.Get(stableKeyClusterID)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("read cluster id: %w", err)
	}
	n.clusterID.Store(string(v))
	return nil
}

// isNotFound: the bolt store answers a missing stable key with an error,
// the wal store with an empty value; both mean "not set".
func isNotFound(err error) bool { return errors.Is(err, raftboltdb.ErrKeyNotFound) }

// ClusterID is the id of the cluster this node belongs to, "" while it
// has none (not joined yet, or a volume from before cluster ids).
func (n *Node) ClusterID() string {
	v, _ := n.clusterID.Load().(string)
	return v
}

// AdoptClusterID records id as this node's cluster id if it has none. A
// node that already has an id keeps it: an id never changes, and asking
// to adopt a different one is ErrOtherCluster.
func (n *Node) AdoptClusterID(id string) error {
	n.clusterIDMu.Lock()
	defer n.clusterIDMu.Unlock()
	switch cur := n.ClusterID(); {
	case !ValidClusterID(id):
		return fmt.Errorf("cluster id %q is not %d hex digits", id, ClusterIDLen)
	case cur == id:
		return nil
	case cur != "":
		return fmt.Errorf("this node belongs to cluster %s, not %s: %w", cur, id, ErrOtherCluster)
	}
	if err := n.stable.Set(stableKeyClusterID, []byte(id)); err != nil {
		return fmt.Errorf("store cluster id: %w", err)
	}
	n.clusterID.Store(id)
	n.log.WithField("cluster_id", id).Info("cluster id recorded")
	return nil
}

// JoinerState is what a node about to be joined says about itself over
// the Raft transport (ProbeJoiner).
type JoinerState struct {
	ID      string // the server id it runs under
	Term    uint64 // its current term: 0 on a node that never had state
	LastLog uint64 // its last log index
}

// HasState reports whether the joiner has ever been part of a cluster.
func (j JoinerState) HasState() bool { return j.Term > 0 || j.LastLog > 0 }

// probeTimeout bounds ProbeJoiner when ctx has no earlier deadline.
const probeTimeout = 2e9 // 2 s

// ProbeJoiner asks the node at raftAddr, over the Raft transport, for its
// server id, term and last log index before it is added. The probe is an
// AppendEntries with term 0 and no entries: a node with any state answers
// its own term and ignores it; a node without state (term 0) records this
// node as its leader and appends nothing, which is what the join that
// follows does anyway. A node that does not answer in time is
// ErrJoinerUnreachable.
func (n *Node) ProbeJoiner(ctx context.Context, raftAddr string) (JoinerState, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{
			ProtocolVersion: raft.ProtocolVersionMax,
			ID:              []byte(n.cfg.ID),
			Addr:            n.transport.EncodePeer(raft.ServerID(n.cfg.ID), n.transport.LocalAddr()),
		},
	}
	type answer struct {
		resp raft.AppendEntriesResponse
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		var a answer
		a.err = n.transport.AppendEntries("", raft.ServerAddress(raftAddr), req, &a.resp)
		done <- a
	}()
	select {
	case a := <-done:
		if a.err != nil {
			return JoinerState{}, fmt.Errorf("nothing answers on raft address %s (%v): %w", raftAddr, a.err, ErrJoinerUnreachable)
		}
		return JoinerState{ID: string(a.resp.ID), Term: a.resp.Term, LastLog: a.resp.LastLog}, nil
	case <-ctx.Done():
		return JoinerState{}, fmt.Errorf("no raft answer from %s in time: %w", raftAddr, ErrJoinerUnreachable)
	}
}
