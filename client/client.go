package client

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the options.
const (
	// DefaultAttemptTimeout bounds one HTTP attempt (not a watch stream,
	// nor the body of a backup or restore).
	DefaultAttemptTimeout = 10 * time.Second
	// DefaultRetryMin and DefaultRetryMax bound the jittered backoff
	// between attempts: the n-th wait is drawn from [d/2, d] with
	// d = min(DefaultRetryMin·2ⁿ, DefaultRetryMax).
	DefaultRetryMin = 50 * time.Millisecond
	DefaultRetryMax = 1 * time.Second
	// DefaultMaxAttempts is how many attempts a call makes when its
	// context has no deadline; with a deadline it retries until the
	// deadline (at most maxAttemptsCap attempts).
	DefaultMaxAttempts = 10
)

// maxAttemptsCap bounds the attempts of a call with a deadline, so a
// very long deadline cannot spin forever either.
const maxAttemptsCap = 10000

// maxBody bounds a JSON answer read into memory: a listing page is at
// most a few MiB (the server's MaxPageBytes is 4 MiB, a single larger
// value comes alone, up to MAX_VALUE_BYTES).
const maxBody = 256 << 20

// Client talks to a raftkv cluster through any of its nodes. It is safe
// for concurrent use. Every call takes a context: its deadline bounds the
// call with all its retries.
type Client struct {
	eps     []*endpoint
	hc      *http.Client
	ownHC   bool
	opts    options
	rr      atomic.Uint64 // round-robin start of the next call
	closeMu sync.Mutex
	closed  bool
}

// endpoint is one node's base URL and when it may be tried again after a
// connection error.
type endpoint struct {
	base string // scheme://host[:port][/path], no trailing slash

	mu        sync.Mutex
	downUntil time.Time
	fails     int
}

// maxDown is the longest an endpoint is skipped after connection errors.
const maxDown = 10 * time.Second

func (e *endpoint) markDown() {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := 250 * time.Millisecond << min(e.fails, 6)
	e.fails++
	e.downUntil = time.Now().Add(min(d, maxDown))
}

func (e *endpoint) markUp() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fails = 0
	e.downUntil = time.Time{}
}

func (e *endpoint) until() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.downUntil
}

// Option configures New.
type Option func(*options)

type options struct {
	token          string
	tlsConfig      *tls.Config
	caFile         string
	certFile       string
	keyFile        string
	tlsFiles       bool
	hc             *http.Client
	attemptTimeout time.Duration
	retryMin       time.Duration
	retryMax       time.Duration
	maxAttempts    int
	watchIdle      time.Duration
}

// WithToken sends "Authorization: Bearer <token>" on every request (the
// server's AUTH_TOKENS_FILE tokens).
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithTLSConfig uses cfg for HTTPS (it is cloned); bare "host:port"
// endpoints then mean https. WithTLSFiles adds to it.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(o *options) { o.tlsConfig = cfg.Clone() }
}

// WithTLSFiles trusts the PEM CA certificates in caFile (instead of the
// system's) and presents the client certificate certFile with its key
// keyFile. Each may be ""; certFile and keyFile go together. Unreadable
// or invalid files are reported by New. Bare "host:port" endpoints then
// mean https.
func WithTLSFiles(caFile, certFile, keyFile string) Option {
	return func(o *options) {
		o.caFile, o.certFile, o.keyFile, o.tlsFiles = caFile, certFile, keyFile, true
	}
}

// WithHTTPClient sends every request through hc, as it is: its Transport
// carries TLS (the TLS options are refused with it), and its Timeout, if
// set, also cuts watch streams and backups. Without it the client builds
// its own transport.
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.hc = hc } }

// WithAttemptTimeout bounds each HTTP attempt (default 10 s): a request
// that has no answer by then is retried elsewhere (a write with the same
// idempotency key). It does not bound a watch stream or the body of a
// backup or restore, only the wait for their answer's headers. A
// Lock with a wait gets the wait on top.
func WithAttemptTimeout(d time.Duration) Option {
	return func(o *options) { o.attemptTimeout = d }
}

// WithRetryBackoff sets the backoff between attempts (default 50 ms to
// 1 s): the n-th wait (n from 0) is drawn uniformly from [d/2, d] with
// d = min(min·2ⁿ, max).
func WithRetryBackoff(min, max time.Duration) Option {
	return func(o *options) { o.retryMin, o.retryMax = min, max }
}

