package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// KeyValue is a key as the store holds it.
type KeyValue struct {
	Key         string
	Value       []byte
	CreateIndex uint64        // the Raft log index that created the key
	ModIndex    uint64        // the index of its last change: the CAS token (WithCAS)
	TTL         time.Duration // time left, as the answering node counts it (never less than the truth); 0: none
	Lease       uint64        // the lease holding the key (a TTL key has a lease of its own); 0: none
}

// Consistency is a read's consistency level (docs/api.md, "Read
// consistency").
type Consistency string

// Consistency levels.
const (
	// Linearizable (the default): sees every write acknowledged before
	// the read began; the leader confirms its leadership with a quorum.
	Linearizable Consistency = "linearizable"
	// Leader: the leader's own state without the quorum round; a deposed
	// leader may answer stale data for up to an election timeout.
	Leader Consistency = "leader"
	// Stale: the answering node's replica, which may lag.
	Stale Consistency = "stale"
)

// ReadOption configures Get, List and Count.
type ReadOption func(*readOptions)

type readOptions struct {
	consistency Consistency
	minIndex    uint64
}

// WithConsistency sets the read's consistency (default Linearizable).
func WithConsistency(c Consistency) ReadOption {
	return func(o *readOptions) { o.consistency = c }
}

// WithMinIndex makes the answering node wait (up to the server's
// REQUEST_TIMEOUT) until it has applied log index index, then read: pass
// a write's index to read it back from any node, even at Stale. Not
// reached in time: 503 index_not_reached (ErrUnavailable), retried.
func WithMinIndex(index uint64) ReadOption {
	return func(o *readOptions) { o.minIndex = index }
}

func (o readOptions) query(q url.Values) url.Values {
	if q == nil {
		q = url.Values{}
	}
	if o.consistency != "" {
		q.Set("consistency", string(o.consistency))
	}
	if o.minIndex != 0 {
		q.Set("minIndex", strconv.FormatUint(o.minIndex, 10))
	}
	return q
}

// WriteOption configures a write (Put, Delete, DeletePrefix, Txn).
type WriteOption func(*writeOptions)

type writeOptions struct {
	cas    *uint64
	ttl    time.Duration
	lease  uint64
	idem   string
	hasTTL bool
}

// WithCAS applies the write only if the key's mod_index is modIndex (0:
// only if the key is absent); else ErrCompareFailed, with the current
// mod_index in Error.Index. For Put and Delete.
func WithCAS(modIndex uint64) WriteOption {
	return func(o *writeOptions) { o.cas = &modIndex }
}

// WithTTL makes a Put's key expire ttl after this write (1 s to 24 h, in
// whole milliseconds). A Put without it or WithLease makes the key
// permanent.
func WithTTL(ttl time.Duration) WriteOption {
	return func(o *writeOptions) { o.ttl, o.hasTTL = ttl, true }
}

// WithLease puts a Put's key on lease id (see Grant): it is deleted when
// the lease expires or is revoked. Unknown lease: ErrNotFound.
func WithLease(id uint64) WriteOption {
	return func(o *writeOptions) { o.lease = id }
}

// WithIdempotencyKey sets the write's Idempotency-Key (at most 256
// bytes of UTF-8). By default every call gets a fresh random key, which
// its own retries reuse; give your own to retry a write across calls
// (after ErrOutcomeUnknown, or a restart of your program). The server
// remembers a key for 65,536 log entries; the same key with a different
// write is ErrKeyReused.
func WithIdempotencyKey(key string) WriteOption {
	return func(o *writeOptions) { o.idem = key }
}

func writeOpts(opts []WriteOption) writeOptions {
	var o writeOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// escapePath escapes a key or prefix for a path: the server takes the
// rest of the path byte-exact, so everything but unreserved characters
// and '/' is percent-encoded.
func escapePath(s string) string {
	const hex = "0123456789ABCDEF"
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' || c == '/' {
			out = append(out, c)
			continue
		}
		out = append(out, '%', hex[c>>4], hex[c&15])
	}
	return string(out)
}

// wireValue is a value in a JSON answer: "value" when it is UTF-8, else
// "value_base64".
type wireValue struct {
	Value       *string `json:"value"`
	ValueBase64 *string `json:"value_base64"`
}

func (w wireValue) bytes() ([]byte, error) {
	switch {
	case w.ValueBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*w.ValueBase64)
		if err != nil {
			return nil, fmt.Errorf("raftkv client: value_base64 in the answer: %w", err)
		}
		return b, nil
	case w.Value != nil:
		return []byte(*w.Value), nil
	}
	return nil, nil
}

// wireKV is a key in a listing or a transaction's list.
type wireKV struct {
	Key string `json:"key"`
	wireValue
	CreateIndex uint64 `json:"create_index"`
	ModIndex    uint64 `json:"mod_index"`
	TTL         int64  `json:"ttl"`   // ms
	Lease       uint64 `json:"lease"` // 0: none
}

