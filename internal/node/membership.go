package node

// Membership: bootstrapping, the member list, and changing it (Join, Leave,
// Promote). Every change runs on the leader against its latest configuration.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/raft"
	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/fsm"
)

// Suffrage names as the API and the metrics show them. A learner is a
// raft non-voter; staging is a suffrage raft defines but does not use.
const (
	SuffrageVoter   = "voter"
	SuffrageLearner = "learner"
	SuffrageStaging = "staging"
)

// suffrageName is the name of a raft suffrage.
func suffrageName(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return SuffrageVoter
	case raft.Nonvoter:
		return SuffrageLearner
	}
	return SuffrageStaging
}

// Server is one voter of a cluster to bootstrap.
type Server struct {
	ID       string
	RaftAddr string
}

// HasState reports whether this node has any Raft state: a log entry or a
// snapshot, from a bootstrap, a join or an earlier run.
func (n *Node) HasState() bool { return n.raft.LastIndex() > 0 }

// Bootstrap forms a new cluster whose voters are servers (this node among
// them). Every node given the same servers may call it: hashicorp/raft
// accepts an identical bootstrap configuration on each, and the first
// election settles the rest. A node that already has state refuses with
// ErrAlreadyBootstrapped, so a restart can never fork the cluster.
func (n *Node) Bootstrap(ctx context.Context, servers []Server) error {
	servers = slices.Clone(servers)
	slices.SortFunc(servers, func(a, b Server) int { return cmp.Compare(a.ID, b.ID) })
	conf := raft.Configuration{}
	self := false
	for i, s := range servers {
		if i > 0 && servers[i-1].ID == s.ID {
			return fmt.Errorf("bootstrap: server id %s listed twice", s.ID)
		}
		self = self || s.ID == n.cfg.ID && s.RaftAddr == n.RaftAddr()
		conf.Servers = append(conf.Servers, raft.Server{
			Suffrage: raft.Voter, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.RaftAddr),
		})
	}
	if !self {
		return fmt.Errorf("bootstrap: this node (%s at %s) is not among the servers", n.cfg.ID, n.RaftAddr())
	}
	if n.HasState() {
		return ErrAlreadyBootstrapped
	}
	err := await(ctx, n.raft.BootstrapCluster(conf))
	if errors.Is(err, raft.ErrCantBootstrap) {
		return ErrAlreadyBootstrapped
	}
	if err != nil {
		return mapRaftError("bootstrap", err)
	}
	if err := n.AdoptClusterID(DeriveClusterID(servers)); err != nil {
		return err
	}
	n.log.WithFields(logrus.Fields{"servers": servers, "cluster_id": n.ClusterID()}).Info("bootstrapped a new cluster")
	return nil
}

// Member is one server of the Raft configuration, with its API address.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
	Voter    bool   `json:"voter"`
	Suffrage string `json:"suffrage"` // SuffrageVoter or SuffrageLearner
	Leader   bool   `json:"leader"`
}

