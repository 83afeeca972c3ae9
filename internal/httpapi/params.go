package httpapi

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
	"unicode/utf8"

	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/fsm"
)

// formOverhead allows for names, separators and escaping in a form body
// beyond the key and value themselves.
const formOverhead = 4096

// params are a request's parameters: the query string, plus the body of
// a form POST. body keeps the raw form bytes for forwarding.
type params struct {
	values url.Values
	body   []byte
}

// readParams parses parameters strictly: a malformed escape, or a parameter
// given twice, is a 400 rather than a silent guess.
func (s *Service) readParams(w http.ResponseWriter, r *http.Request) (params, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return params{}, fmt.Errorf("%w: query string: %v", ErrBadRequest, err)
	}
	p := params{values: q}
	if r.Method == http.MethodPost && r.Header.Get("Content-Type") != "" {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/x-www-form-urlencoded" {
			return params{}, fmt.Errorf("%w: body must be application/x-www-form-urlencoded (or send parameters in the query)", ErrBadRequest)
		}
		limit := int64(s.opts.MaxKeyBytes+s.opts.MaxValueBytes) + formOverhead
		if p.body, err = readBody(w, r, limit); err != nil {
			return params{}, err
		}
		form, err := url.ParseQuery(string(p.body))
		if err != nil {
			return params{}, fmt.Errorf("%w: form body: %v", ErrBadRequest, err)
		}
		for k, vs := range form {
			p.values[k] = append(p.values[k], vs...)
		}
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

// readBody reads at most limit bytes; a longer body is a 413. A declared
// Content-Length over the limit is refused before reading anything.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		// Closing the connection after the answer stops net/http from first
		// draining up to 256 KiB of the refused body, which stalls the 413
		// until the client sends a body it need not send (or ReadTimeout).
		w.Header().Set("Connection", "close")
		return nil, fmt.Errorf("%w: body of %d bytes exceeds %d", ErrTooLarge, r.ContentLength, limit)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("%w: body exceeds %d bytes", ErrTooLarge, limit)
		}
		return nil, fmt.Errorf("%w: read body: %v", ErrBadRequest, err)
	}
	return b, nil
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

// keyParam is the required, checked "key" parameter.
func (s *Service) keyParam(p params) (string, error) {
	key, err := p.required("key")
	if err != nil {
		return "", err
	}
	return key, s.checkKey(key)
}

// valueParam is the required "value" parameter; empty is a legal value.
func (s *Service) valueParam(p params) (string, error) {
	v, ok := p.get("value")
	if !ok {
		return "", fmt.Errorf("%w: missing parameter \"value\"", ErrBadRequest)
	}
	return v, s.checkValue(len(v))
}

func (s *Service) checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: key must not be empty", ErrBadRequest)
	case len(key) > s.opts.MaxKeyBytes:
		return fmt.Errorf("%w: key of %d bytes exceeds MAX_KEY_BYTES=%d", ErrBadRequest, len(key), s.opts.MaxKeyBytes)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: key is not valid UTF-8", ErrBadRequest)
	}
	return nil
}

func (s *Service) checkValue(n int) error {
	if n > s.opts.MaxValueBytes {
		return fmt.Errorf("%w: value of %d bytes exceeds MAX_VALUE_BYTES=%d", ErrTooLarge, n, s.opts.MaxValueBytes)
	}
	return nil
}

// Read consistency levels.
const (
	consistencyLinearizable = "linearizable"
	consistencyLeader       = "leader"
	consistencyStale        = "stale"
)

func consistencyOf(p params) (string, error) {
	v, ok := p.get("consistency")
	if !ok || v == "" {
		return consistencyLinearizable, nil
	}
	switch v {
	case consistencyLinearizable, consistencyLeader, consistencyStale:
		return v, nil
	}
	return "", fmt.Errorf("%w: consistency %q is not linearizable, leader or stale", ErrBadRequest, v)
}

// hostPort checks a host:port parameter that another node will dial.
func hostPort(name, v string) (string, error) {
	host, _, err := config.SplitHostPort(v)
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

// callerHost is the IP the request came from, as the seed's /join uses it.
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

// writeOptions are a write's optional conditions.
type writeOptions struct {
	hasCAS    bool
	cas       uint64
	requestID string
}

// HeaderIdempotencyKey names a write so that a retry returns its first
// outcome instead of applying it twice; ?requestId= is the query form.
const HeaderIdempotencyKey = "Idempotency-Key"

func writeOptionsOf(r *http.Request, p params) (writeOptions, error) {
	var o writeOptions
	if v, ok := p.get("cas"); ok {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return o, fmt.Errorf("%w: cas=%q is not a non-negative integer", ErrBadRequest, v)
		}
		o.hasCAS, o.cas = true, n
	}
	o.requestID = r.Header.Get(HeaderIdempotencyKey)
	if v, ok := p.get("requestId"); ok {
		if o.requestID != "" && o.requestID != v {
			return o, fmt.Errorf("%w: requestId and %s disagree", ErrBadRequest, HeaderIdempotencyKey)
		}
		o.requestID = v
	}
	if len(o.requestID) > fsm.MaxRequestIDBytes || !utf8.ValidString(o.requestID) {
		return o, fmt.Errorf("%w: idempotency key must be valid UTF-8 of at most %d bytes", ErrBadRequest, fsm.MaxRequestIDBytes)
	}
	return o, nil
}

// readOptions are a read's consistency level and the applied index it
// must wait for (0: none).
type readOptions struct {
	consistency string
	minIndex    uint64
}

func readOptionsOf(p params) (readOptions, error) {
	c, err := consistencyOf(p)
	if err != nil {
		return readOptions{}, err
	}
	o := readOptions{consistency: c}
	if v, ok := p.get("min_index"); ok {
		if o.minIndex, err = strconv.ParseUint(v, 10, 64); err != nil {
			return o, fmt.Errorf("%w: min_index=%q is not a non-negative integer", ErrBadRequest, v)
		}
	}
	return o, nil
}
