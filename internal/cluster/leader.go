// Package cluster is everything one node says to another: handing writes
// and linearizable reads to the leader (batched), forwarding requests that
// must run on the leader, joining a cluster (retry-join and
// RAFT_BOOTSTRAP_EXPECT), leaving it or handing leadership off on the way
// out, and probing members. It knows nothing of routes or handlers: the
// HTTP API calls it, and it calls other nodes' APIs through one Client.
// See DESIGN.md.
package cluster

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/auth"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/node"
)

// maxHops is how often a request may be forwarded. One hop reaches the
// leader; a non-leader that receives a forwarded request answers 503 rather
// than passing it on, so requests cannot circle while leadership moves.
const maxHops = 1

// ForwardSlack lets the leader's own deadline expire first, so a slow
// write comes back as the leader's 504 rather than a local guess.
const ForwardSlack = time.Second

// Options configures a Cluster.
type Options struct {
	// RequestTimeout bounds each request's Raft work on the leader.
	RequestTimeout time.Duration
	// ClientTLS, when set, makes calls to other nodes use HTTPS with this
	// configuration (the cluster is uniform: all TLS or none).
	ClientTLS *tls.Config
	// Auth, when set, supplies this node's own credential (the first admin
	// token) for the calls it makes on its own behalf.
	Auth *auth.Store
	// BootstrapExpect is RAFT_BOOTSTRAP_EXPECT: with an empty volume,
	// RetryJoin bootstraps once this many nodes see each other (0: off).
	BootstrapExpect int
	Logger          *logrus.Logger
}

// Cluster is one node's side of the conversation with the others.
type Cluster struct {
	node    *node.Node
	opts    Options
	log     *logrus.Entry
	client  *Client
	links   sync.Map // leader HTTP address -> *leaderLink
	metrics *forwardMetrics
	pending atomic.Pointer[string] // what RAFT_BOOTSTRAP_EXPECT waits for (bootstrap.go)
}

// New builds the cluster side of n.
func New(n *node.Node, opts Options) *Cluster {
	if opts.Logger == nil {
		opts.Logger = logrus.StandardLogger()
	}
	var token func() string
	if opts.Auth != nil {
		token = opts.Auth.NodeToken
	}
	client := newClient(opts.ClientTLS, token, opts.RequestTimeout+ForwardSlack)
	client.clusterID = n.ClusterID
	return &Cluster{
		node:    n,
		opts:    opts,
		log:     opts.Logger.WithField("component", "cluster"),
		client:  client,
		metrics: newForwardMetrics(),
	}
}

// Close releases idle connections to other nodes.
func (c *Cluster) Close() { c.client.Close() }

// Collectors are the forward metrics, for the node's registry.
func (c *Cluster) Collectors() []prometheus.Collector { return c.metrics.collectors() }

// Propose applies cmd on the leader: here when this node leads, otherwise
// through the batched peer protocol. servedBy names the leader that
// applied it when that was another node. Leadership can move while a
// request waits, so it tries twice; node.ErrNotLeader is only ever met
// before anything was proposed. It waits at most the request timeout plus
// ForwardSlack.
func (c *Cluster) Propose(ctx context.Context, cmd *fsm.Command) (res *fsm.Result, servedBy string, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout+ForwardSlack)
	defer cancel()
	for range 2 {
		if c.node.IsLeader() {
			res, err := c.node.Apply(ctx, cmd)
			if !errors.Is(err, node.ErrNotLeader) {
				return res, "", err
			}
		}
		if c.node.Removed() {
			return nil, "", node.ErrRemoved
		}
		leader, err := c.waitLeader(ctx)
		if err != nil {
			return nil, "", err
		}
		if leader.ID == c.node.ID() {
			continue // elected meanwhile: propose it here
		}
		res, err := c.proposeVia(ctx, leader.HTTPAddr, cmd)
		return res, leader.ID, err
	}
	return nil, "", node.ErrNotLeader
}

// ReadIndex returns a read index the leader confirmed after the call
// began: this node's own when it leads, otherwise the leader's through the
// batched peer protocol. Once this node has applied it, its replica may
// serve a linearizable read. Leadership can move before the index is
// confirmed, so it asks twice.
func (c *Cluster) ReadIndex(ctx context.Context) (uint64, error) {
	for range 2 {
		index, err := c.readIndexOnce(ctx)
		if !errors.Is(err, node.ErrNotLeader) {
			return index, err
		}
	}
	return 0, node.ErrNotLeader
}

