package node

import (
	"github.com/hashicorp/raft"
	"github.com/sirupsen/logrus"
)

// observeLeader logs one info line each time this node's view of the
// leader changes (including to "none" during an election), and counts the
// changes. raft delivers observations without blocking its own loop: if
// this goroutine falls behind, raft drops observations rather than wait,
// which can only lose a log line, never stall replication.
func (n *Node) observeLeader() {
	defer n.wg.Done()
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	for {
		select {
		case <-n.stop:
			return
		case o := <-ch:
			lo, ok := o.Data.(raft.LeaderObservation)
			if !ok {
				continue
			}
			n.metrics.leaderChanges.Inc()
			fields := logrus.Fields{"term": n.raft.CurrentTerm(), "leader_id": string(lo.LeaderID), "leader_addr": string(lo.LeaderAddr)}
			if lo.LeaderID == "" {
				n.log.WithFields(fields).Info("leader changed: no leader")
				continue
			}
			n.log.WithFields(fields).Info("leader changed")
		}
	}
}
