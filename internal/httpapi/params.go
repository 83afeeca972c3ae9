package httpapi

// A request's parameters are parsed once, here, by the route's adapter
// (readParams: query and form body, names checked against the route
// table), and handed to the handler, which reads them into a request
// struct (parseWrite, parseRead, …). Parameter names are camelCase
// (nodeId, raftPort, minIndex, …); boolean flags have one rule (flag); a
// parameter given twice, a malformed escape or invalid UTF-8 is a 400
// rather than a silent guess.

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/node"
)

// formOverhead allows for names, separators and the other parameters in
// a form body beyond the key and value themselves.
const formOverhead = 4096

// formLimit caps a form body: percent-encoding may triple every byte of
// the key and value, so the cap allows for that, and the decoded key and
// value are then held to MAX_KEY_BYTES and MAX_VALUE_BYTES themselves.
func (s *Service) formLimit() bodyLimit {
	n := 3*int64(s.opts.MaxKeyBytes+s.opts.MaxValueBytes) + formOverhead
	return bodyLimit{n, fmt.Sprintf("the form body limit of %d bytes (3 × (MAX_KEY_BYTES + MAX_VALUE_BYTES) + %d, for percent-encoding)", n, formOverhead)}
}

// bodyLimit is a cap on a request body and the words that name it (and
// the setting behind it) in the 413.
type bodyLimit struct {
	n    int64
	name string
}

// Draining a refused body: see discardRefused.
const (
	drainSlack   = 16 << 20
	drainMax     = 64 << 20
	drainTimeout = 10 * time.Second
	// drainIdle ends the draining when the client stops sending: one that
	// declared a body it will not send gets its answer after this.
	drainIdle = time.Second
)

// params are a request's parameters, parsed once by the route's adapter:
// the query string, plus the body of a form POST on a route that takes
// one (route.form). body keeps the raw form bytes for forwarding.
type params struct {
	values url.Values
	body   []byte
}

// readParams parses a request's parameters strictly, once, for rt's
// adapter: the query, then (a POST with a Content-Type on a form route)
// the form body. The query's names are checked before the body is read,
// the body's after, and the flags (route.flagged) on all of them
// together: the handler gets only parameters the route knows.
func (s *Service) readParams(w http.ResponseWriter, r *http.Request, rt *route) (params, error) {
	var p params
	if r.URL.RawQuery != "" {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return params{}, fmt.Errorf("%w: query string: %v", ErrBadRequest, err)
		}
		if err := rt.checkNames(q); err != nil {
			return params{}, err
		}
		p.values = q
	}
	if rt.form && r.Method == http.MethodPost && r.Header.Get("Content-Type") != "" {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/x-www-form-urlencoded" {
			return params{}, fmt.Errorf("%w: body must be application/x-www-form-urlencoded (or send parameters in the query)", ErrBadRequest)
		}
		if p.body, err = readBody(w, r, s.formLimit()); err != nil {
			return params{}, err
		}
		form, err := url.ParseQuery(string(p.body))
		if err != nil {
			return params{}, fmt.Errorf("%w: form body: %v", ErrBadRequest, err)
		}
		if err := rt.checkNames(form); err != nil {
			return params{}, err
		}
		if p.values == nil {
			p.values = form
		} else {
			for k, vs := range form {
				p.values[k] = append(p.values[k], vs...)
			}
		}
	}
	if err := rt.checkFlags(p.values); err != nil {
		return params{}, err
	}
	for k, vs := range p.values {
		if len(vs) > 1 {
			return params{}, fmt.Errorf("%w: parameter %q given %d times", ErrBadRequest, k, len(vs))
		}
		if !utf8.ValidString(k) || !utf8.ValidString(vs[0]) {
			return params{}, fmt.Errorf("%w: parameter %q is not valid UTF-8", ErrBadRequest, k)
		}
	}
	return p, nil
}

