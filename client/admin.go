package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Member is one member of the cluster, as GET /nodes shows it: the
// configuration's facts, and what the answering node (the leader) learned
// by probing the member. The probed fields are nil when the member did
// not answer its probe (Reachable false).
type Member struct {
	ID       string
	RaftAddr string
	HTTPAddr string
	Suffrage string // "voter", "learner", or "staging" while raft adds a voter
	Leader   bool
	Voter    bool
	// Reachable: the member answered the leader's probe (one second).
	Reachable bool
	State     string // its own Raft state: "Leader", "Follower", "Candidate"; "" if not probed
	// LastContact is how long ago it last heard from the leader (0 on the
	// leader); nil if unknown.
	LastContact  *time.Duration
	MatchIndex   *uint64 // the last log index it holds
	AppliedIndex *uint64 // the last index it applied
	Lag          *uint64 // the leader's last log index − MatchIndex
	Term         *uint64 // its own Raft term
	CommitIndex  *uint64 // its own commit index
}

// wireMember is a row of /nodes and of /status's configuration.
type wireMember struct {
	ID            string   `json:"id"`
	RaftAddr      string   `json:"raft_addr"`
	HTTPAddr      string   `json:"http_addr"`
	Voter         bool     `json:"voter"`
	Suffrage      string   `json:"suffrage"`
	Leader        bool     `json:"leader"`
	Reachable     bool     `json:"reachable"`
	State         string   `json:"state,omitempty"`
	LastContactMs *float64 `json:"last_contact_ms"`
	MatchIndex    *uint64  `json:"match_index"`
	AppliedIndex  *uint64  `json:"applied_index"`
	Lag           *uint64  `json:"lag"`
	Term          *uint64  `json:"term"`
	CommitIndex   *uint64  `json:"commit_index"`
}

func (w wireMember) member() Member {
	m := Member{ID: w.ID, RaftAddr: w.RaftAddr, HTTPAddr: w.HTTPAddr, Suffrage: w.Suffrage, Leader: w.Leader, Voter: w.Voter,
		Reachable: w.Reachable, State: w.State, MatchIndex: w.MatchIndex, AppliedIndex: w.AppliedIndex, Lag: w.Lag,
		Term: w.Term, CommitIndex: w.CommitIndex}
	m.LastContact = millis(w.LastContactMs)
	return m
}

// MarshalJSON writes m as the row of /nodes it was read from (last contact
// in fractional milliseconds, absent values null), so a program can pass
// the members on in the API's own shape.
func (m Member) MarshalJSON() ([]byte, error) {
	w := wireMember{ID: m.ID, RaftAddr: m.RaftAddr, HTTPAddr: m.HTTPAddr, Voter: m.Voter, Suffrage: m.Suffrage,
		Leader: m.Leader, Reachable: m.Reachable, State: m.State, MatchIndex: m.MatchIndex, AppliedIndex: m.AppliedIndex,
		Lag: m.Lag, Term: m.Term, CommitIndex: m.CommitIndex}
	if m.LastContact != nil {
		ms := float64(*m.LastContact) / float64(time.Millisecond)
		w.LastContactMs = &ms
	}
	return json.Marshal(w)
}

// millis is a fractional millisecond count as a duration (nil: nil).
func millis(ms *float64) *time.Duration {
	if ms == nil {
		return nil
	}
	d := time.Duration(*ms * float64(time.Millisecond))
	return &d
}

// Members lists the members with their replication progress (GET
// /nodes, the leader's view; a follower forwards it).
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	a, err := doJSON[[]wireMember](ctx, c, &request{method: http.MethodGet, path: "/nodes"})
	if err != nil {
		return nil, err
	}
	out := make([]Member, len(a))
	for i, w := range a {
		out[i] = w.member()
	}
	return out, nil
}