func (w wireKV) keyValue() (KeyValue, error) {
	v, err := w.bytes()
	return KeyValue{Key: w.Key, Value: v, CreateIndex: w.CreateIndex, ModIndex: w.ModIndex,
		TTL: time.Duration(w.TTL) * time.Millisecond, Lease: w.Lease}, err
}

func decode(res *response, v any) error {
	if err := json.Unmarshal(res.body, v); err != nil {
		return fmt.Errorf("raftkv client: answer of %s is not the JSON expected: %w", res.base, err)
	}
	return nil
}

// headerUint reads a numeric header (0 when absent or malformed).
func headerUint(h http.Header, name string) uint64 {
	n, _ := strconv.ParseUint(h.Get(name), 10, 64)
	return n
}

// Get reads key (GET /kv/{key}: the raw bytes and the X-Raft-* headers).
// Errors: ErrNotFound when it does not exist; ErrUnavailable when no
// quorum confirmed the read in the call's time.
func (c *Client) Get(ctx context.Context, key string, opts ...ReadOption) (*KeyValue, error) {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	res, err := c.do(ctx, &request{method: http.MethodGet, path: "/kv/" + escapePath(key), query: o.query(nil)})
	if err != nil {
		return nil, err
	}
	kv := &KeyValue{
		Key:         key,
		Value:       res.body,
		ModIndex:    headerUint(res.header, "X-Raft-Index"),
		CreateIndex: headerUint(res.header, "X-Raft-Create-Index"),
		TTL:         time.Duration(headerUint(res.header, "X-Raft-Ttl")) * time.Millisecond,
		Lease:       headerUint(res.header, "X-Raft-Lease"),
	}
	if kv.Value == nil {
		kv.Value = []byte{}
	}
	return kv, nil
}

// Put writes value under key (PUT /kv/{key}) and returns the write's log
// index, the key's new mod_index. Options: WithCAS, WithTTL, WithLease,
// WithIdempotencyKey. Errors: ErrCompareFailed (WithCAS),
// ErrQuotaExceeded, ErrNotFound (an unknown lease), a 400/413 *Error for
// a key or value the server refuses, ErrOutcomeUnknown.
func (c *Client) Put(ctx context.Context, key string, value []byte, opts ...WriteOption) (uint64, error) {
	o := writeOpts(opts)
	q := url.Values{}
	if o.cas != nil {
		q.Set("cas", strconv.FormatUint(*o.cas, 10))
	}
	if o.hasTTL {
		q.Set("ttl", formatMillis(o.ttl))
	}
	if o.lease != 0 {
		q.Set("lease", strconv.FormatUint(o.lease, 10))
	}
	if value == nil {
		value = []byte{}
	}
	res, err := c.do(ctx, &request{method: http.MethodPut, path: "/kv/" + escapePath(key), query: q, body: value,
		header: http.Header{"Content-Type": {"application/octet-stream"}}, write: true, idem: o.idem})
	if err != nil {
		return 0, err
	}
	var a struct {
		Index uint64 `json:"index"`
	}
	return a.Index, decode(res, &a)
}

// Delete deletes key (DELETE /kv/{key}) and returns the delete's log
// index. Options: WithCAS, WithIdempotencyKey. Errors: ErrNotFound when
// it does not exist, ErrCompareFailed, ErrOutcomeUnknown.
func (c *Client) Delete(ctx context.Context, key string, opts ...WriteOption) (uint64, error) {
	o := writeOpts(opts)
	q := url.Values{}
	if o.cas != nil {
		q.Set("cas", strconv.FormatUint(*o.cas, 10))
	}
	res, err := c.do(ctx, &request{method: http.MethodDelete, path: "/kv/" + escapePath(key), query: q, write: true, idem: o.idem})
	if err != nil {
		return 0, err
	}
	var a struct {
		Index uint64 `json:"index"`
	}
	return a.Index, decode(res, &a)
}

// Touch starts key's TTL (or its lease's) again without changing its
// value (POST /kv/{key}?touch) and returns the TTL now ahead. Errors:
// ErrNotFound (no such key), a 409 *Error no_ttl (a key with neither TTL
// nor lease).
func (c *Client) Touch(ctx context.Context, key string) (time.Duration, error) {
	res, err := c.do(ctx, &request{method: http.MethodPost, path: "/kv/" + escapePath(key), query: url.Values{"touch": {"true"}}, write: true})
	if err != nil {
		return 0, err
	}
	var a struct {
		TTL int64 `json:"ttl"`
	}
	return time.Duration(a.TTL) * time.Millisecond, decode(res, &a)
}

// formatMillis is d as the server's duration, a Go duration in whole
// milliseconds ("25h0m0s", "1.5s"), so a refusal quotes it the way people
// write it.
func formatMillis(d time.Duration) string {
	return d.Truncate(time.Millisecond).String()
}

// ListOption configures List.
type ListOption func(*listOptions)

type listOptions struct {
	read      readOptions
	limit     int
	keysOnly  bool
	separator string
}

// WithPageSize sets the server's limit per page (1..10,000; the
// server's default is 1,000). List still returns every page.
func WithPageSize(n int) ListOption { return func(o *listOptions) { o.limit = n } }