// readBody reads at most lim.n bytes; a longer body is a 413. A declared
// Content-Length over the limit is refused before reading anything.
func readBody(w http.ResponseWriter, r *http.Request, lim bodyLimit) ([]byte, error) {
	if r.ContentLength > lim.n {
		discardRefused(w, r, lim.n, false)
		return nil, fmt.Errorf("%w: a body of %d bytes exceeds %s", ErrTooLarge, r.ContentLength, lim.name)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, lim.n))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			discardRefused(w, r, lim.n, true)
			return nil, fmt.Errorf("%w: the body exceeds %s", ErrTooLarge, lim.name)
		}
		// What broke (a reset, a timeout) is the client's side: not repeated.
		return nil, fmt.Errorf("%w: the request body could not be read to its end", ErrBadRequest)
	}
	return b, nil
}

// discardRefused prepares the 413 for a body over limit: the connection
// is closed after the answer (so net/http does not wait for the rest), and
// first the rest of the body is read and thrown away, up to a bound and a
// deadline (and stops when the client pauses for drainIdle). A client that sends its whole body before reading the answer
// (no "Expect: 100-continue": Python's http.client, many scripts) would
// otherwise be cut off mid-write: closing a socket with unread data makes
// the kernel reset the connection, and the client sees a broken pipe
// instead of the 413. A body beyond the bound is not read: the connection
// is closed. A client that sent "Expect: 100-continue" and nothing yet
// (started false) is waiting for this answer, so nothing is read.
func discardRefused(w http.ResponseWriter, r *http.Request, limit int64, started bool) {
	w.Header().Set("Connection", "close")
	if !started && strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		return
	}
	bound := min(4*limit+drainSlack, drainMax)
	if r.ContentLength > bound {
		return
	}
	rc := http.NewResponseController(w)
	end := time.Now().Add(drainTimeout)
	buf := make([]byte, 32<<10)
	for n := int64(0); n < bound; {
		deadline := time.Now().Add(drainIdle)
		if deadline.After(end) {
			deadline = end
		}
		if rc.SetReadDeadline(deadline) != nil {
			return // cannot bound the wait: do not read
		}
		m, err := r.Body.Read(buf[:min(int64(len(buf)), bound-n)])
		n += int64(m)
		if err != nil {
			return
		}
	}
}

func (p params) get(name string) (string, bool) {
	vs, ok := p.values[name]
	if !ok {
		return "", false
	}
	return vs[0], true
}

func (p params) required(name string) (string, error) {
	v, ok := p.get(name)
	if !ok || v == "" {
		return "", fmt.Errorf("%w: missing parameter %q", ErrBadRequest, name)
	}
	return v, nil
}

// flag reads a boolean parameter, def when absent. The one rule: a bare
// "?name", "=true" or "=1" is true; "=false" or "=0" is false; anything
// else is a 400.
func (p params) flag(name string, def bool) (bool, error) {
	v, ok := p.get(name)
	switch {
	case !ok:
		return def, nil
	case v == "" || v == "true" || v == "1":
		return true, nil
	case v == "false" || v == "0":
		return false, nil
	}
	return false, fmt.Errorf("%w: %s=%q is not true or false (or 1, 0, or a bare ?%s)", ErrBadRequest, name, v, name)
}

// uint reads a non-negative integer parameter; ok is false when absent.
func (p params) uint(name string) (n uint64, ok bool, err error) {
	v, ok := p.get(name)
	if !ok {
		return 0, false, nil
	}
	if n, err = strconv.ParseUint(v, 10, 64); err != nil {
		return 0, true, fmt.Errorf("%w: %s=%q is not a non-negative integer", ErrBadRequest, name, v)
	}
	return n, true, nil
}

// nodeID reads the nodeId parameter: "" when absent and not required.
func (p params) nodeID(required bool) (string, error) {
	id, ok := p.get("nodeId")
	if !ok && !required {
		return "", nil
	}
	if !ok || id == "" {
		return "", fmt.Errorf("%w: missing parameter \"nodeId\"", ErrBadRequest)
	}
	if err := node.ValidateNodeID(id); err != nil {
		return "", fmt.Errorf("%w: nodeId: %v", ErrBadRequest, err)
	}
	return id, nil
}

func (s *Service) checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: key must not be empty", ErrBadRequest)
	case len(key) > s.opts.MaxKeyBytes:
		return fmt.Errorf("%w: the key of %d bytes exceeds MAX_KEY_BYTES=%d", ErrBadRequest, len(key), s.opts.MaxKeyBytes)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: key is not valid UTF-8", ErrBadRequest)
	}
	return nil
}

