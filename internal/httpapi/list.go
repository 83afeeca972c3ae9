package httpapi

// Ranges: GET /kv/{prefix}?recurse lists a prefix a page at a time (or,
// with ?count, counts it), DELETE /kv/{prefix}?recurse deletes it in one
// log entry. The state machine does the work (fsm.ListQuery, fsm.Views,
// fsm.OpDeletePrefix); this file parses, pages and answers.

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/fsm"
)

// Listing limits.
const (
	// DefaultListLimit is a page's size when ?limit is not given.
	DefaultListLimit = 1000
	// MaxListLimit caps ?limit: a larger one is a 400.
	MaxListLimit = 10_000
	// MaxPageBytes ends a page early, before the item that would take its
	// keys and values above it (a page holds at least one item): 4 MiB
	// keeps a page of big values near the size of a page of small ones.
	MaxPageBytes = 4 << 20
)

// rangeParams are the parameters GET /kv/ knows only with ?recurse.
var rangeParams = []string{"keys", "separator", "limit", "after", "count"}

// ErrBadCursor: ?after is not a cursor this listing returned.
var ErrBadCursor = errors.New("bad cursor")

// listReq is a GET /kv/{prefix}?recurse: the read's level, the query, and
// the position and index a cursor carried.
type listReq struct {
	readReq
	q     fsm.ListQuery
	count bool
	// index is the index of the page that returned the cursor (0: no
	// cursor): its view, when this node still holds it, serves the page.
	index uint64
}

// pathPrefix reads the key prefix that follows route ("/kv/" of
// /kv/{prefix}?recurse, "/watch/" of /watch/{prefix}) in the path:
// unescaped like a key and, unlike a key, possibly empty.
func (s *Service) pathPrefix(r *http.Request, route string) (string, error) {
	prefix, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), route))
	switch {
	case err != nil:
		return "", fmt.Errorf("%w: prefix in path: %v", ErrBadRequest, err)
	case len(prefix) > s.opts.MaxKeyBytes:
		return "", fmt.Errorf("%w: the prefix of %d bytes exceeds MAX_KEY_BYTES=%d", ErrBadRequest, len(prefix), s.opts.MaxKeyBytes)
	case !utf8.ValidString(prefix):
		return "", fmt.Errorf("%w: prefix is not valid UTF-8", ErrBadRequest)
	}
	return prefix, nil
}

// parseList reads a listing or a count. ?count answers totals only, so it
// takes none of keys, separator, limit and after (a count of one level
// would be ambiguous: of its keys, or of everything under it?).
func (s *Service) parseList(r *http.Request, p params) (listReq, error) {
	prefix, err := s.pathPrefix(r, "/kv/")
	if err != nil {
		return listReq{}, err
	}
	rq, err := readLevel(p, prefix)
	if err != nil {
		return listReq{}, err
	}
	q := listReq{readReq: rq, q: fsm.ListQuery{Prefix: prefix, Limit: DefaultListLimit, MaxBytes: MaxPageBytes}}
	if q.count, err = p.flag("count", false); err != nil {
		return q, err
	}
	if q.count {
		var with []string
		for _, name := range rangeParams {
			if _, ok := p.get(name); ok && name != "count" {
				with = append(with, name)
			}
		}
		if len(with) > 0 {
			return q, fmt.Errorf("%w: count answers totals only and takes no %s", ErrBadRequest, strings.Join(with, ", "))
		}
		return q, nil
	}
	if q.q.KeysOnly, err = p.flag("keys", false); err != nil {
		return q, err
	}
	if sep, ok := p.get("separator"); ok {
		if sep == "" || len(sep) > s.opts.MaxKeyBytes {
			return q, fmt.Errorf("%w: separator must be 1 to MAX_KEY_BYTES=%d bytes", ErrBadRequest, s.opts.MaxKeyBytes)
		}
		q.q.Separator = sep
	}
	if n, ok, err := p.uint("limit"); err != nil {
		return q, err
	} else if ok {
		if n < 1 || n > MaxListLimit {
			return q, fmt.Errorf("%w: limit=%d is not 1 to %d (MaxListLimit)", ErrBadRequest, n, MaxListLimit)
		}
		q.q.Limit = int(n)
	}
	if c, ok := p.get("after"); ok {
		if q.index, q.q.After, err = s.decodeCursor(c, &q.q); err != nil {
			return q, err
		}
	}
	return q, nil
}