// WithKeysOnly lists names and indexes, without values.
func WithKeysOnly() ListOption { return func(o *listOptions) { o.keysOnly = true } }

// WithSeparator lists one level: keys whose part after the prefix holds
// no sep come in Items, every other key is rolled up into its level
// prefix (up to and including the first sep), listed once in Prefixes.
func WithSeparator(sep string) ListOption { return func(o *listOptions) { o.separator = sep } }

// WithListConsistency sets the consistency and min index of the
// listing's reads (ReadOptions), by default linearizable.
func WithListConsistency(opts ...ReadOption) ListOption {
	return func(o *listOptions) {
		for _, opt := range opts {
			opt(&o.read)
		}
	}
}

// ListResult is a whole listing.
type ListResult struct {
	Items    []KeyValue // in byte order of the keys; values empty with WithKeysOnly
	Prefixes []string   // with WithSeparator: the common prefixes one level down
	Index    uint64     // the applied index the first page was read at
	// Consistent: every page reported Index, so together they are one
	// read of the prefix at Index (the pages were served by one node's
	// view; see docs/api.md, "Pages of one listing read one state").
	Consistent bool
}

// maxPages bounds a listing's loop: 10,000 keys a page at most, so far
// above any store's size in pages.
const maxPages = 1 << 24

// List returns every key under prefix (GET /kv/{prefix}?recurse), all
// pages: they are asked of the node that answered the first, so they read
// one state (ListResult.Consistent); when that node fails, the rest comes
// from another node's current state, with no key listed twice. An empty
// prefix lists the whole store.
func (c *Client) List(ctx context.Context, prefix string, opts ...ListOption) (*ListResult, error) {
	var o listOptions
	for _, opt := range opts {
		opt(&o)
	}
	out := &ListResult{Items: []KeyValue{}, Consistent: true}
	if o.separator != "" {
		out.Prefixes = []string{}
	}
	after, prefer := "", 0
	for page := 0; page < maxPages; page++ {
		q := url.Values{"recurse": {"true"}}
		if o.limit != 0 {
			q.Set("limit", strconv.Itoa(o.limit))
		}
		if o.keysOnly {
			q.Set("keys", "true")
		}
		if o.separator != "" {
			q.Set("separator", o.separator)
		}
		if after != "" {
			q.Set("after", after)
		}
		res, err := c.do(ctx, &request{method: http.MethodGet, path: "/kv/" + escapePath(prefix), query: o.read.query(q), prefer: prefer})
		if err != nil {
			return nil, err
		}
		var a struct {
			Index    uint64   `json:"index"`
			Items    []wireKV `json:"items"`
			Prefixes []string `json:"prefixes"`
			More     bool     `json:"more"`
			Next     string   `json:"next"`
		}
		if err := decode(res, &a); err != nil {
			return nil, err
		}
		if page == 0 {
			out.Index = a.Index
		} else if a.Index != out.Index {
			out.Consistent = false
		}
		for _, w := range a.Items {
			kv, err := w.keyValue()
			if err != nil {
				return nil, err
			}
			if o.keysOnly {
				kv.Value = nil
			}
			out.Items = append(out.Items, kv)
		}
		out.Prefixes = append(out.Prefixes, a.Prefixes...)
		if !a.More || a.Next == "" {
			return out, nil
		}
		after, prefer = a.Next, res.endpoint+1
	}
	return nil, fmt.Errorf("raftkv client: listing %q did not end after %d pages", prefix, maxPages)
}

// Count returns the number of keys under prefix and the applied index it
// was counted at (GET /kv/{prefix}?recurse&count). Options: as Get.
func (c *Client) Count(ctx context.Context, prefix string, opts ...ReadOption) (int64, uint64, error) {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	q := url.Values{"recurse": {"true"}, "count": {"true"}}
	res, err := c.do(ctx, &request{method: http.MethodGet, path: "/kv/" + escapePath(prefix), query: o.query(q)})
	if err != nil {
		return 0, 0, err
	}
	var a struct {
		Count int64  `json:"count"`
		Index uint64 `json:"index"`
	}
	err = decode(res, &a)
	return a.Count, a.Index, err
}

// DeletePrefix deletes every key under prefix in one log entry (DELETE
// /kv/{prefix}?recurse) and returns how many it deleted (0 is no error)
// and the entry's index. The prefix must not be empty (a 400 *Error).
// Options: WithIdempotencyKey only.
func (c *Client) DeletePrefix(ctx context.Context, prefix string, opts ...WriteOption) (int64, uint64, error) {
	o := writeOpts(opts)
	if prefix == "" {
		return 0, 0, fmt.Errorf("raftkv client: DeletePrefix needs a non-empty prefix")
	}
	res, err := c.do(ctx, &request{method: http.MethodDelete, path: "/kv/" + escapePath(prefix), query: url.Values{"recurse": {"true"}},
		write: true, idem: o.idem})
	if err != nil {
		return 0, 0, err
	}
	var a struct {
		Deleted int64  `json:"deleted"`
		Index   uint64 `json:"index"`
	}
	err = decode(res, &a)
	return a.Deleted, a.Index, err
}
