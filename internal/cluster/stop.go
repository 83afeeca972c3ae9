package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/raftkv/raftkv/internal/node"
)

// HandOffOrLeave is the first step of a graceful stop, before the HTTP
// server drains: with leave (LEAVE_ON_TERMINATE) the node removes itself
// from the configuration; otherwise a leader hands leadership to an
// up-to-date voter, so the cluster need not wait an election timeout.
// Failures are logged, never fatal, and ctx bounds everything.
func (c *Cluster) HandOffOrLeave(ctx context.Context, leave bool) {
	start := time.Now()
	if leave {
		if err := c.leave(ctx); err != nil {
			c.log.WithError(err).WithField("took", time.Since(start)).Warn("could not leave the cluster before stopping")
		}
		return
	}
	wasLeader := c.node.IsLeader()
	leader, err := c.node.HandOff(ctx)
	switch {
	case err != nil:
		c.log.WithError(err).WithField("took", time.Since(start)).Warn("could not hand off leadership before stopping; the others will elect a leader")
	case wasLeader && leader != "":
		c.log.WithFields(map[string]any{"to": leader, "took": time.Since(start)}).Info("handed off leadership before stopping")
	case wasLeader && c.node.IsLeader():
		c.log.Info("no other voter to hand leadership to")
	case wasLeader:
		c.log.WithField("took", time.Since(start)).Info("stepped down before stopping; the new leader is not known yet")
	}
}

// leave removes this node from the configuration. A leader first
// transfers leadership (node.Leave does that and answers ErrNotLeader);
// then, as for a follower, the leader is asked over HTTP to remove it.
func (c *Cluster) leave(ctx context.Context) error {
	self := c.node.ID()
	if !c.isMember(ctx) {
		c.log.Info("not a member of a cluster; nothing to leave")
		return nil
	}
	var last error
	for attempt := 0; attempt < 10 && ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(backoffLeave(attempt)):
			}
		}
		if !c.isMember(ctx) {
			c.log.Info("left the cluster")
			return nil
		}
		if c.node.IsLeader() {
			_, err := c.node.Leave(ctx, self)
			switch {
			case errors.Is(err, node.ErrLastVoter):
				return fmt.Errorf("not leaving: %w", err)
			case err != nil && !errors.Is(err, node.ErrNotLeader):
				last = err
				continue
			}
			// Leadership moved: ask the new leader below.
		}
		l, err := c.node.WaitLeader(ctx)
		if err != nil {
			last = err
			continue
		}
		if l.ID == self {
			continue
		}
		status, err := c.client.Call(ctx, http.MethodPost, l.HTTPAddr, "/leave?"+url.Values{"nodeId": {self}}.Encode(), nil)
		switch {
		case err == nil, status == http.StatusNotFound: // removed, now or before
			c.log.WithField("via", l.ID).Info("left the cluster")
			return nil
		}
		last = err
	}
	if last == nil {
		last = ctx.Err()
	}
	return last
}

func backoffLeave(attempt int) time.Duration {
	return min(50*time.Millisecond<<min(attempt, 4), 500*time.Millisecond)
}

// isMember reports whether this node is in its latest known configuration
// (assumed true when that cannot be read).
func (c *Cluster) isMember(ctx context.Context) bool {
	members, err := c.node.Members(ctx)
	if err != nil {
		return true
	}
	for _, m := range members {
		if m.ID == c.node.ID() {
			return true
		}
	}
	return false
}
