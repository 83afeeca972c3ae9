package httpapi

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/node"
)

// fakeStore is a Store with a real FSM and no Raft: writes are applied to
// the FSM directly, in order, at the next index.
type fakeStore struct {
	id      string
	f       *fsm.FSM
	leader  node.Leader
	members []node.Member
	err     error // returned by every membership call when set

	mu           sync.Mutex
	calls        []string // the leader-only calls made, for the tests
	storageFault error    // StorageFault's answer
	voteHeld     error    // VoteHeld's answer
}

func newFakeStore(t testing.TB) *fakeStore {
	t.Helper()
	return &fakeStore{
		id:      "n1",
		f:       fsm.New(),
		leader:  node.Leader{ID: "n1", RaftAddr: "127.0.0.1:9001", HTTPAddr: "127.0.0.1:8001"},
		members: []node.Member{{ID: "n1", RaftAddr: "127.0.0.1:9001", HTTPAddr: "127.0.0.1:8001", Voter: true, Suffrage: "voter", Leader: true}},
	}
}

// apply applies cmd to the FSM as the next log entry.
func (s *fakeStore) apply(cmd *fsm.Command) *fsm.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Apply(&raft.Log{Index: s.f.AppliedIndex() + 1, Type: raft.LogCommand, Data: cmd.Encode(nil)}).(*fsm.Result)
}

func (s *fakeStore) set(key, value string) *fsm.Result {
	return s.apply(&fsm.Command{Op: fsm.OpSet, Key: key, Value: value})
}

func (s *fakeStore) record(call string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, call)
	return s.err
}

func (s *fakeStore) ID() string { return s.id }
func (s *fakeStore) StorageFault() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storageFault
}
func (s *fakeStore) VoteHeld() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.voteHeld
}
func (s *fakeStore) FSM() *fsm.FSM { return s.f }
func (s *fakeStore) Leader() (node.Leader, bool) {
	return s.leader, s.leader.ID != ""
}
func (s *fakeStore) SinceLeaderContact() (time.Duration, bool) { return 3 * time.Millisecond, true }
func (s *fakeStore) Members(context.Context) ([]node.Member, error) {
	return s.members, s.err
}
func (s *fakeStore) Status(context.Context) (node.Status, error) {
	contact := 3.0 // SinceLeaderContact's
	return node.Status{ID: s.id, State: "Leader", AppliedIndex: s.f.AppliedIndex(), LastLogIndex: s.f.AppliedIndex(), LastContactMs: &contact, Configuration: s.members}, s.err
}
func (s *fakeStore) Snapshot(context.Context) (uint64, bool, error) {
	return s.f.AppliedIndex(), true, s.record("snapshot")
}
func (s *fakeStore) Removed() bool { return false }

func (s *fakeStore) Join(_ context.Context, id, raftAddr, httpAddr string, voter bool, _ func(context.Context) error) (node.JoinResult, error) {
	return node.JoinResult{Change: "added", Index: 7, Voter: voter}, s.record("join " + id + " " + raftAddr + " " + httpAddr)
}
func (s *fakeStore) Leave(_ context.Context, id string) (uint64, error) {
	return 8, s.record("leave " + id)
}
func (s *fakeStore) Promote(_ context.Context, id string) (node.JoinResult, error) {
	return node.JoinResult{Change: "promoted", Index: 9, Voter: true}, s.record("promote " + id)
}
func (s *fakeStore) TransferLeadership(_ context.Context, id string) (string, error) {
	return "n2", s.record("transfer " + id)
}
func (s *fakeStore) UploadDir() (string, error) { return "", s.record("upload") }
func (s *fakeStore) Restore(context.Context, io.ReadSeeker, fsm.BackupInfo) (node.RestoreResult, error) {
	return node.RestoreResult{}, s.record("restore")
}

// fakeCluster leads (applies to the store) unless follower is set, in
// which case OnLeader answers as the leader would, with a 299 that names
// the request it was sent.
type fakeCluster struct {
	store    *fakeStore
	follower bool
	err      error  // Propose and ReadIndex fail with it when set
	errVia   string // the leader Propose names with err (as if it went through the peer protocol)
	probes   map[string]cluster.Probe

	mu        sync.Mutex
	forwarded []cluster.Forward
}

func (c *fakeCluster) Propose(_ context.Context, cmd *fsm.Command) (*fsm.Result, string, error) {
	if c.err != nil {
		return nil, c.errVia, c.err
	}
	if c.follower {
		return c.store.apply(cmd), "n2", nil
	}
	return c.store.apply(cmd), "", nil
}

func (c *fakeCluster) ReadIndex(context.Context) (uint64, error) {
	return c.store.f.AppliedIndex(), c.err
}

// statusForwarded is what the fake leader answers a forwarded request.
const statusForwarded = 299

func (c *fakeCluster) OnLeader(w http.ResponseWriter, r *http.Request, f cluster.Forward, local func() error) (string, error) {
	if !c.follower {
		return "", local()
	}
	c.mu.Lock()
	c.forwarded = append(c.forwarded, f)
	c.mu.Unlock()
	if c.err != nil {
		return "n2@127.0.0.1:8002", c.err
	}
	w.Header().Set(HeaderServedBy, "n2")
	w.WriteHeader(statusForwarded)
	_, _ = io.WriteString(w, r.Method+" "+r.URL.RequestURI())
	return "n2@127.0.0.1:8002", nil
}

func (c *fakeCluster) BootstrapPending() error { return nil }

func (c *fakeCluster) Probe(_ context.Context, httpAddr string) cluster.Probe {
	return c.probes[httpAddr]
}

func (c *fakeCluster) CheckClusterID(*http.Request) error { return nil }

func (c *fakeCluster) CheckJoiner(context.Context, string, string, string) error { return nil }

func (c *fakeCluster) Info(context.Context) (cluster.PeerInfo, error) {
	return cluster.PeerInfo{ID: c.store.id}, nil
}

func (c *fakeCluster) ServeApply(context.Context, []byte, func(*fsm.Command) error) ([]byte, error) {
	return []byte("applied"), nil
}

func (c *fakeCluster) ServeReadIndex(context.Context) ([]byte, error) { return []byte("1"), c.err }

// newFakeService is a Service over a fake store and cluster.
func newFakeService(t testing.TB, opts Options) (*Service, *fakeStore, *fakeCluster) {
	t.Helper()
	st := newFakeStore(t)
	cl := &fakeCluster{store: st}
	if opts.MaxKeyBytes == 0 {
		opts.MaxKeyBytes = 1024
	}
	if opts.MaxValueBytes == 0 {
		opts.MaxValueBytes = 1 << 20
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = logrus.New()
		opts.Logger.SetOutput(io.Discard)
	}
	return New(st, cl, opts), st, cl
}

func (s *fakeStore) Leases() *fsm.Tracker { return fsm.NewTracker(s.f, nil) }