func (c *Cluster) readIndexOnce(ctx context.Context) (uint64, error) {
	if c.node.IsLeader() {
		return c.node.ReadIndex(ctx)
	}
	if c.node.Removed() {
		return 0, node.ErrRemoved
	}
	leader, err := c.waitLeader(ctx)
	if err != nil {
		return 0, err
	}
	if leader.ID == c.node.ID() {
		return c.node.ReadIndex(ctx)
	}
	return c.readIndexVia(ctx, leader.HTTPAddr)
}

// Forward says how OnLeader sends an HTTP request on to the leader.
type Forward struct {
	// URI is the path and query to send (default: the request's own).
	URI string
	// Body is the request body to send again, Size bytes of it.
	Body io.ReaderAt
	Size int64
	// Write: the request may change state, so a forward that breaks after
	// sending has an unknown outcome (504) rather than a lost answer (502).
	Write bool
	// Timeout is the leader's budget for the request (default: the request
	// timeout); the forward waits ForwardSlack longer.
	Timeout time.Duration
	// RequestID goes along, so both nodes log the same id.
	RequestID string
	// Reforward lets a request that was itself forwarded go on to the new
	// leader when local fails with node.ErrNotLeader because this node
	// stepped down for it (the leader removing itself).
	Reforward bool
}

// errSelfLeader: the leader turned out to be this node.
var errSelfLeader = errors.New("this node is the leader")

// OnLeader serves a request that must run on the leader. When this node
// leads, local serves it (and writes the answer); otherwise the request is
// sent to the leader and its answer copied to w. If local fails with
// node.ErrNotLeader (it did nothing: leadership moved), the request is sent
// on to the new leader. via names the leader it went to ("" when served
// here); err is what is left to answer, nil once w holds the answer.
func (c *Cluster) OnLeader(w http.ResponseWriter, r *http.Request, f Forward, local func() error) (via string, err error) {
	if !c.node.IsLeader() {
		if c.node.Removed() {
			return "", node.ErrRemoved
		}
		via, err = c.forward(w, r, f, maxHops)
		if !errors.Is(err, errSelfLeader) {
			return via, err
		}
	}
	if err = local(); !errors.Is(err, node.ErrNotLeader) {
		return "", err
	}
	limit := maxHops
	if f.Reforward {
		limit = hopsOf(r) + 1
	}
	via, err = c.forward(w, r, f, limit)
	if errors.Is(err, errSelfLeader) {
		return "", node.ErrNotLeader // leadership keeps coming back here
	}
	return via, err
}

// forward sends r to the leader and copies the answer to w, unless r has
// made limit hops already or the leader is this node (errSelfLeader,
// nothing written).
func (c *Cluster) forward(w http.ResponseWriter, r *http.Request, f Forward, limit int) (string, error) {
	if hopsOf(r) >= limit {
		return "", ErrHopLimit
	}
	wctx, cancel := context.WithTimeout(r.Context(), c.opts.RequestTimeout)
	leader, err := c.waitLeader(wctx)
	cancel()
	if err != nil {
		return "", err
	}
	if leader.ID == c.node.ID() {
		return "", errSelfLeader
	}
	via := leader.ID + "@" + leader.HTTPAddr
	ctx, cancel := context.WithTimeout(r.Context(), cmp.Or(f.Timeout, c.opts.RequestTimeout)+ForwardSlack)
	defer cancel()
	k := call{method: r.Method, addr: leader.HTTPAddr, uri: cmp.Or(f.URI, r.URL.RequestURI()), from: r, requestID: f.RequestID, write: f.Write}
	if f.Body != nil && f.Size > 0 {
		k.body, k.size = io.NewSectionReader(f.Body, 0, f.Size), f.Size
	}
	start := time.Now()
	resp, err := c.client.send(ctx, k)
	c.metrics.record(kindProxy, start, err)
	if err != nil {
		return via, err
	}
	defer resp.Body.Close()
	return via, c.copyAnswer(w, resp, f.Write)
}

// copyAnswer copies the leader's answer: its status, body, Content-Type,
// Retry-After, Allow and X-Raft-* headers. An answer of known length up to
// maxAnswer is read whole first, so one that breaks becomes an error
// rather than a truncated body.
func (c *Cluster) copyAnswer(w http.ResponseWriter, resp *http.Response, write bool) error {
	var body io.Reader = resp.Body
	if resp.ContentLength >= 0 && resp.ContentLength <= maxAnswer {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return errors.Join(lostAnswer(write), err)
		}
		body = bytes.NewReader(b)
	}
	for name, vs := range resp.Header {
		switch {
		case name == "Content-Type", name == "Retry-After", name == "Allow", strings.HasPrefix(name, "X-Raft-"):
			w.Header()[name] = vs
		}
	}
	if resp.ContentLength >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, body); err != nil {
		c.log.WithError(err).Debug("copy forwarded answer")
	}
	return nil
}