func (s *Service) checkValue(n int) error {
	if n > s.opts.MaxValueBytes {
		return fmt.Errorf("%w: the value of %d bytes exceeds MAX_VALUE_BYTES=%d", ErrTooLarge, n, s.opts.MaxValueBytes)
	}
	return nil
}

// checkCommand checks a key write as strictly as the API's own parsing
// does; the leader applies it to commands followers hand it.
// It also stamps a set with this leader's quota (MAX_DATA_BYTES), so
// the quota in force is the leader's, whichever node took the request.
func (s *Service) checkCommand(cmd *fsm.Command) error {
	switch cmd.Op {
	case fsm.OpLeaseGrant, fsm.OpLeaseKeepAlive, fsm.OpLeaseRevoke:
		return nil // no key; DecodeCommand checked the ttl and id
	}
	if err := s.checkKey(cmd.Key); err != nil {
		return err
	}
	if cmd.Op == fsm.OpSet {
		cmd.Quota = s.quota()
	}
	return s.checkValue(len(cmd.Value))
}

// keyed reads the key: from the path under /kv/ (unescaped, so it may
// contain '/', and "%2F" for a literal one), else the "key" parameter.
func (s *Service) keyed(r *http.Request, p params) (string, error) {
	if rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/kv/"); ok {
		key, err := url.PathUnescape(rest)
		if err != nil {
			return "", fmt.Errorf("%w: key in path: %v", ErrBadRequest, err)
		}
		return key, s.checkKey(key)
	}
	key, err := p.required("key")
	if err != nil {
		return "", err
	}
	return key, s.checkKey(key)
}

// parseWrite reads a write of op: /set and /remove take key (and value)
// as parameters; PUT and DELETE /kv/{key} take the key from the path and
// PUT's value from the body. cas and the idempotency key (header or
// requestId) are optional.
func (s *Service) parseWrite(w http.ResponseWriter, r *http.Request, p params, op fsm.Op) (*fsm.Command, error) {
	key, err := s.keyed(r, p)
	if err != nil {
		return nil, err
	}
	cmd := &fsm.Command{Op: op, Key: key}
	if op == fsm.OpSet {
		cmd.Quota = s.quota() // the leader's replaces it if another node proposes it
	}
	fromBody := r.Method == http.MethodPut
	if op == fsm.OpSet && !fromBody {
		v, ok := p.get("value")
		if !ok {
			return nil, fmt.Errorf("%w: missing parameter \"value\"", ErrBadRequest)
		}
		if err := s.checkValue(len(v)); err != nil {
			return nil, err
		}
		cmd.Value = v
	}
	if cmd.CAS, cmd.HasCAS, err = p.uint("cas"); err != nil {
		return nil, err
	}
	if cmd.RequestID, err = idempotencyKey(r, p); err != nil {
		return nil, err
	}
	if op == fsm.OpSet && fromBody {
		lim := bodyLimit{int64(s.opts.MaxValueBytes), fmt.Sprintf("MAX_VALUE_BYTES=%d", s.opts.MaxValueBytes)}
		body, err := readBody(w, r, lim)
		if err != nil {
			return nil, err
		}
		cmd.Value = string(body)
	}
	return cmd, nil
}

// Read consistency levels.
const (
	consistencyLinearizable = "linearizable"
	consistencyLeader       = "leader"
	consistencyStale        = "stale"
)

// readReq is a read: its key, consistency level and the applied index it
// must wait for (0: none).
type readReq struct {
	key         string
	consistency string
	minIndex    uint64
	body        []byte // the form body, sent again if the read is forwarded
}

// parseRead reads /get (key parameter) and GET /kv/{key}: consistency
// (linearizable by default, leader or stale) and minIndex (min_index is
// its deprecated alias).
func (s *Service) parseRead(r *http.Request, p params) (readReq, error) {
	key, err := s.keyed(r, p)
	if err != nil {
		return readReq{}, err
	}
	return readLevel(p, key)
}

