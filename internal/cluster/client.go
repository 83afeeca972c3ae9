package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync/atomic"
	"time"
)

// HeaderForwarded marks a request one node sends on to another for a
// client (its value is the number of hops so far); such a request is not
// forwarded again.
const HeaderForwarded = "X-Raft-Forwarded"

// HeaderClusterID carries the calling node's cluster id on every
// node-to-node call; a node that has an id refuses a call carrying another
// (CheckClusterID).
const HeaderClusterID = "X-Raft-Cluster-Id"

// Errors of node-to-node calls. Each says whether the request reached the
// other node, which decides whether a client may simply retry.
var (
	// ErrLeaderUnreachable: the request was not sent (dial or connection
	// failure before writing it), so nothing was proposed.
	ErrLeaderUnreachable = errors.New("leader unreachable: request not sent")
	// ErrForwardFailed: a read broke after it was sent; nothing changed,
	// the answer is just lost.
	ErrForwardFailed = errors.New("forwarding the read to the leader failed")
	// ErrForwardUnknown: a write broke after it was sent, so the leader may
	// have applied it.
	ErrForwardUnknown = errors.New("forwarding the write to the leader failed after sending; outcome unknown")
	// ErrForwardTimeout: the leader did not answer in time; a write's
	// outcome is unknown.
	ErrForwardTimeout = errors.New("leader did not answer in time; outcome unknown")
	// ErrHopLimit: a forwarded request reached a node that is not the
	// leader either; it is not forwarded again, so leadership flapping
	// cannot make requests loop.
	ErrHopLimit = errors.New("forwarded request reached a non-leader; retry")
	// ErrPeerUnauthorized: the leader refused this node's own credential,
	// so nothing was proposed. The nodes' tokens files differ (or one was
	// not reloaded).
	ErrPeerUnauthorized = errors.New("the leader refused this node's credential; nothing was applied (tokens files differ between nodes?)")
	// ErrRejected: the leader refused a forwarded command as malformed or
	// not allowed; it was not proposed.
	ErrRejected = errors.New("the leader refused the command")
	// ErrBadBatch: a peer-protocol request that does not decode.
	ErrBadBatch = errors.New("malformed peer batch")
)

// lostAnswer is the error class of a call that broke after sending.
func lostAnswer(write bool) error {
	if write {
		return ErrForwardUnknown
	}
	return ErrForwardFailed
}

// Client makes every call one node sends to another: the peer protocol,
// client requests forwarded to the leader, joining, discovery, leaving and
// member probes. The cluster is uniform (every node serves HTTPS, or every
// node HTTP), so a node calls its peers the way it is called itself.
type Client struct {
	http    *http.Client
	scheme  string
	token   func() string // the node's own credential; nil when auth is off
	timeout time.Duration // default per-call bound: the request timeout plus forwardSlack
	// clusterID is this node's cluster id ("" until it has one), sent on
	// every call.
	clusterID func() string
}

// newClient builds the keep-alive client; tc, when set, is its TLS
// configuration (tlsconfig.Material.HTTPClient).
func newClient(tc *tls.Config, token func() string, timeout time.Duration) *Client {
	c := &Client{
		http: &http.Client{
			Transport: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				TLSClientConfig:     tc,
				TLSHandshakeTimeout: 2 * time.Second,
				MaxIdleConns:        256,
				MaxIdleConnsPerHost: 128,
				IdleConnTimeout:     90 * time.Second,
			},
			// Never follow redirects: a forwarded answer goes back as it is.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		scheme:  "http://",
		token:   token,
		timeout: timeout,
	}
	if tc != nil {
		c.scheme = "https://"
	}
	return c
}