// WithMaxAttempts bounds the attempts of a call whose context has no
// deadline (default 10). A call with a deadline retries until it.
func WithMaxAttempts(n int) Option { return func(o *options) { o.maxAttempts = n } }

// New returns a client of the cluster reachable at endpoints: each is
// "host:port" (http, or https when a TLS option is given),
// "http://host:port" or "https://host:port", optionally with a path
// prefix (behind a reverse proxy). Any node serves any request (the
// server forwards to the leader), so any subset of the members will do.
// New makes no request. Errors: an empty list, a malformed endpoint, TLS
// files that cannot be read, or conflicting options.
func New(endpoints []string, opts ...Option) (*Client, error) {
	o := options{
		attemptTimeout: DefaultAttemptTimeout,
		retryMin:       DefaultRetryMin,
		retryMax:       DefaultRetryMax,
		maxAttempts:    DefaultMaxAttempts,
		watchIdle:      watchIdleTimeout,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if len(endpoints) == 0 {
		return nil, errors.New("raftkv client: no endpoints")
	}
	switch {
	case o.attemptTimeout <= 0:
		return nil, fmt.Errorf("raftkv client: attempt timeout %v is not positive", o.attemptTimeout)
	case o.retryMin <= 0 || o.retryMax < o.retryMin:
		return nil, fmt.Errorf("raftkv client: retry backoff %v..%v: need 0 < min <= max", o.retryMin, o.retryMax)
	case o.maxAttempts < 1:
		return nil, fmt.Errorf("raftkv client: max attempts %d is below 1", o.maxAttempts)
	}
	secure := o.tlsConfig != nil || o.tlsFiles
	if o.hc != nil && secure {
		return nil, errors.New("raftkv client: WithHTTPClient carries its own TLS; do not combine it with WithTLSConfig or WithTLSFiles")
	}
	c := &Client{opts: o, hc: o.hc}
	seen := map[string]bool{}
	for _, raw := range endpoints {
		base, err := normalize(raw, secure)
		if err != nil {
			return nil, err
		}
		if seen[base] {
			continue
		}
		seen[base] = true
		c.eps = append(c.eps, &endpoint{base: base})
	}
	if c.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 32
		if secure {
			cfg, err := tlsConfig(o)
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig = cfg
		}
		c.hc = &http.Client{Transport: tr}
		c.ownHC = true
	}
	// Start each client's round robin at a random member, so many
	// clients with one list spread over the cluster.
	c.rr.Store(rand.Uint64N(uint64(len(c.eps))))
	return c, nil
}

