package node

// Leases on the node: every node's tracker scans the lease table each
// fsm.TrackerTick (so reads show the time left, and a node that becomes
// leader already holds safe deadlines); the leader, from the moment its
// term is ready until it loses leadership, proposes the expiries and
// checkpoints the tracker finds (fsm/DESIGN.md, "TTLs and leases").

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
)

// leaseProposeTimeout bounds one expire or checkpoint proposal.
const leaseProposeTimeout = 5 * time.Second

// Leases is this node's lease tracker: the time left of each lease as
// this node counts it.
func (n *Node) Leases() *fsm.Tracker { return n.tracker }

// trackLeases scans the lease table every tick until the node stops.
func (n *Node) trackLeases() {
	defer n.wg.Done()
	tick := time.NewTicker(fsm.TrackerTick)
	defer tick.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
			n.tracker.Scan()
		}
	}
}

// leaseStep is one turn of the leader's loop: the commands the tracker
// says are due now, at most one expire and, when checkpoint, one
// checkpoint, each naming at most fsm.MaxLeasesPerCommand leases.
func leaseStep(t *fsm.Tracker, checkpoint bool) []*fsm.Command {
	t.Scan()
	var cmds []*fsm.Command
	if due := t.Due(fsm.MaxLeasesPerCommand); len(due) > 0 {
		cmds = append(cmds, &fsm.Command{Op: fsm.OpLeaseExpire, Leases: due})
	}
	if checkpoint {
		if cps := t.Checkpoints(fsm.CheckpointInterval, fsm.MaxLeasesPerCommand); len(cps) > 0 {
			cmds = append(cmds, &fsm.Command{Op: fsm.OpLeaseCheckpoint, Leases: cps})
		}
	}
	return cmds
}

// leadLeases is the leader's loop for term: each tick it proposes what
// leaseStep finds (checkpoints once a second), and ends with ctx (lost
// leadership, or the node stopping). A proposal that fails is decided
// again on a later tick from the state as applied then.
func (n *Node) leadLeases(ctx context.Context, term uint64) {
	tick := time.NewTicker(fsm.TrackerTick)
	defer tick.Stop()
	lastCheckpoint := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.stop:
			return
		case <-tick.C:
		}
		if n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term {
			return
		}
		checkpoint := time.Since(lastCheckpoint) >= time.Second
		if checkpoint {
			lastCheckpoint = time.Now()
		}
		for _, cmd := range leaseStep(n.tracker, checkpoint) {
			actx, cancel := context.WithTimeout(ctx, leaseProposeTimeout)
			res, err := n.Apply(actx, cmd)
			cancel()
			if err != nil {
				n.log.WithError(err).WithField("op", cmd.Op.String()).Warn("lease proposal failed; deciding again next tick")
				break
			}
			if cmd.Op == fsm.OpLeaseExpire {
				n.metrics.leaseExpiries.Add(float64(len(cmd.Leases)))
				n.log.WithField("leases", len(cmd.Leases)).WithField("keys", res.Current).WithField("index", res.Index).Debug("leases expired")
			}
		}
	}
}
