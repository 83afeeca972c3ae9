package testcluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/raftkv/raftkv/internal/httpapi"
)

// Response is an API answer, read in full.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// JSON is the body decoded as a JSON object; nil when it is not one
	// (a raw GET /kv value, or net/http's own plain-text errors).
	JSON map[string]any
}

// Code is the error body's machine-readable "code", or "".
func (r Response) Code() string { return r.String("code") }

// String returns a string field of the JSON body, or "".
func (r Response) String(field string) string {
	s, _ := r.JSON[field].(string)
	return s
}

// Uint returns a numeric field of the JSON body, or 0.
func (r Response) Uint(field string) uint64 {
	f, _ := r.JSON[field].(float64)
	return uint64(f)
}

// Bool returns a boolean field of the JSON body, or false.
func (r Response) Bool(field string) bool {
	b, _ := r.JSON[field].(bool)
	return b
}

// Decode unmarshals the body into v (for arrays, or typed structs).
func (r Response) Decode(v any) error { return json.Unmarshal(r.Body, v) }

// ServedBy is the id of the node that produced the answer (after any
// forwarding).
func (r Response) ServedBy() string { return r.Header.Get(httpapi.HeaderServedBy) }

// RaftIndex is the X-Raft-Index header, or 0.
func (r Response) RaftIndex() uint64 {
	v, _ := strconv.ParseUint(r.Header.Get(httpapi.HeaderRaftIndex), 10, 64)
	return v
}

// Summary is "status body" for failure messages.
func (r Response) Summary() string {
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// Do sends method target (a path with query, e.g. "/get?key=a") to member
// i, with body as the request body when non-nil, and reads the whole
// answer. It only fails on transport errors, so any goroutine may use it.
func (c *Cluster) Do(i int, method, target string, body []byte, header http.Header) (Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.URL(i)+target, rd)
	if err != nil {
		return Response{}, fmt.Errorf("build %s %s: %w", method, target, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s on node %d: %w", method, target, i, err)
	}
	defer resp.Body.Close()
	out, err := ReadResponse(resp)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s on node %d: %w", method, target, i, err)
	}
	return out, nil
}

// ReadResponse reads resp's whole body into a Response (for requests sent
// by other means than Do). The caller still closes resp.Body.
func ReadResponse(resp *http.Response) (Response, error) {
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("read body: %w", err)
	}
	out := Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	var obj map[string]any
	if json.Unmarshal(b, &obj) == nil {
		out.JSON = obj
	}
	return out, nil
}

// MustDo is Do that fails the test on a transport error.
func (c *Cluster) MustDo(t testing.TB, i int, method, target string, body []byte, header http.Header) Response {
	t.Helper()
	r, err := c.Do(i, method, target, body, header)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return r
}

// Get sends GET target to member i (with the admin token when auth is on).
func (c *Cluster) Get(t testing.TB, i int, target string) Response {
	t.Helper()
	return c.MustDo(t, i, http.MethodGet, target, nil, c.AdminHeader())
}

// Post sends POST target with no body to member i (with the admin token
// when auth is on).
func (c *Cluster) Post(t testing.TB, i int, target string) Response {
	t.Helper()
	return c.MustDo(t, i, http.MethodPost, target, nil, c.AdminHeader())
}

// Set writes key=value through member i with the seed's GET /set.
func (c *Cluster) Set(t testing.TB, i int, key, value string) Response {
	t.Helper()
	return c.Get(t, i, "/set?"+url.Values{"key": {key}, "value": {value}}.Encode())
}

// GetKey reads key through member i with GET /get at the given
// consistency ("" for the default, linearizable).
func (c *Cluster) GetKey(t testing.TB, i int, key, consistency string) Response {
	t.Helper()
	q := url.Values{"key": {key}}
	if consistency != "" {
		q.Set("consistency", consistency)
	}
	return c.Get(t, i, "/get?"+q.Encode())
}

// MustSet writes key=value through member i and fails the test unless the
// answer is 200; it returns the write's raft index.
func (c *Cluster) MustSet(t testing.TB, i int, key, value string) uint64 {
	t.Helper()
	r := c.Set(t, i, key, value)
	if r.Status != http.StatusOK {
		t.Fatalf("set %s=%s via %s: %s", key, value, c.ID(i), r.Summary())
	}
	if r.Uint("index") == 0 {
		t.Fatalf("set %s=%s via %s: no index in %s", key, value, c.ID(i), r.Body)
	}
	return r.Uint("index")
}

// Status fetches member i's GET /status.
func (c *Cluster) Status(t testing.TB, i int) Response {
	t.Helper()
	r := c.Get(t, i, "/status")
	if r.Status != http.StatusOK {
		t.Fatalf("status of %s: %s", c.ID(i), r.Summary())
	}
	return r
}