// AddMember joins the node id at raftAddr (host:port of its Raft
// transport) to the cluster (POST /join, forwarded to the leader);
// httpAddr (may be "") is its HTTP address. A voter is added as a
// learner and promoted by the leader once it caught up; voter false adds
// a learner that stays one (PromoteMember). Adding a member again with
// the same address is a no-op. Errors: 409 *Error address_in_use,
// suffrage_conflict, joiner_unreachable, joiner_mismatch,
// joiner_has_state, other_cluster (docs/api.md, "Membership and state").
func (c *Client) AddMember(ctx context.Context, id, raftAddr, httpAddr string, voter bool) error {
	q := url.Values{"nodeId": {id}, "raftAddr": {raftAddr}}
	if httpAddr != "" {
		q.Set("httpAddr", httpAddr)
	}
	if !voter {
		q.Set("voter", "false")
	}
	_, err := c.do(ctx, &request{method: http.MethodPost, path: "/join", query: q, write: true})
	return err
}

// PromoteMember makes the learner id a voter (POST /promote); a voter is
// a no-op. Errors: ErrNotFound (no such member).
func (c *Client) PromoteMember(ctx context.Context, id string) error {
	_, err := c.do(ctx, &request{method: http.MethodPost, path: "/promote", query: url.Values{"nodeId": {id}}, write: true})
	return err
}

// RemoveMember removes the member id (POST /leave); removing the leader
// first moves leadership. Errors: ErrNotFound (no such member; also when
// a retry finds the member removed by this call's first attempt), a 409
// *Error last_voter.
func (c *Client) RemoveMember(ctx context.Context, id string) error {
	_, err := c.do(ctx, &request{method: http.MethodPost, path: "/leave", query: url.Values{"nodeId": {id}}, write: true})
	return err
}

// TransferLeadership hands leadership to the voter id, or with id "" to
// the voter furthest along (POST /transfer-leadership), and returns once
// the new leader is known. Naming the leader is a no-op (so a retry of a
// transfer to id that was applied changes nothing; with id "" a retry may
// move leadership once more). Errors:
// ErrNotFound, 409 *Error not_voter or no_transfer_target, ErrUnavailable
// (transfer_failed, once the retries ran out).
func (c *Client) TransferLeadership(ctx context.Context, id string) error {
	q := url.Values{}
	if id != "" {
		q.Set("nodeId", id)
	}
	_, err := c.do(ctx, &request{method: http.MethodPost, path: "/transfer-leadership", query: q, write: true})
	return err
}

// Status is one node's view of itself (GET /status).
type Status struct {
	NodeID         string
	ClusterID      string
	State          string // "Leader", "Follower", "Candidate", "Shutdown"
	Membership     string // "voter", "learner" or "not_member"
	Term           uint64
	Leader         string // the leader's id, "" if none known
	LeaderRaftAddr string
	LeaderHTTPAddr string
	CommitIndex    uint64
	AppliedIndex   uint64
	LastLogIndex   uint64
	LastSnapshot   uint64 // the index of its last snapshot
	// LastContact: how long ago it last heard from the leader (0 on the
	// leader); nil if it never has.
	LastContact   *time.Duration
	Keys          int
	Configuration []Member // the members as its Raft configuration has them (not probed)
	VoteWithheld  bool
	DataBytes     int64  // key and value bytes in its replica
	MaxDataBytes  uint64 // MAX_DATA_BYTES; 0: no quota
	Endpoint      string // the base URL that answered
	Raw           json.RawMessage
}

