// Package auth holds raftkv's bearer tokens: it parses the tokens file
// (AUTH_TOKENS_FILE), answers which role a presented token grants, and
// swaps in a reloaded file atomically, so requests never see half a file.
//
// Tokens are kept only as SHA-256 digests, and a lookup compares the
// presented token's digest with every entry in constant time, without
// stopping at a match: neither the time taken nor any error message tells
// a caller which entry matched, how much of a token was right, or how long
// the real tokens are. The one token kept in clear is the node's own
// credential (the file's first admin token), which a node needs to send to
// its peers.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/sirupsen/logrus"
)

// Role is what a token may do, and the least a route needs. Roles are
// ordered: each may do everything the roles below it may.
type Role int

// Roles a token can hold. The zero value is no role at all.
const (
	RoleNone Role = iota
	RoleRead
	RoleWrite
	RoleAdmin
	// RolePeer marks node-to-node routes (the peer protocol). No token
	// holds it: with authentication on such a route needs an admin token
	// (nodes present their own, NodeToken); with it off it is open, like
	// the Raft port.
	RolePeer
)

// RolePublic marks routes anyone may call, with or without a token
// (liveness and readiness for load balancers).
const RolePublic = RoleNone

// Roles lists the roles a tokens file may name, lowest first.
var Roles = []Role{RoleRead, RoleWrite, RoleAdmin}

func (r Role) String() string {
	switch r {
	case RoleRead:
		return "read"
	case RoleWrite:
		return "write"
	case RoleAdmin:
		return "admin"
	case RolePeer:
		return "peer"
	}
	return "none"
}

// ParseRole reads a role name as the tokens file spells it.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if s == r.String() {
			return r, nil
		}
	}
	return RoleNone, fmt.Errorf("unknown role %q (want read, write or admin)", s)
}

// Limits on the tokens file. A token must be long enough not to be
// guessed; the caps keep a mistaken path (a log, a binary) from being read
// into memory whole.
const (
	MinTokenLen  = 16
	MaxTokenLen  = 4096
	MaxFileBytes = 1 << 20
)

// ErrNoAdmin: a tokens file without an admin token leaves the nodes of a
// cluster no credential to call each other with.
var ErrNoAdmin = errors.New("no admin token: nodes use the first admin token to call each other, so the file needs at least one")

type entry struct {
	digest [sha256.Size]byte
	role   Role
}

// Tokens is one parsed tokens file. It is immutable once parsed.
type Tokens struct {
	entries []entry
	counts  map[Role]int
	node    string // first admin token: this node's credential for its peers
}

// Counts reports how many tokens hold each role (for logs; never the
// tokens themselves).
func (t *Tokens) Counts() map[Role]int {
	out := make(map[Role]int, len(t.counts))
	for r, n := range t.counts {
		out[r] = n
	}
	return out
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.entries) }

// NodeToken is the credential this node presents to its peers: the first
// admin token in the file. Every node of a cluster reads the same file, so
// every node accepts it.
func (t *Tokens) NodeToken() string { return t.node }

// compare is subtle.ConstantTimeCompare; a variable so a test can count
// the comparisons a lookup makes.
var compare = subtle.ConstantTimeCompare

// Lookup returns the role token grants, or RoleNone. It hashes token once
// and compares the digest with every entry, always all of them, in
// constant time: the work done does not depend on which entry matches or
// on how much of a token is right.
func (t *Tokens) Lookup(token string) Role {
	d := sha256.Sum256([]byte(token))
	role := RoleNone
	for i := range t.entries {
		// Select without branching on the secret-derived comparison.
		eq := compare(d[:], t.entries[i].digest[:])
		role = Role(subtle.ConstantTimeSelect(eq, int(t.entries[i].role), int(role)))
	}
	return role
}

