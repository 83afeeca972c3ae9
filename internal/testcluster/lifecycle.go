package testcluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testwait"
)

// AddMember starts a new member with an empty directory (it does not
// bootstrap) and joins it through a running member's /join, as a voter or,
// with voter false, as a learner (voter=false). It returns the new index
// once the join answered 200. Call it from the test goroutine while no
// other goroutine uses the cluster: it grows the member list.
func (c *Cluster) AddMember(t testing.TB, voter bool) int {
	t.Helper()
	i := c.AddUnjoined(t)
	m := c.member(i)
	via := -1
	for _, j := range c.Running() {
		if j != i {
			via = j
			break
		}
	}
	if via < 0 {
		t.Fatalf("testcluster: AddMember: no running member to join %s through", m.id)
	}
	target := fmt.Sprintf("/join?nodeId=%s&raftPort=%d", m.id, c.RaftPort(i))
	if !voter {
		target += "&voter=false"
	}
	var last Response
	testwait.For(t, StartTimeout, "join of "+m.id+" via "+c.ID(via), func() error {
		var err error
		if last, err = c.Do(via, http.MethodPost, target, nil, nil); err == nil && last.Status != http.StatusOK {
			err = errors.New(last.Summary())
		}
		return err
	})
	if last.Bool("voter") != voter {
		t.Fatalf("testcluster: join %s: %s, want voter=%v", m.id, last.Body, voter)
	}
	return i
}

// Stop stops member i the way the daemon does on SIGTERM: first
// PrepareStop (a leader hands leadership off; with leave, the member
// removes itself from the configuration), then HTTP, then the node. Its
// directory and ports are kept for Restart. timeout bounds PrepareStop.
func (c *Cluster) Stop(t testing.TB, i int, leave bool, timeout time.Duration) {
	t.Helper()
	m := c.member(i)
	c.mu.Lock()
	svc := m.svc
	c.mu.Unlock()
	if svc == nil {
		t.Fatalf("testcluster: Stop(%d): %s is not running", i, m.id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	svc.PrepareStop(ctx, leave)
	cancel()
	if err := c.stopMember(m); err != nil {
		t.Fatalf("testcluster: Stop(%d): %v", i, err)
	}
}