// Status asks endpoint (a base URL or host:port as for New; it need
// not be one of the client's) for its status, once; with endpoint "" the
// client's endpoints are asked in turn until one answers.
func (c *Client) Status(ctx context.Context, endpoint string) (*Status, error) {
	cl, r := c, &request{method: http.MethodGet, path: "/status"}
	if endpoint != "" {
		base, err := normalize(endpoint, c.secure())
		if err != nil {
			return nil, err
		}
		cl = c.with(base)
		r.only, r.prefer, r.once = true, 1, true
	}
	res, err := cl.do(ctx, r)
	if err != nil {
		return nil, err
	}
	var a struct {
		ID                string       `json:"id"`
		ClusterID         string       `json:"cluster_id"`
		State             string       `json:"state"`
		Membership        string       `json:"membership"`
		Term              uint64       `json:"term"`
		LeaderID          string       `json:"leader_id"`
		LeaderRaftAddr    string       `json:"leader_raft_addr"`
		LeaderHTTPAddr    string       `json:"leader_http_addr"`
		CommitIndex       uint64       `json:"commit_index"`
		AppliedIndex      uint64       `json:"applied_index"`
		LastLogIndex      uint64       `json:"last_log_index"`
		LastSnapshotIndex uint64       `json:"last_snapshot_index"`
		LastContactMs     *float64     `json:"last_contact_ms"`
		Keys              int          `json:"keys"`
		Configuration     []wireMember `json:"configuration"`
		VoteWithheld      bool         `json:"vote_withheld"`
		DataBytes         int64        `json:"data_bytes"`
		MaxDataBytes      uint64       `json:"max_data_bytes"`
	}
	if err := decode(res, &a); err != nil {
		return nil, err
	}
	st := &Status{NodeID: a.ID, ClusterID: a.ClusterID, State: a.State, Membership: a.Membership, Term: a.Term,
		Leader: a.LeaderID, LeaderRaftAddr: a.LeaderRaftAddr, LeaderHTTPAddr: a.LeaderHTTPAddr,
		CommitIndex: a.CommitIndex, AppliedIndex: a.AppliedIndex, LastLogIndex: a.LastLogIndex, LastSnapshot: a.LastSnapshotIndex,
		LastContact: millis(a.LastContactMs), Keys: a.Keys, VoteWithheld: a.VoteWithheld, DataBytes: a.DataBytes,
		MaxDataBytes: a.MaxDataBytes, Endpoint: res.base, Raw: json.RawMessage(res.body)}
	st.Configuration = make([]Member, len(a.Configuration))
	for i, w := range a.Configuration {
		st.Configuration[i] = w.member()
	}
	return st, nil
}

// secure reports whether bare host:port endpoints mean https.
func (c *Client) secure() bool { return c.opts.tlsConfig != nil || c.opts.tlsFiles }

// with is a client of the one endpoint base sharing c's transport and
// options (for Status of a given node).
func (c *Client) with(base string) *Client {
	cl := &Client{eps: []*endpoint{{base: base}}, hc: c.hc, opts: c.opts}
	for _, e := range c.eps {
		if e.base == base {
			cl.eps[0] = e
		}
	}
	return cl
}

// BackupInfo describes a backup Backup wrote.
type BackupInfo struct {
	Index    uint64 // the applied index the backup reflects (X-Raft-Index)
	Keys     int64  // how many keys it holds (X-Raft-Keys)
	SHA256   string // the hex SHA-256 of the bytes, checked against the node's trailer
	Endpoint string // the base URL that served it
}

// Backup streams a backup of the whole store (GET /backup, admin role)
// into w and returns its size in bytes. It holds every write acknowledged
// before the call. The stream's SHA-256 is checked against the node's
// X-Raft-Sha256 trailer: a stream cut short or altered is an error (and
// w holds a partial file). Attempts are retried only until the first
// byte reaches w.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	n, _, err := c.BackupWithInfo(ctx, w)
	return n, err
}

// BackupWithInfo is Backup, also returning what the node said of the
// backup.
func (c *Client) BackupWithInfo(ctx context.Context, w io.Writer) (int64, *BackupInfo, error) {
	resp, ep, err := c.stream(ctx, &request{method: http.MethodGet, path: "/backup"})
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, sum), resp.Body)
	if err != nil {
		return n, nil, fmt.Errorf("raftkv client: backup from %s broke after %d bytes: %w", c.eps[ep].base, n, err)
	}
	got := hex.EncodeToString(sum.Sum(nil))
	want := resp.Trailer.Get("X-Raft-Sha256")
	if want == "" {
		return n, nil, fmt.Errorf("raftkv client: backup from %s ended without its X-Raft-Sha256 trailer (%d bytes): not a whole backup", c.eps[ep].base, n)
	}
	if want != got {
		return n, nil, fmt.Errorf("raftkv client: backup from %s: SHA-256 %s of %d bytes received, the node sent %s", c.eps[ep].base, got, n, want)
	}
	return n, &BackupInfo{Index: headerUint(resp.Header, "X-Raft-Index"), Keys: int64(headerUint(resp.Header, "X-Raft-Keys")),
		SHA256: got, Endpoint: c.eps[ep].base}, nil
}

