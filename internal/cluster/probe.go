package cluster

import (
	"context"
	"net/http"
	"time"

	"github.com/raftkv/raftkv/internal/node"
)

// probeTimeout bounds each call of a member probe.
const probeTimeout = time.Second

// Probe is what a member answered about itself.
type Probe struct {
	// Reachable: the member's API answered /status or /health.
	Reachable bool
	// Status is its GET /status; nil when that did not answer in time.
	Status *node.Status
}

// Probe asks the member whose API is at httpAddr for its /status and, if
// that fails (it may be slow while Raft is busy), whether it answers
// /health at all. Each call waits at most a second.
func (c *Cluster) Probe(ctx context.Context, httpAddr string) Probe {
	var st node.Status
	if c.probe(ctx, httpAddr, "/status", &st) {
		return Probe{Reachable: true, Status: &st}
	}
	return Probe{Reachable: c.probe(ctx, httpAddr, "/health", nil)}
}

func (c *Cluster) probe(ctx context.Context, httpAddr, path string, out any) bool {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err := c.client.Call(ctx, http.MethodGet, httpAddr, path, out)
	return err == nil
}