// Parse reads a tokens file: one "token role" per line, role one of read,
// write, admin; blank lines and lines starting with '#' are ignored.
// Errors name the line but never quote a token.
func Parse(r io.Reader) (*Tokens, error) {
	// Read it whole, capped: a file cut at the cap must fail, not yield a
	// truncated last token.
	b, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxFileBytes)
	}
	t := &Tokens{counts: map[Role]int{}}
	seen := map[[sha256.Size]byte]int{} // digest -> line
	for i, text := range strings.Split(string(b), "\n") {
		line := i + 1
		text = strings.TrimSpace(text)
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"token role\", got %d fields", line, len(fields))
		}
		token := fields[0]
		role, err := ParseRole(fields[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if err := checkToken(token); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		d := sha256.Sum256([]byte(token))
		if first, dup := seen[d]; dup {
			return nil, fmt.Errorf("line %d: duplicate token (first on line %d)", line, first)
		}
		seen[d] = line
		t.entries = append(t.entries, entry{digest: d, role: role})
		t.counts[role]++
		if role == RoleAdmin && t.node == "" {
			t.node = token
		}
	}
	if t.node == "" {
		return nil, ErrNoAdmin
	}
	return t, nil
}

// checkToken refuses tokens too short to be secret, and bytes that would
// not survive an HTTP header (controls, non-ASCII).
func checkToken(token string) error {
	if n := utf8.RuneCountInString(token); n < MinTokenLen {
		return fmt.Errorf("token is %d characters, need at least %d", n, MinTokenLen)
	}
	if len(token) > MaxTokenLen {
		return fmt.Errorf("token is longer than %d bytes", MaxTokenLen)
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("token has a byte outside printable ASCII at position %d", i+1)
		}
	}
	return nil
}

// LoadFile parses the tokens file at path.
func LoadFile(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Store is the current token set of a running node. Lookups never block;
// Reload swaps in a new set only if the whole file is valid.
type Store struct {
	path string
	cur  atomic.Pointer[Tokens]
}

// Open loads the tokens file at path into a new Store.
func Open(path string) (*Store, error) {
	t, err := LoadFile(path)
	if err != nil {
		return nil, err
	}
	return NewStore(path, t), nil
}

// NewStore makes a Store holding t, already read from path (see
// LoadFile); Reload reads path again.
func NewStore(path string, t *Tokens) *Store {
	s := &Store{path: path}
	s.cur.Store(t)
	return s
}

// Path is the tokens file the store reads.
func (s *Store) Path() string { return s.path }

// Tokens is the current token set.
func (s *Store) Tokens() *Tokens { return s.cur.Load() }

// Lookup returns the role token grants under the current set.
func (s *Store) Lookup(token string) Role { return s.cur.Load().Lookup(token) }

// NodeToken is this node's credential under the current set.
func (s *Store) NodeToken() string { return s.cur.Load().NodeToken() }

// Reload reads the file again. On any error the current set stays in
// force and the error is returned; on success the new set replaces it at
// once for every request that starts afterwards.
func (s *Store) Reload() (*Tokens, error) {
	t, err := LoadFile(s.path)
	if err != nil {
		return nil, err
	}
	s.cur.Store(t)
	return t, nil
}

// ReloadAndLog reloads and says so: an error line when the file is bad
// (the old tokens stay in force), else an info line with the number of
// tokens per role. Tokens are never logged. It returns Reload's error.
func (s *Store) ReloadAndLog(log logrus.FieldLogger) error {
	t, err := s.Reload()
	if err != nil {
		log.WithError(err).Error("auth: reloading AUTH_TOKENS_FILE failed; the previous tokens stay in force")
		return err
	}
	log.WithFields(t.CountFields()).Info("auth: tokens reloaded")
	return nil
}

// CountFields are the per-role token counts as log fields.
func (t *Tokens) CountFields() logrus.Fields {
	f := logrus.Fields{"tokens": t.Len()}
	for _, r := range Roles {
		f[r.String()+"_tokens"] = t.counts[r]
	}
	return f
}