// Members lists the latest Raft configuration known to this node, ordered
// by id.
func (n *Node) Members(ctx context.Context) ([]Member, error) {
	conf, err := n.configuration(ctx)
	if err != nil {
		return nil, err
	}
	_, leaderID := n.raft.LeaderWithID()
	addrs := n.fsm.Nodes()
	out := make([]Member, 0, len(conf.Servers))
	for _, s := range conf.Servers {
		out = append(out, Member{
			ID:       string(s.ID),
			RaftAddr: string(s.Address),
			HTTPAddr: addrs[string(s.ID)],
			Voter:    s.Suffrage == raft.Voter,
			Suffrage: suffrageName(s.Suffrage),
			Leader:   s.ID == leaderID,
		})
	}
	slices.SortFunc(out, func(a, b Member) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out, nil
}

func (n *Node) configuration(ctx context.Context) (raft.Configuration, error) {
	f := n.raft.GetConfiguration()
	if err := await(ctx, f); err != nil {
		return raft.Configuration{}, mapRaftError("read configuration", err)
	}
	return f.Configuration(), nil
}

// servers are the members of a Raft configuration, with the lookups that
// membership changes and leadership transfers share.
type servers []raft.Server

// leaderServers reads the configuration on the leader; on any other node
// it is ErrNotLeader.
func (n *Node) leaderServers(ctx context.Context) (servers, error) {
	if n.raft.State() != raft.Leader {
		return nil, ErrNotLeader
	}
	conf, err := n.configuration(ctx)
	return conf.Servers, err
}

// find returns the first member that matches.
func (ss servers) find(match func(raft.Server) bool) (raft.Server, bool) {
	if i := slices.IndexFunc(ss, match); i >= 0 {
		return ss[i], true
	}
	return raft.Server{}, false
}

// byID returns the member id.
func (ss servers) byID(id string) (raft.Server, bool) {
	return ss.find(func(s raft.Server) bool { return string(s.ID) == id })
}

// votersBesides lists the voters other than id, in configuration order.
func (ss servers) votersBesides(id string) []raft.Server {
	var out []raft.Server
	for _, s := range ss {
		if s.Suffrage == raft.Voter && string(s.ID) != id {
			out = append(out, s)
		}
	}
	return out
}

// JoinResult says what Join changed.
type JoinResult struct {
	Change string // "added", "updated" (same id, new address) or "unchanged"
	Index  uint64 // index of the last entry Join committed; 0 if none
	Voter  bool   // the member's suffrage after the join
	// AutoPromote: added as a learner that the leader makes a voter once
	// it has caught up (a new member asked to be a voter).
	AutoPromote bool
}

// Join makes id a member at raftAddr: a voter, or a non-voting learner
// when voter is false. A new member that is to be a voter is added as a
// learner first and marked for promotion (promotion.go; the mark is
// committed first, the learner second), so a node that
// turns out unable to serve never counts toward the quorum. Joining an existing member with the same address
// changes nothing; the same id with a new address moves it. Join never
// changes an existing member's suffrage: a learner stays a learner (see
// Promote), and asking for a voter to become a learner is
// ErrSuffrageConflict. A Raft address held by a different id is refused
// rather than evicting that member. httpAddr, when given, is recorded for
// forwarding.
//
// admit, when set, is asked before anything changes for a node that is
// not yet a member at raftAddr (cluster.CheckJoiner contacts it); its
// error refuses the join.
func (n *Node) Join(ctx context.Context, id, raftAddr, httpAddr string, voter bool, admit func(context.Context) error) (JoinResult, error) {
	ss, err := n.leaderServers(ctx)
	if err != nil {
		return JoinResult{}, err
	}
	if s, ok := ss.find(func(s raft.Server) bool { return string(s.Address) == raftAddr && string(s.ID) != id }); ok {
		return JoinResult{}, fmt.Errorf("join %s at %s: %w (member %s)", id, raftAddr, ErrAddressInUse, s.ID)
	}
	res := JoinResult{Change: "added", Voter: voter}
	if s, ok := ss.byID(id); ok {
		if s.Suffrage == raft.Voter && !voter {
			return JoinResult{}, fmt.Errorf("join %s as a learner: %w", id, ErrSuffrageConflict)
		}
		// Re-announcing a learner must not promote it.
		res.Voter = s.Suffrage == raft.Voter
		res.Change = "updated"
		if string(s.Address) == raftAddr {
			res.Change = "unchanged"
		}
	}
	if res.Change != "unchanged" && admit != nil {
		if err := admit(ctx); err != nil {
			return JoinResult{}, err
		}
	}
	if res.Change == "added" && res.Voter {
		res.Voter, res.AutoPromote = false, true
	}
	if res.Change != "unchanged" {
		if res.AutoPromote {
			// The mark is committed before the learner is added, so no
			// learner joined as a voter can exist without its mark, whenever
			// the leader dies. A mark whose learner never arrives (the add
			// failed, or this leader died first) is harmless: the promotion
			// loop promotes members only, and drops a mark whose node is no
			// member a while later (cluster.StaleMarkTimeouts).
			if _, err := n.markForPromotion(ctx, id); err != nil {
				return JoinResult{}, err
			}
		}
		add, what := n.raft.AddVoter, "add voter "
		if !res.Voter {
			add, what = n.raft.AddNonvoter, "add learner "
		}
		f := add(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, timeLeft(ctx))
		if err := await(ctx, f); err != nil {
			return JoinResult{}, mapRaftError(what+id, err)
		}
		res.Index = f.Index()
		n.log.WithFields(logrus.Fields{"node": id, "raft_addr": raftAddr, "change": res.Change, "voter": res.Voter,
			"auto_promote": res.AutoPromote}).Info("membership changed")
	}
	if httpAddr != "" {
		if known, _ := n.fsm.NodeHTTPAddr(id); known != httpAddr {
			r, err := n.Apply(ctx, &fsm.Command{Op: fsm.OpRegisterNode, NodeID: id, HTTPAddr: httpAddr})
			if err != nil {
				return res, err
			}
			res.Index = r.Index
		}
	}
	return res, nil
}

// Leave removes id from the cluster. To remove the leader itself, the
// leader first hands leadership to another voter and returns ErrNotLeader,
// so the caller can send the request on to the new leader.
func (n *Node) Leave(ctx context.Context, id string) (uint64, error) {
	ss, err := n.leaderServers(ctx)
	if err != nil {
		return 0, err
	}
	if _, ok := ss.byID(id); !ok {
		return 0, fmt.Errorf("leave %s: %w", id, ErrNodeNotFound)
	}
	if id == n.cfg.ID {
		if len(ss.votersBesides(id)) == 0 {
			return 0, fmt.Errorf("leave %s: %w", id, ErrLastVoter)
		}
		n.log.WithField("node", id).Info("transferring leadership before removing this node")
		if err := await(ctx, n.raft.LeadershipTransfer()); err != nil {
			return 0, mapRaftError("transfer leadership", err)
		}
		return 0, ErrNotLeader
	}
	f := n.raft.RemoveServer(raft.ServerID(id), 0, timeLeft(ctx))
	if err := await(ctx, f); err != nil {
		return 0, mapRaftError("remove server "+id, err)
	}
	n.log.WithFields(logrus.Fields{"node": id, "change": "removed", "index": f.Index()}).Info("membership changed")
	index := f.Index()
	// Should this fail, the promotion loop drops the mark of a node that
	// is no member.
	n.dropPromotionOrWarn(ctx, id)
	if _, known := n.fsm.NodeHTTPAddr(id); known {
		r, err := n.Apply(ctx, &fsm.Command{Op: fsm.OpForgetNode, NodeID: id})
		if err != nil {
			return index, err
		}
		index = r.Index
	}
	return index, nil
}

// Promote makes the learner id a voter at its current address. Promoting
// a voter changes nothing (Change "unchanged").
func (n *Node) Promote(ctx context.Context, id string) (JoinResult, error) {
	ss, err := n.leaderServers(ctx)
	if err != nil {
		return JoinResult{}, err
	}
	s, ok := ss.byID(id)
	if !ok {
		return JoinResult{}, fmt.Errorf("promote %s: %w", id, ErrNodeNotFound)
	}
	if s.Suffrage == raft.Voter {
		n.dropPromotionOrWarn(ctx, id)
		return JoinResult{Change: "unchanged", Voter: true}, nil
	}
	// AddVoter on a known non-voter keeps its id and address and changes
	// only its suffrage.
	f := n.raft.AddVoter(s.ID, s.Address, 0, timeLeft(ctx))
	if err := await(ctx, f); err != nil {
		return JoinResult{}, mapRaftError("promote "+id, err)
	}
	n.log.WithFields(logrus.Fields{"node": id, "raft_addr": s.Address, "change": "promoted"}).Info("membership changed")
	// Should this fail, the promotion loop drops the mark of a voter.
	n.dropPromotionOrWarn(ctx, id)
	return JoinResult{Change: "promoted", Index: f.Index(), Voter: true}, nil
}