// stream runs r with failover and retries until a node answers 2xx, and
// returns the answer with its body open (the caller closes it). The
// attempt timeout bounds the wait for the headers only.
func (c *Client) stream(ctx context.Context, r *request) (*http.Response, int, error) {
	var resp *http.Response
	var ep int
	r.open = func(hr *http.Response, i int) { resp, ep = hr, i }
	if _, err := c.do(ctx, r); err != nil {
		return nil, 0, err
	}
	return resp, ep, nil
}

// RestoreResult is what a restore answered.
type RestoreResult struct {
	Index         uint64 // the first index at which reads see the restored data (use it with WithMinIndex)
	SnapshotIndex uint64 // every key's create_index and mod_index after the restore
	Keys          int64
	Bytes         int64
	BackupIndex   uint64 // the index the backup reflected where it was taken
}

// Restore replaces the whole store of the cluster with the backup read
// from r (POST /restore, admin role). When r is an *os.File or another
// io.ReadSeeker, an attempt that fails is retried from r's start (a
// restore applied twice leaves the same data); otherwise there is one
// attempt. Errors: a 400 *Error bad_backup (nothing changed), 409
// restore_in_progress, 413 too_large.
func (c *Client) Restore(ctx context.Context, r io.Reader) error {
	_, err := c.RestoreWithResult(ctx, r)
	return err
}

// RestoreWithResult is Restore, also returning the node's answer.
func (c *Client) RestoreWithResult(ctx context.Context, r io.Reader) (*RestoreResult, error) {
	req := &request{method: http.MethodPost, path: "/restore", write: true, bodyReader: r,
		header: http.Header{"Content-Type": {"application/octet-stream"}}}
	if s, ok := r.(io.ReadSeeker); ok {
		start, err := s.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("raftkv client: restore body: %w", err)
		}
		req.rewind = func() error { _, err := s.Seek(start, io.SeekStart); return err }
	}
	a, err := doJSON[struct {
		Index         uint64 `json:"index"`
		SnapshotIndex uint64 `json:"snapshot_index"`
		Keys          int64  `json:"keys"`
		Bytes         int64  `json:"bytes"`
		BackupIndex   uint64 `json:"backup_index"`
	}](ctx, c, req)
	if err != nil {
		return nil, err
	}
	return &RestoreResult{Index: a.Index, SnapshotIndex: a.SnapshotIndex, Keys: a.Keys, Bytes: a.Bytes, BackupIndex: a.BackupIndex}, nil
}

// Identity is what a caller may do (GET /auth/whoami).
type Identity struct {
	// Auth: authentication is on (the server's AUTH_TOKENS_FILE).
	Auth bool
	// Role is "read", "write" or "admin": with Auth, the token's role;
	// without, "admin" when the node accepts admin calls from this host
	// (it is the node's or a member's, or ALLOW_REMOTE_ADMIN), else
	// "write".
	Role string
}

// WhoAmI asks what the client's token may do (GET /auth/whoami), so a
// program can offer only that. Errors: ErrUnauthorized for a missing or
// invalid token when authentication is on.
func (c *Client) WhoAmI(ctx context.Context) (*Identity, error) {
	a, err := doJSON[struct {
		Auth bool   `json:"auth"`
		Role string `json:"role"`
	}](ctx, c, &request{method: http.MethodGet, path: "/auth/whoami"})
	if err != nil {
		return nil, err
	}
	return &Identity{Auth: a.Auth, Role: a.Role}, nil
}
