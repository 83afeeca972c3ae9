package node

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestRaftConfig: what a node changes of raft's defaults, and that raft
// accepts the result.
func TestRaftConfig(t *testing.T) {
	notify := make(chan bool, 1)
	rc := raftConfig(Config{ID: "n1", SnapshotThreshold: 500, HeartbeatTimeout: 300 * time.Millisecond,
		ElectionTimeout: 300 * time.Millisecond, LeaderLeaseTimeout: 200 * time.Millisecond}, hclog.NewNullLogger(), notify)
	if err := raft.ValidateConfig(rc); err != nil {
		t.Fatal(err)
	}
	def := raft.DefaultConfig()
	if rc.CommitTimeout != DefaultCommitTimeout || rc.CommitTimeout >= def.CommitTimeout {
		t.Errorf("CommitTimeout = %v, want %v (below raft's %v: followers learn commits sooner)", rc.CommitTimeout, DefaultCommitTimeout, def.CommitTimeout)
	}
	if c := raftConfig(Config{ID: "n1", CommitTimeout: 50 * time.Millisecond}, hclog.NewNullLogger(), notify); c.CommitTimeout != 50*time.Millisecond {
		t.Errorf("CommitTimeout set to 50ms = %v", c.CommitTimeout)
	}
	if rc.LocalID != "n1" || !rc.BatchApplyCh || rc.ShutdownOnRemove || rc.NotifyCh != notify {
		t.Errorf("identity, batching, removal or notification not as set: %+v", rc)
	}
	if rc.SnapshotThreshold != 500 || rc.TrailingLogs != 500 {
		t.Errorf("snapshot threshold %d, trailing logs %d; want 500 and 500", rc.SnapshotThreshold, rc.TrailingLogs)
	}
	if rc.HeartbeatTimeout != 300*time.Millisecond || rc.ElectionTimeout != 300*time.Millisecond || rc.LeaderLeaseTimeout != 200*time.Millisecond {
		t.Errorf("timeouts %v %v %v", rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout)
	}
	if d := raftConfig(Config{ID: "n1"}, hclog.NewNullLogger(), notify); d.HeartbeatTimeout != def.HeartbeatTimeout || d.SnapshotThreshold != def.SnapshotThreshold {
		t.Errorf("an unset value is not raft's default: %v %d", d.HeartbeatTimeout, d.SnapshotThreshold)
	}
}
