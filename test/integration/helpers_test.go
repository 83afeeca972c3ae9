package integration

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/testcluster"
	"github.com/raftkv/raftkv/internal/testwait"
)

// catchUp bounds how long a follower may take to show a write.
const catchUp = 10 * time.Second

// waitStale polls member i's stale read of key until it returns want.
func waitStale(t *testing.T, c *testcluster.Cluster, i int, key, want string) {
	t.Helper()
	testwait.For(t, catchUp, fmt.Sprintf("a stale read of %q on %s to give %q", key, c.ID(i), want), func() error {
		if r := c.GetKey(t, i, key, "stale"); r.Status != http.StatusOK || r.String("value") != want {
			return fmt.Errorf("got %s", r.Summary())
		}
		return nil
	})
}

// mustRead does a linearizable read of key through member i and checks
// the value.
func mustRead(t *testing.T, c *testcluster.Cluster, i int, key, want string) {
	t.Helper()
	r := c.GetKey(t, i, key, "")
	if r.Status != http.StatusOK || r.String("value") != want {
		t.Fatalf("linearizable read of %q via %s: got %s, want value %q", key, c.ID(i), r.Summary(), want)
	}
}

// members returns member i's view of the configuration.
func members(t *testing.T, c *testcluster.Cluster, i int) []node.Member {
	t.Helper()
	n := c.Node(i)
	if n == nil {
		t.Fatalf("%s is not running", c.ID(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ms, err := n.Members(ctx)
	if err != nil {
		t.Fatalf("members on %s: %v", c.ID(i), err)
	}
	return ms
}

// hasMember reports whether id is in ms, and whether as a voter.
func hasMember(ms []node.Member, id string) (found, voter bool) {
	for _, m := range ms {
		if m.ID == id {
			return true, m.Voter
		}
	}
	return false, false
}

// others lists the running members except skip.
func others(c *testcluster.Cluster, skip ...int) []int {
	var out []int
next:
	for _, i := range c.Running() {
		for _, s := range skip {
			if i == s {
				continue next
			}
		}
		out = append(out, i)
	}
	return out
}

// waitClusterID waits until the members idx all report one cluster id on
// /status, and returns it: every member learns its cluster's id.
func waitClusterID(t *testing.T, c *testcluster.Cluster, idx ...int) string {
	t.Helper()
	var id string
	testwait.For(t, catchUp, "every member to report the cluster id", func() error {
		id = c.Status(t, idx[0]).String("cluster_id")
		if id == "" {
			return fmt.Errorf("%s has no cluster id", c.ID(idx[0]))
		}
		for _, i := range idx[1:] {
			if got := c.Status(t, i).String("cluster_id"); got != id {
				return fmt.Errorf("%s reports cluster id %q, %s %q", c.ID(i), got, c.ID(idx[0]), id)
			}
		}
		return nil
	})
	return id
}