// The cursor (?after, "next") is opaque to clients: base64url (no
// padding) of
//
//	version (1 byte, cursorVersion) | uvarint index | digest (8 bytes) | last
//
// where index is the index of the page that returned it, last is the page's
// last key or prefix, and digest is the first 8 bytes of the SHA-256 of
// the listing's shape (prefix, separator, keys only), so a cursor used
// with another listing is refused rather than read as a position in it.
const (
	cursorVersion = 1
	digestLen     = 8
)

func listDigest(q *fsm.ListQuery) []byte {
	h := sha256.New()
	mode := byte(0)
	if q.KeysOnly {
		mode = 1
	}
	h.Write([]byte{cursorVersion, mode})
	h.Write(binary.AppendUvarint(nil, uint64(len(q.Prefix))))
	h.Write([]byte(q.Prefix))
	h.Write([]byte(q.Separator))
	return h.Sum(nil)[:digestLen]
}

func encodeCursor(q *fsm.ListQuery, index uint64, last string) string {
	b := append([]byte{cursorVersion}, binary.AppendUvarint(nil, index)...)
	b = append(b, listDigest(q)...)
	b = append(b, last...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor reads c for the listing q: the index of the page that
// returned it and the position to continue after.
func (s *Service) decodeCursor(c string, q *fsm.ListQuery) (uint64, string, error) {
	malformed := fmt.Errorf("%w: after=%q is not a cursor (pass \"next\" from a page's answer as it is)", ErrBadCursor, trimForMessage(c))
	if len(c) > base64.RawURLEncoding.EncodedLen(1+binary.MaxVarintLen64+digestLen+s.opts.MaxKeyBytes) {
		return 0, "", malformed
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 1 || b[0] != cursorVersion {
		return 0, "", malformed
	}
	index, n := binary.Uvarint(b[1:])
	if n <= 0 || len(b) < 1+n+digestLen {
		return 0, "", malformed
	}
	digest, last := b[1+n:1+n+digestLen], string(b[1+n+digestLen:])
	if !bytes.Equal(digest, listDigest(q)) {
		return 0, "", fmt.Errorf("%w: the cursor belongs to another listing (its prefix, separator or keys differ): start this one without after", ErrBadCursor)
	}
	if !strings.HasPrefix(last, q.Prefix) || last == "" {
		return 0, "", malformed
	}
	return index, last, nil
}

// trimForMessage keeps a long parameter out of an error message.
func trimForMessage(v string) string {
	if len(v) > 64 {
		return v[:64] + "…"
	}
	return v
}

// countResponse answers ?count.
type countResponse struct {
	Count int    `json:"count"`
	Bytes int64  `json:"bytes"`
	Index uint64 `json:"index"`
}

// handleRange serves GET /kv/{prefix}?recurse at the read's consistency
// level. A page after the first is read from the view its cursor names
// when this node still holds it (fsm.Views): no read-index round trip,
// the first page's index. Otherwise it is read like the first.
func (s *Service) handleRange(w http.ResponseWriter, r *http.Request, p params) error {
	q, err := s.parseList(r, p)
	if err != nil {
		return err
	}
	b, err := parseBlocking(p)
	if err != nil {
		return err
	}
	if b.block {
		// A blocking listing waits for a change under the prefix, then
		// answers its first page (blocking.go).
		switch {
		case q.consistency == consistencyLeader:
			return fmt.Errorf("%w: a blocking query (index) reads at linearizable or stale consistency, not leader", ErrBadRequest)
		case hasParam(p, "after"):
			return fmt.Errorf("%w: a blocking query (index) answers a first page, not one after a cursor", ErrBadRequest)
		}
		if err := s.block(w, r, b, fsm.Filter{Prefix: q.q.Prefix}); err != nil {
			return err
		}
	}
	if q.consistency == consistencyLeader {
		return s.onLeader(w, r, cluster.Forward{Body: bytes.NewReader(q.body), Size: int64(len(q.body))}, func() error {
			return s.rangeLocal(w, r, q, s.heldView(q))
		})
	}
	v := s.heldView(q)
	if v == nil && q.consistency == consistencyLinearizable {
		if err := s.linearizable(r); err != nil {
			return err
		}
	}
	return s.rangeLocal(w, r, q, v)
}

// heldView is the view q's cursor names, if this node holds it and it
// has applied q's minIndex.
func (s *Service) heldView(q listReq) *fsm.View {
	if q.index == 0 || q.count {
		return nil
	}
	v, ok := s.views.Get(q.index, time.Now())
	if !ok || v.Index() < q.minIndex {
		return nil
	}
	return v
}

// rangeLocal answers q from view v, or (v nil) from this node's replica
// once it has applied q.minIndex. A page that has more after it holds a
// view at its own index, so the next page reads the same state.
func (s *Service) rangeLocal(w http.ResponseWriter, r *http.Request, q listReq, v *fsm.View) error {
	f := s.store.FSM()
	if v == nil {
		if err := s.waitMinIndex(r, q.readReq); err != nil {
			return err
		}
	}
	s.staleHeaders(w, q.readReq)
	if q.count {
		u := f.Count(q.q.Prefix)
		setIndexHeader(w, HeaderRaftIndex, u.Index)
		writeJSON(w, http.StatusOK, countResponse{Count: u.Count, Bytes: u.Bytes, Index: u.Index})
		return nil
	}
	var page fsm.ListPage
	if v != nil {
		page = v.List(q.q)
	} else {
		page = f.List(q.q)
		if page.More {
			if held := s.views.Hold(f, time.Now()); held.Index() != page.Index {
				page = held.List(q.q)
			}
		}
	}
	next := ""
	if page.More {
		next = encodeCursor(&q.q, page.Index, page.Last)
	}
	setIndexHeader(w, HeaderRaftIndex, page.Index)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	var ttl keyTTLFunc
	if s.store.FSM().LeaseCount() > 0 {
		ttl = s.listedTTL
	}
	_, _ = w.Write(appendPageJSON(make([]byte, 0, pageSize(&page)), &page, q.q.KeysOnly, q.q.Separator != "", next, ttl))
	return nil
}

// deletePrefixResponse answers DELETE /kv/{prefix}?recurse.
type deletePrefixResponse struct {
	Prefix  string `json:"prefix"`
	Deleted uint64 `json:"deleted"`
	Index   uint64 `json:"index"`
}

// deletePrefix serves DELETE /kv/{prefix}?recurse: one log entry
// (fsm.OpDeletePrefix) deletes every key under the prefix, and the answer
// says how many. The prefix must not be empty (a mistyped path would
// otherwise empty the store), and cas, a compare on one key, does not
// apply.
func (s *Service) deletePrefix(w http.ResponseWriter, r *http.Request, p params) error {
	prefix, err := s.pathPrefix(r, "/kv/")
	if err != nil {
		return err
	}
	if prefix == "" {
		return fmt.Errorf("%w: DELETE /kv/?recurse would delete every key: name a prefix", ErrBadRequest)
	}
	if _, ok := p.get("cas"); ok {
		return fmt.Errorf("%w: cas compares one key and does not apply with recurse", ErrBadRequest)
	}
	cmd, err := s.parseWrite(w, r, p, fsm.OpDeletePrefix)
	if err != nil {
		return err
	}
	res, err := s.apply(w, r, cmd)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, deletePrefixResponse{Prefix: cmd.Key, Deleted: res.Current, Index: res.Index})
	return nil
}

// hasParam reports whether the request gave name.
func hasParam(p params, name string) bool {
	_, ok := p.get(name)
	return ok
}