// call is one node-to-node request.
type call struct {
	method, addr, uri string // uri: path and query
	body              io.Reader
	size              int64 // body length; 0 with a nil body
	contentType       string
	write             bool // may change state: decides the class of a failure after sending
	// from, when set, is the client request this call forwards: its
	// credential, Content-Type, Idempotency-Key and request id go along,
	// and the hop count grows by one. Otherwise the call carries the
	// node's own credential and no hop count.
	from      *http.Request
	requestID string
	// hops sets the hop header on a node's own call (the peer protocol);
	// 0 leaves it out, so the receiver may still forward the call (join,
	// leave).
	hops int
}

// newRequest is the one request builder.
func (c *Client) newRequest(ctx context.Context, k call) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, k.method, c.scheme+k.addr+k.uri, k.body)
	if err != nil {
		return nil, err
	}
	if k.body != nil {
		req.ContentLength = k.size
	}
	hops := k.hops
	if k.from != nil {
		// The client's Authorization goes along unchanged: the leader checks
		// it again, so a forward never grants more than the client's token.
		for _, h := range []string{"Content-Type", "Idempotency-Key", "Authorization"} {
			if v := k.from.Header.Get(h); v != "" {
				req.Header.Set(h, v)
			}
		}
		hops = hopsOf(k.from) + 1
	} else if c.token != nil {
		req.Header.Set("Authorization", "Bearer "+c.token())
	}
	if k.contentType != "" {
		req.Header.Set("Content-Type", k.contentType)
	}
	if c.clusterID != nil {
		if id := c.clusterID(); id != "" {
			req.Header.Set(HeaderClusterID, id)
		}
	}
	if hops > 0 {
		req.Header.Set(HeaderForwarded, strconv.Itoa(hops))
	}
	if k.requestID != "" {
		req.Header.Set("X-Request-Id", k.requestID) // one id in both nodes' logs
	}
	return req, nil
}

// send is the one send path. It classes a failure by whether the request
// was written: before, nothing reached the other node (ErrLeaderUnreachable,
// safe to retry); after, a write's outcome is unknown (ErrForwardUnknown or
// ErrForwardTimeout) and a read's answer is merely lost (ErrForwardFailed).
func (c *Client) send(ctx context.Context, k call) (*http.Response, error) {
	req, err := c.newRequest(ctx, k)
	if err != nil {
		return nil, err
	}
	var sent atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { sent.Store(true) },
	}))
	resp, err := c.http.Do(req)
	switch {
	case err == nil:
		return resp, nil
	case !sent.Load():
		return nil, errors.Join(ErrLeaderUnreachable, err)
	case errors.Is(err, context.DeadlineExceeded):
		return nil, errors.Join(ErrForwardTimeout, err)
	}
	return nil, errors.Join(lostAnswer(k.write), err)
}

// maxAnswer bounds an answer read into memory.
const maxAnswer = 1 << 20

// do sends k and reads the whole answer (at most maxAnswer bytes) within
// the client's timeout. Any status is returned with the body; status is 0
// when no answer came.
func (c *Client) do(ctx context.Context, k call) (status int, body []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.send(ctx, k)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s%s: %w", k.method, k.addr, k.uri, err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s%s: read answer: %w", k.method, k.addr, k.uri, errors.Join(lostAnswer(k.write), err))
	}
	return resp.StatusCode, body, nil
}

// Call sends a request of this node's own (with its credential) to the
// node whose API is at addr, and on a 200 decodes the JSON answer into out
// (if not nil). Any other status is an error quoting the answer.
func (c *Client) Call(ctx context.Context, method, addr, uri string, out any) (status int, err error) {
	status, body, err := c.do(ctx, call{method: method, addr: addr, uri: uri, write: method != http.MethodGet})
	if err != nil {
		return status, err
	}
	if status != http.StatusOK {
		return status, fmt.Errorf("%s %s%s: %d %s: %.512s", method, addr, uri, status, http.StatusText(status), bytes.TrimSpace(body))
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return status, fmt.Errorf("%s %s%s: decode answer: %w", method, addr, uri, err)
		}
	}
	return status, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

func hopsOf(r *http.Request) int {
	n, _ := strconv.Atoi(r.Header.Get(HeaderForwarded))
	return n
}
