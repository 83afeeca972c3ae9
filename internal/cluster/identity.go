package cluster

// Cluster identity on the wire, and the checks a leader makes before it
// admits a node (see DESIGN.md, "Cluster identity" and "Admitting a node").

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/raftkv/raftkv/internal/node"
)

// CheckClusterID refuses a node-to-node call from another cluster: the
// caller sent a cluster id, this node has one, and they differ
// (node.ErrOtherCluster). A call without the header (a client, or a node
// that has no id yet) passes.
func (c *Cluster) CheckClusterID(r *http.Request) error {
	theirs, ours := r.Header.Get(HeaderClusterID), c.node.ClusterID()
	if theirs == "" || ours == "" || theirs == ours {
		return nil
	}
	return fmt.Errorf("%w: this node is in cluster %s, the calling node in cluster %s", node.ErrOtherCluster, ours, theirs)
}

// CheckJoiner is what the leader does before /join adds id at raftAddr:
// it contacts the joiner, and refuses (changing nothing) one that
//
//   - does not answer on its Raft address, or on its API when its HTTP
//     address is known (node.ErrJoinerUnreachable);
//   - runs under another id (node.ErrJoinerMismatch);
//   - belongs to another cluster (node.ErrOtherCluster);
//   - holds Raft state of its own and is neither a member already (moving
//     to a new address) nor a former member of this cluster
//     (node.ErrJoinerHasState).
//
// httpAddr is the joiner's API address from the request; when empty, the
// one the cluster has registered for id is used. node.Join asks this only
// for a node that is not a member at raftAddr yet.
func (c *Cluster) CheckJoiner(ctx context.Context, id, raftAddr, httpAddr string) error {
	members, err := c.node.Members(ctx)
	if err != nil {
		return err
	}
	known := slices.ContainsFunc(members, func(m node.Member) bool { return m.ID == id })
	if httpAddr == "" {
		httpAddr, _ = c.node.FSM().NodeHTTPAddr(id) // registered earlier, if at all
	}
	st, err := c.node.ProbeJoiner(ctx, raftAddr)
	if err != nil {
		return fmt.Errorf("join %s: %w", id, err)
	}
	if st.ID != "" && st.ID != id {
		return fmt.Errorf("join %s: the node at raft address %s is %s: %w", id, raftAddr, st.ID, node.ErrJoinerMismatch)
	}
	sameCluster := false
	if httpAddr != "" {
		info, status, err := c.askInfo(ctx, httpAddr)
		if status == http.StatusConflict {
			// It has an id and refused ours (CheckClusterID).
			return fmt.Errorf("join %s: it refused this cluster's id: %w", id, node.ErrOtherCluster)
		}
		if err != nil {
			return fmt.Errorf("join %s: its API at %s does not answer (%v): %w", id, httpAddr, err, node.ErrJoinerUnreachable)
		}
		if info.ID != id || info.RaftAddr != raftAddr {
			return fmt.Errorf("join %s at %s: the node at %s is %s at %s: %w", id, raftAddr, httpAddr, info.ID, info.RaftAddr, node.ErrJoinerMismatch)
		}
		ours := c.node.ClusterID()
		if info.ClusterID != "" && ours != "" && info.ClusterID != ours {
			return fmt.Errorf("join %s: it belongs to cluster %s, this is cluster %s: %w", id, info.ClusterID, ours, node.ErrOtherCluster)
		}
		sameCluster = ours != "" && info.ClusterID == ours
	}
	if st.HasState() && !known && !sameCluster {
		how := "pass httpAddr= so the leader can check which cluster it belongs to"
		if httpAddr != "" {
			how = "it reports no cluster id of this cluster"
		}
		return fmt.Errorf("join %s: it already has a log of its own (term %d, last index %d), maybe of another cluster; %s: %w",
			id, st.Term, st.LastLog, how, node.ErrJoinerHasState)
	}
	return nil
}

// askInfo is one GET /internal/info, bounded by PeerInfoTimeout.
func (c *Cluster) askInfo(ctx context.Context, httpAddr string) (PeerInfo, int, error) {
	ctx, cancel := context.WithTimeout(ctx, PeerInfoTimeout)
	defer cancel()
	var in PeerInfo
	status, err := c.client.Call(ctx, http.MethodGet, httpAddr, PathInfo, &in)
	return in, status, err
}

// learnClusterID records the leader's cluster id on a member that has
// none yet (a node that was joined). It reports whether the node has an
// id afterwards.
func (c *Cluster) learnClusterID(ctx context.Context) bool {
	if c.node.ClusterID() != "" {
		return true
	}
	l, ok := c.node.Leader()
	if !ok || l.HTTPAddr == "" || l.ID == c.node.ID() {
		return false
	}
	info, _, err := c.askInfo(ctx, l.HTTPAddr)
	if err != nil || info.ClusterID == "" {
		return false // an older leader without an id: nothing to learn
	}
	if err := c.node.AdoptClusterID(info.ClusterID); err != nil {
		if errors.Is(err, node.ErrOtherCluster) {
			c.log.WithError(err).Error("the leader is in another cluster")
		}
		return false
	}
	return true
}
