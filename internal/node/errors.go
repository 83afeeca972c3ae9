package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// Errors a Node returns. They say whether anything was proposed to the log,
// because that decides what a client may safely do next: retry freely
// (nothing proposed) or treat the outcome as unknown.
var (
	// ErrNotLeader: this node is not the leader; nothing was proposed.
	// Callers forward the request to the leader.
	ErrNotLeader = errors.New("this node is not the leader")
	// ErrNoLeader: no leader became known within the request deadline.
	ErrNoLeader = errors.New("no leader: the cluster has no quorum or is electing")
	// ErrUnavailable: the leader could not take the request (queue full,
	// leadership transfer in progress); nothing was proposed.
	ErrUnavailable = errors.New("leader is not accepting requests right now")
	// ErrShutdown: this node is stopping or its Raft instance has stopped.
	ErrShutdown = errors.New("node is shut down")
	// ErrOutcomeUnknown: the entry was proposed but its commit was not
	// confirmed before the deadline or before leadership was lost. It may
	// or may not be applied.
	ErrOutcomeUnknown = errors.New("outcome unknown: the write was proposed but not confirmed in time; it may or may not be applied")
	// ErrReadUnconfirmed: leadership could not be confirmed for a
	// linearizable read in time (no quorum, or a new leader not ready).
	ErrReadUnconfirmed = errors.New("leadership could not be confirmed for a linearizable read")
	// ErrStorageUnavailable: the volume refused a write (full, read-only):
	// nothing was stored, so nothing was applied. Retry once space is freed.
	ErrStorageUnavailable = errors.New("storage unavailable: this node's volume does not accept writes (full or read-only)")
	// ErrNodeNotFound: no member has that id.
	ErrNodeNotFound = errors.New("node not found")
	// ErrAddressInUse: another member already uses that Raft address.
	ErrAddressInUse = errors.New("raft address is already used by another member")
	// ErrLastVoter: removing this member would leave no voter.
	ErrLastVoter = errors.New("cannot remove the only voter")
	// ErrSuffrageConflict: /join asked for a learner under the id of a
	// voter; demoting is not a join's business.
	ErrSuffrageConflict = errors.New("node is a voter; a join cannot make it a learner (leave, then join with voter=false)")
	// ErrNotVoter: leadership can only go to a voter.
	ErrNotVoter = errors.New("node is a learner (non-voter) and cannot lead; promote it first")
	// ErrNoTransferTarget: there is no other voter to hand leadership to.
	ErrNoTransferTarget = errors.New("no other voter to hand leadership to")
	// ErrTransferFailed: raft did not move leadership in time; the caller
	// may retry.
	ErrTransferFailed = errors.New("leadership transfer did not complete")
	// ErrAlreadyBootstrapped: Bootstrap on a node that already has state.
	ErrAlreadyBootstrapped = errors.New("node already has raft state; not bootstrapping")
	// ErrJoinerUnreachable: the node to be joined did not answer (on its
	// Raft address, or its API); nothing was changed.
	ErrJoinerUnreachable = errors.New("the node to be joined does not answer; nothing was changed (check its address and that it runs)")
	// ErrJoinerHasState: the node to be joined already has a Raft log or
	// snapshot of its own; nothing was changed.
	ErrJoinerHasState = errors.New("the node to be joined already holds raft state (a log or snapshot of its own); nothing was changed " +
		"(start it with an empty volume and RAFT_BOOTSTRAP=false)")
	// ErrOtherCluster: the other node belongs to a different cluster.
	ErrOtherCluster = errors.New("the node belongs to another cluster; nothing was changed")
	// ErrJoinerMismatch: the node at the given address runs under another
	// id than the one to be joined.
	ErrJoinerMismatch = errors.New("the node at that address runs under another id; nothing was changed")
	// ErrRemoved: this node was removed from the cluster (Removed); it
	// serves no request for the cluster and forwards nothing.
	ErrRemoved = errors.New("this node is not a member of the cluster (it was removed; /join on a member adds it back); nothing was done")
	// ErrRestoreInProgress: this node is already installing a backup.
	ErrRestoreInProgress = errors.New("a restore is already in progress on this node")
	// ErrLogStoreMismatch: the volume already holds a log of the other
	// kind. Opening it with the wrong store would start an empty log next
	// to the real one and silently fork this member's history.
	ErrLogStoreMismatch = errors.New("volume holds a log of another store kind")
	// ErrVolumeNotEmpty: RestoreVolume without force found the volume in
	// use; nothing was written.
	ErrVolumeNotEmpty = errors.New("volume is not empty; nothing written (force replaces its raftkv state)")
)

// mapRaftError turns raft's errors (and a passed deadline) into this
// package's, keeping "nothing proposed" apart from "outcome unknown".
func mapRaftError(what string, err error) error {
	var mapped error
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		mapped = ErrNotLeader
	case errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		mapped = ErrUnavailable
	case errors.Is(err, raft.ErrRaftShutdown):
		mapped = ErrShutdown
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		mapped = ErrOutcomeUnknown
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w (%v)", what, mapped, err)
}
