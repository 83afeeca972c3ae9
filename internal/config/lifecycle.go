package config

import (
	"fmt"
	"strconv"
	"time"
)

// DefaultShutdownTimeout bounds a graceful stop (SHUTDOWN_TIMEOUT).
const DefaultShutdownTimeout = 10 * time.Second

// loadLifecycle reads the membership and lifecycle variables:
// RAFT_BOOTSTRAP_EXPECT, LEAVE_ON_TERMINATE and SHUTDOWN_TIMEOUT.
func (c *Config) loadLifecycle(p *parser) {
	c.BootstrapExpect = p.intRange("RAFT_BOOTSTRAP_EXPECT", 0, 1, 64)
	c.LeaveOnTerminate = p.boolean("LEAVE_ON_TERMINATE", false)
	c.ShutdownTimeout = p.duration("SHUTDOWN_TIMEOUT", DefaultShutdownTimeout, 100*time.Millisecond)
	if c.BootstrapExpect == 0 {
		return
	}
	// RAFT_BOOTSTRAP_EXPECT replaces the single-node bootstrap: forming a
	// one-node cluster first would make the others join it instead of
	// bootstrapping together, so asking for both is a mistake.
	if v, ok := p.get("RAFT_BOOTSTRAP"); ok {
		if b, err := strconv.ParseBool(v); err == nil && b {
			p.fail("RAFT_BOOTSTRAP_EXPECT", "conflicts with RAFT_BOOTSTRAP=true; set one of them")
		}
	}
	c.Bootstrap = false
}

func (c Config) validateLifecycle() error {
	if c.BootstrapExpect > 1 && len(c.Join) == 0 {
		return fmt.Errorf("RAFT_BOOTSTRAP_EXPECT: %d needs RAFT_JOIN to list the other nodes' HTTP addresses", c.BootstrapExpect)
	}
	// RAFT_JOIN may list this node too (the same list on every node), so
	// it names at most len(Join) others.
	if c.BootstrapExpect > len(c.Join)+1 {
		return fmt.Errorf("RAFT_BOOTSTRAP_EXPECT: %d is more nodes than RAFT_JOIN lists (%d) plus this one", c.BootstrapExpect, len(c.Join))
	}
	return nil
}