// readLevel reads a read's consistency level and minIndex (every read of
// keys takes them alike), for key.
func readLevel(p params, key string) (readReq, error) {
	q := readReq{key: key, consistency: consistencyLinearizable, body: p.body}
	switch v, _ := p.get("consistency"); v {
	case "", consistencyLinearizable:
	case consistencyLeader, consistencyStale:
		q.consistency = v
	default:
		return q, fmt.Errorf("%w: consistency %q is not linearizable, leader or stale", ErrBadRequest, v)
	}
	index, given, err := p.uint("minIndex")
	if err != nil {
		return q, err
	}
	old, givenOld, err := p.uint("min_index")
	switch {
	case err != nil:
		return q, err
	case given && givenOld:
		return q, fmt.Errorf("%w: give minIndex or its deprecated alias min_index, not both", ErrBadRequest)
	case givenOld:
		index = old
	}
	q.minIndex = index
	return q, nil
}

// joinReq is a /join: the node's id and addresses, and its suffrage.
type joinReq struct {
	id, raftAddr, httpAddr string
	voter                  bool
}

// parseJoin reads /join: nodeId, then raftAddr=host:port, or raftPort
// with the caller's IP as the host; optional httpAddr and voter.
func (s *Service) parseJoin(r *http.Request, p params) (joinReq, error) {
	var q joinReq
	var err error
	if q.id, err = p.nodeID(true); err != nil {
		return q, err
	}
	if q.voter, err = p.flag("voter", true); err != nil {
		return q, err
	}
	if v, ok := p.get("raftAddr"); ok {
		q.raftAddr, err = hostPort("raftAddr", v)
	} else if v, ok := p.get("raftPort"); ok {
		var port string
		if port, err = portParam("raftPort", v); err == nil {
			q.raftAddr = net.JoinHostPort(callerHost(r), port)
		}
	} else {
		err = fmt.Errorf("%w: missing parameter \"raftPort\" (or \"raftAddr\")", ErrBadRequest)
	}
	if err != nil {
		return q, err
	}
	if v, ok := p.get("httpAddr"); ok {
		q.httpAddr, err = hostPort("httpAddr", v)
	}
	return q, err
}

// nodeReq is an admin request about one member (/leave, /promote,
// /transfer-leadership).
type nodeReq struct {
	id   string // "" when optional and absent
	body []byte // the form body, sent again if forwarded
}

// parseNodeID reads nodeId, required or optional.
func parseNodeID(p params, required bool) (nodeReq, error) {
	id, err := p.nodeID(required)
	return nodeReq{id: id, body: p.body}, err
}

// hostPort checks a host:port parameter that another node will dial.
func hostPort(name, v string) (string, error) {
	host, _, err := node.SplitHostPort(v)
	if err == nil && strings.ContainsAny(host, "/ @?#") {
		err = fmt.Errorf("host %q is not a host name or IP", host)
	}
	if ip, perr := netip.ParseAddr(host); err == nil && perr == nil && ip.IsUnspecified() {
		err = fmt.Errorf("%s is not an address other nodes can dial", host)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %s=%q: %v", ErrBadRequest, name, v, err)
	}
	return v, nil
}

// callerHost is the IP the request came from, as /join?raftPort= uses it.
func callerHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func portParam(name, v string) (string, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%w: %s=%q is not a port in 1..65535", ErrBadRequest, name, v)
	}
	return strconv.Itoa(n), nil
}

// idempotencyKey reads the Idempotency-Key header or the requestId
// parameter (they must agree when both are given).
func idempotencyKey(r *http.Request, p params) (string, error) {
	id := r.Header.Get(HeaderIdempotencyKey)
	if v, ok := p.get("requestId"); ok {
		if id != "" && id != v {
			return "", fmt.Errorf("%w: requestId and %s disagree", ErrBadRequest, HeaderIdempotencyKey)
		}
		id = v
	}
	if len(id) > fsm.MaxRequestIDBytes || !utf8.ValidString(id) {
		return "", fmt.Errorf("%w: idempotency key must be valid UTF-8 of at most %d bytes", ErrBadRequest, fsm.MaxRequestIDBytes)
	}
	return id, nil
}