// normalize turns an endpoint into a base URL without trailing slash.
func normalize(raw string, secure bool) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", errors.New("raftkv client: empty endpoint")
	}
	if !strings.Contains(s, "://") {
		if secure {
			s = "https://" + s
		} else {
			s = "http://" + s
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("raftkv client: endpoint %q: %v", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("raftkv client: endpoint %q is not host:port, http://host:port or https://host:port", raw)
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), nil
}

func tlsConfig(o options) (*tls.Config, error) {
	cfg := o.tlsConfig
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("raftkv client: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("raftkv client: CA file %s holds no PEM certificate", o.caFile)
		}
		cfg.RootCAs = pool
	}
	if (o.certFile == "") != (o.keyFile == "") {
		return nil, errors.New("raftkv client: a client certificate needs both its certificate file and its key file")
	}
	if o.certFile != "" {
		cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("raftkv client: client certificate: %w", err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	return cfg, nil
}

// Endpoints returns the normalized base URLs the client uses, in the
// order given (duplicates dropped).
func (c *Client) Endpoints() []string {
	out := make([]string, len(c.eps))
	for i, e := range c.eps {
		out[i] = e.base
	}
	return out
}

// Close releases idle connections of the client's own transport. Calls
// in flight are not cut (cancel their contexts); the client must not be
// used afterwards.
func (c *Client) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if !c.closed && c.ownHC {
		c.hc.CloseIdleConnections()
	}
	c.closed = true
	return nil
}

// request is one logical call: sent once per attempt.
type request struct {
	method string
	path   string // escaped, from the root: "/kv/a%20b"
	query  url.Values
	header http.Header
	body   []byte // replayable body (nil: none)
	// write: may change state: it carries idem (an Idempotency-Key) and
	// its retries make ErrOutcomeUnknown when it may have been sent.
	write bool
	idem  string
	// prefer: 1 + the endpoint to ask first (0: round robin); only:
	// ask no other.
	prefer int
	only   bool
	// once: a single attempt.
	once bool
	// extra is added to the attempt timeout (a lock's wait).
	extra time.Duration
	// bodyReader is a body read once per attempt (a restore's), instead
	// of body; rewind, if not nil, makes it readable again from its
	// start. Without rewind, no attempt follows one that may have read it.
	bodyReader io.Reader
	rewind     func() error
	// open, if not nil, takes a 2xx answer with its body open (a stream:
	// the attempt timeout bounds only the wait for its headers), and the
	// endpoint's index; do's response then has no body.
	open func(*http.Response, int)
}

// response is a 2xx answer, read whole.
type response struct {
	status   int
	header   http.Header
	body     []byte
	endpoint int    // the index of the endpoint that answered
	base     string // its base URL
}

// newIdempotencyKey is 16 random bytes in hex: unique per logical write.
func newIdempotencyKey() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// retryable says whether an answer with status may be retried: 503
// always (nothing applied); 502 for reads (a forward broke, nothing
// changed); 504 for writes (retried with the same idempotency key, so
// applied at most once). A 4xx never.
func retryable(write bool, status int) bool {
	switch status {
	case http.StatusServiceUnavailable:
		return true
	case http.StatusBadGateway:
		return !write
	case http.StatusGatewayTimeout:
		return write
	}
	return false
}

// backoff is the n-th wait between attempts (n from 0), jittered.
func (c *Client) backoff(n int) time.Duration {
	d := c.opts.retryMax
	if n < 30 {
		d = min(c.opts.retryMin<<n, c.opts.retryMax)
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// sleep waits d or until ctx ends; false if ctx ended, or at once when
// the wait would outlast ctx's deadline.
func sleep(ctx context.Context, d time.Duration) bool {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		// The wait would outlast the call: stop now.
		return false
	}
	return sleepCtx(ctx, d)
}

// choose returns the next endpoint at or after *cursor that is not
// marked down (advancing the cursor past it), or, when all are, the one
// that comes back first.
func (c *Client) choose(cursor *uint64) int {
	n := uint64(len(c.eps))
	now := time.Now()
	best, bestUntil := -1, time.Time{}
	for k := uint64(0); k < n; k++ {
		i := int((*cursor + k) % n)
		u := c.eps[i].until()
		if !u.After(now) {
			*cursor += k + 1
			return i
		}
		if best < 0 || u.Before(bestUntil) {
			best, bestUntil = i, u
		}
	}
	*cursor = uint64(best) + 1
	return best
}

// do runs r with failover and retries and returns its 2xx answer, or an
// error: the *Error of a final non-2xx answer; for a write that may have
// been sent but has no answer when the call's time or attempts run out,
// an error matching ErrOutcomeUnknown; else the last connection error
// (wrapping ctx's error when it ended).
func (c *Client) do(ctx context.Context, r *request) (*response, error) {
	if r.write && r.idem == "" {
		r.idem = newIdempotencyKey()
	}
	cursor := c.rr.Add(1)
	if r.prefer > 0 && r.prefer <= len(c.eps) {
		cursor = uint64(r.prefer - 1)
	}
	attempts := c.opts.maxAttempts
	if _, ok := ctx.Deadline(); ok {
		attempts = maxAttemptsCap
	}
	if r.once {
		attempts = 1
	}
	var (
		consumed     bool // an attempt may have read bodyReader
		maybeApplied bool // an attempt may have been applied (a write's)
		lastErr      error
		waits        int
		ended        error // why the loop stopped early: ctx's error, or the deadline ahead
	)
	for n := 0; n < attempts; n++ {
		if ended = ctx.Err(); ended != nil {
			break
		}
		if r.bodyReader != nil && consumed {
			if r.rewind == nil {
				break
			}
			if err := r.rewind(); err != nil {
				lastErr = fmt.Errorf("raftkv client: rewinding the body for another attempt: %w", err)
				break
			}
		}
		ep := int(cursor % uint64(len(c.eps)))
		if !r.only {
			ep = c.choose(&cursor)
		}
		res, sent, err := c.send(ctx, ep, r)
		consumed = consumed || sent
		var e *Error
		// An answer other than a 503 (nothing applied) leaves the attempt's
		// outcome open when it is not a 2xx or 4xx; a connection error
		// after the request was written, too.
		maybeApplied = maybeApplied || (sent && (!errors.As(err, &e) || e.Status != http.StatusServiceUnavailable))
		if err == nil {
			c.eps[ep].markUp()
			return res, nil
		}
		if errors.As(err, &e) {
			if !retryable(r.write, e.Status) {
				return nil, e
			}
			lastErr = e
		} else {
			if ended = ctx.Err(); ended != nil {
				lastErr = err
				break
			}
			c.eps[ep].markDown()
			lastErr = err
			// Another endpoint that is up is worth trying at once.
			if next := c.eps[int(cursor%uint64(len(c.eps)))]; !r.only && len(c.eps) > 1 && !next.until().After(time.Now()) {
				continue
			}
		}
		if n+1 < attempts && !sleep(ctx, c.backoff(waits)) {
			if ended = ctx.Err(); ended == nil {
				ended = context.DeadlineExceeded // the wait would outlast it
			}
			break
		}
		waits++
	}
	if lastErr == nil {
		lastErr = ended
	}
	if r.write && maybeApplied {
		return nil, outcomeUnknown(lastErr, ended)
	}
	var e *Error
	if ended != nil && !errors.As(lastErr, &e) && !errors.Is(lastErr, ended) {
		return nil, fmt.Errorf("%w (last attempt: %w)", ended, lastErr)
	}
	return nil, lastErr
}

// send makes one attempt at endpoint ep: the 2xx answer, or an *Error
// for any other status, or a connection error. sent reports whether the
// request may have reached the server (its headers were written on some
// connection: net/http may resend a request that carries an
// Idempotency-Key on a new connection by itself, so a later "connection
// refused" does not prove an earlier send did not arrive).
func (c *Client) send(ctx context.Context, ep int, r *request) (*response, bool, error) {
	var (
		actx   context.Context
		cancel context.CancelFunc
		timer  *time.Timer
	)
	if r.open != nil {
		// A stream: the timeout bounds the wait for the headers only.
		actx, cancel = context.WithCancel(ctx)
		timer = time.AfterFunc(c.opts.attemptTimeout+r.extra, cancel)
	} else {
		actx, cancel = context.WithTimeout(ctx, c.opts.attemptTimeout+r.extra)
	}
	keep := false
	defer func() {
		if !keep {
			cancel()
		}
	}()
	var sent atomic.Bool
	actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{WroteHeaders: func() { sent.Store(true) }})
	req, err := c.newHTTPRequest(actx, ep, r)
	if err != nil {
		return nil, false, err
	}
	resp, err := c.hc.Do(req)
	if timer != nil && !timer.Stop() && err == nil {
		// The timeout fired as the headers came: the body is cut.
		resp.Body.Close()
		return nil, true, fmt.Errorf("%s: no answer within %v", c.eps[ep].base, c.opts.attemptTimeout+r.extra)
	}
	if err != nil {
		return nil, sent.Load(), fmt.Errorf("%s: %w", c.eps[ep].base, err)
	}
	if r.open != nil && resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		keep = true
		resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
		r.open(resp, ep)
		return &response{status: resp.StatusCode, header: resp.Header, endpoint: ep, base: c.eps[ep].base}, true, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, true, fmt.Errorf("%s: reading the answer: %w", c.eps[ep].base, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, true, errorFrom(resp, body, c.eps[ep].base)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: body, endpoint: ep, base: c.eps[ep].base}, true, nil
}

// cancelBody ends a stream's context when its body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// newHTTPRequest builds r's request for endpoint ep.
func (c *Client) newHTTPRequest(ctx context.Context, ep int, r *request) (*http.Request, error) {
	target := c.eps[ep].base + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	var body io.Reader
	switch {
	case r.bodyReader != nil:
		// Not a *bytes.Reader: net/http must not resend it by itself.
		body = io.NopCloser(r.bodyReader)
	case r.body != nil:
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, body)
	if err != nil {
		return nil, fmt.Errorf("raftkv client: %w", err)
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if c.opts.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.opts.token)
	}
	if r.idem != "" {
		req.Header.Set("Idempotency-Key", r.idem)
	}
	return req, nil
}
