package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testcluster"
	"github.com/raftkv/raftkv/internal/testwait"
)

// TestAPI runs every call once against one three-node cluster, through a
// follower (which forwards what the leader must serve). The subtests
// share the cluster and run in order; the last ones restore and move
// leadership.
func TestAPI(t *testing.T) {
	c := testcluster.Start(t, 3)
	cl := newClient(t, c, c.Followers(t)[0])

	t.Run("KV", func(t *testing.T) { testKV(t, cl) })

	t.Run("List", func(t *testing.T) {
		ctx := ctxT(t)
		for i := range 7 {
			if _, err := cl.Put(ctx, fmt.Sprintf("ls/k%d", i), []byte{byte('a' + i)}); err != nil {
				t.Fatal(err)
			}
		}
		for _, k := range []string{"ls/d/1", "ls/d/2", "ls/e/1"} {
			if _, err := cl.Put(ctx, k, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		res, err := cl.List(ctx, "ls/", client.WithPageSize(3))
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, kv := range res.Items {
			keys = append(keys, kv.Key)
		}
		want := "ls/d/1 ls/d/2 ls/e/1 ls/k0 ls/k1 ls/k2 ls/k3 ls/k4 ls/k5 ls/k6"
		if strings.Join(keys, " ") != want || !res.Consistent || res.Index == 0 {
			t.Fatalf("List pages of 3 = %v (index %d, consistent %v), want %s", keys, res.Index, res.Consistent, want)
		}
		if string(res.Items[4].Value) != "b" || res.Items[4].ModIndex == 0 {
			t.Fatalf("item %+v", res.Items[4])
		}
		res, err = cl.List(ctx, "ls/", client.WithSeparator("/"), client.WithKeysOnly(), client.WithPageSize(2))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Items) != 7 || res.Items[0].Value != nil || strings.Join(res.Prefixes, " ") != "ls/d/ ls/e/" {
			t.Fatalf("one level: %d items, prefixes %v", len(res.Items), res.Prefixes)
		}
		n, idx, err := cl.Count(ctx, "ls/")
		if err != nil || n != 10 || idx == 0 {
			t.Fatalf("Count = %d at %d, %v", n, idx, err)
		}
		deleted, _, err := cl.DeletePrefix(ctx, "ls/d/")
		if err != nil || deleted != 2 {
			t.Fatalf("DeletePrefix = %d, %v", deleted, err)
		}
		if n, _, _ := cl.Count(ctx, "ls/"); n != 8 {
			t.Fatalf("Count after DeletePrefix = %d", n)
		}
		if _, _, err := cl.DeletePrefix(ctx, ""); err == nil {
			t.Fatal("DeletePrefix of the whole store was sent")
		}
	})

	t.Run("TTLAndTouch", func(t *testing.T) {
		ctx := ctxT(t)
		if _, err := cl.Put(ctx, "ttl/a", []byte("v"), client.WithTTL(30*time.Second)); err != nil {
			t.Fatal(err)
		}
		kv, err := cl.Get(ctx, "ttl/a")
		if err != nil || kv.TTL <= 0 || kv.TTL > 30*time.Second || kv.Lease == 0 {
			t.Fatalf("Get of a TTL key = %+v, %v", kv, err)
		}
		ttl, err := cl.Touch(ctx, "ttl/a")
		if err != nil || ttl != 30*time.Second {
			t.Fatalf("Touch = %v, %v", ttl, err)
		}
		if _, err := cl.Touch(ctx, "ttl/absent"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("Touch of an absent key: %v", err)
		}
		var e *client.Error
		if _, err := cl.Put(ctx, "ttl/b", []byte("v"), client.WithTTL(time.Millisecond)); !errors.As(err, &e) || e.Status != 400 || e.Code != "bad_request" {
			t.Fatalf("a TTL of 1ms: %v, want 400 bad_request", err)
		}
	})

	t.Run("Txn", func(t *testing.T) {
		ctx := ctxT(t)
		idx, err := cl.Put(ctx, "acct/a", []byte("100"))
		if err != nil {
			t.Fatal(err)
		}
		bin := []byte{0xff, 0x00}
		resp, err := cl.Txn(ctx, client.Txn{
			Compare: []client.Compare{client.CompareModIndex("acct/a", "=", idx), client.CompareCreateIndex("acct/b", "=", 0)},
			Success: []client.Op{client.OpPut("acct/a", []byte("60")), client.OpPut("acct/b", bin), client.OpGet("acct/a"),
				client.OpDelete("acct/none"), client.OpList("acct/", 10)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if !resp.Succeeded || len(resp.Results) != 5 || resp.Results[0].Index != resp.Index || string(resp.Results[2].Value) != "60" ||
			!resp.Results[2].Found || resp.Results[3].Deleted != 0 || len(resp.Results[4].Items) != 2 || !bytes.Equal(resp.Results[4].Items[1].Value, bin) {
			t.Fatalf("Txn = %+v", resp)
		}
		// The same compare now fails: the failure branch runs.
		resp, err = cl.Txn(ctx, client.Txn{
			Compare: []client.Compare{client.CompareModIndex("acct/a", "=", idx)},
			Success: []client.Op{client.OpDelete("acct/a")},
			Failure: []client.Op{client.OpGet("acct/a"), client.OpDeletePrefix("acct/")},
		})
		if err != nil || resp.Succeeded || resp.Results[1].Deleted != 2 || resp.Results[0].ModIndex <= idx {
			t.Fatalf("failed compare: %+v, %v", resp, err)
		}
		var e *client.Error
		if _, err := cl.Txn(ctx, client.Txn{Success: []client.Op{{Op: "bogus", Key: "k"}}}); !errors.As(err, &e) || e.Status != 400 {
			t.Fatalf("a bad op: %v", err)
		}
		// A retry with the key answers the first outcome, replayed.
		tx := client.Txn{Success: []client.Op{client.OpPut("acct/c", []byte("1")), client.OpGet("acct/c")}}
		first, err := cl.Txn(ctx, tx, client.WithIdempotencyKey("txn-once"))
		if err != nil {
			t.Fatal(err)
		}
		again, err := cl.Txn(ctx, tx, client.WithIdempotencyKey("txn-once"))
		if err != nil || !again.Replayed || again.Index != first.Index || !again.Results[1].NotKept {
			t.Fatalf("replay: %+v, %v", again, err)
		}
		if _, err := cl.Put(ctx, "acct/c", []byte("2"), client.WithIdempotencyKey("txn-once")); !errors.Is(err, client.ErrKeyReused) {
			t.Fatalf("the key for another write: %v", err)
		}
	})

	t.Run("LeasesAndLocks", func(t *testing.T) {
		ctx := ctxT(t)
		l, err := cl.Grant(ctx, 10*time.Second)
		if err != nil || l.ID == 0 || l.TTL != 10*time.Second {
			t.Fatalf("Grant = %+v, %v", l, err)
		}
		if _, err := cl.Put(ctx, "svc/web/1", []byte("10.0.0.1"), client.WithLease(l.ID)); err != nil {
			t.Fatal(err)
		}
		info, err := cl.LeaseInfo(ctx, l.ID)
		if err != nil || info.KeyCount != 1 || info.Keys[0] != "svc/web/1" || info.GrantedTTL != 10*time.Second {
			t.Fatalf("LeaseInfo = %+v, %v", info, err)
		}
		if ka, err := cl.KeepAliveOnce(ctx, l.ID); err != nil || ka.TTL != 10*time.Second || ka.Index <= l.Index {
			t.Fatalf("KeepAliveOnce = %+v, %v", ka, err)
		}

		token, err := cl.Lock(ctx, "report", l.ID, 0)
		if err != nil || token == 0 {
			t.Fatalf("Lock = %d, %v", token, err)
		}
		other, err := cl.Grant(ctx, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var e *client.Error
		if _, err := cl.Lock(ctx, "report", other.ID, 0); !errors.Is(err, client.ErrLockHeld) || !errors.As(err, &e) || e.Index != token {
			t.Fatalf("Lock of a held lock: %v, want ErrLockHeld with token %d", err, token)
		}
		if again, err := cl.Lock(ctx, "report", l.ID, 0); err != nil || again != token {
			t.Fatalf("Lock by its holder's lease: %d, %v; want its token %d", again, err, token)
		}
		// The lock's token fences a write.
		resp, err := cl.Txn(ctx, client.Txn{Compare: []client.Compare{client.CompareCreateIndex("_locks/report", "=", token)},
			Success: []client.Op{client.OpPut("reports/today", []byte("done"))}})
		if err != nil || !resp.Succeeded {
			t.Fatalf("fenced write: %+v, %v", resp, err)
		}
		if err := cl.Unlock(ctx, "report", token+1000); !errors.Is(err, client.ErrCompareFailed) {
			t.Fatalf("Unlock with a wrong token: %v", err)
		}
		// A waiting Lock gets it once the holder unlocks.
		got := make(chan error, 1)
		var otherToken uint64
		go func() {
			var err error
			otherToken, err = cl.Lock(ctx, "report", other.ID, 2*time.Second)
			got <- err
		}()
		if err := cl.Unlock(ctx, "report", token); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil || otherToken <= token {
			t.Fatalf("waiting Lock = %d, %v", otherToken, err)
		}

		n, err := cl.Revoke(ctx, l.ID)
		if err != nil || n != 1 {
			t.Fatalf("Revoke = %d, %v", n, err)
		}
		if _, err := cl.Get(ctx, "svc/web/1"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("a key of a revoked lease: %v", err)
		}
		if _, err := cl.KeepAliveOnce(ctx, l.ID); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("KeepAliveOnce of a revoked lease: %v", err)
		}
		if err := <-cl.KeepAlive(ctx, l.ID); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("KeepAlive of a revoked lease: %v", err)
		}
	})

	t.Run("KeepAlive", func(t *testing.T) {
		ctx := ctxT(t)
		l, err := cl.Grant(ctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		kctx, cancel := context.WithCancel(ctx)
		done := cl.KeepAlive(kctx, l.ID)
		granted := time.Now()
		// Alive well past its TTL: the loop refreshed it.
		testwait.For(t, 10*time.Second, "the lease to outlive two TTLs", func() error {
			if _, err := cl.LeaseInfo(ctx, l.ID); err != nil {
				t.Fatalf("lease gone while kept alive: %v", err)
			}
			if time.Since(granted) < 2*time.Second {
				return errors.New("not yet")
			}
			return nil
		})
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("KeepAlive's final error = %v, want context.Canceled", err)
		}
		if _, ok := <-done; ok {
			t.Fatal("KeepAlive's channel not closed")
		}
	})

	t.Run("MembersAndStatus", func(t *testing.T) {
		ctx := ctxT(t)
		ms, err := cl.Members(ctx)
		if err != nil || len(ms) != 3 {
			t.Fatalf("Members = %+v, %v", ms, err)
		}
		leaders := 0
		for _, m := range ms {
			if m.Leader {
				leaders++
			}
			if !m.Reachable || m.Suffrage != "voter" || m.MatchIndex == nil || m.HTTPAddr == "" || m.State == "" || m.Term == nil || *m.Term == 0 || m.CommitIndex == nil {
				t.Fatalf("member %+v", m)
			}
		}
		if leaders != 1 {
			t.Fatalf("%d leaders in %+v", leaders, ms)
		}
		leader := c.Leader(t)
		st, err := cl.Status(ctx, c.HTTPAddr(leader))
		if err != nil || st.State != "Leader" || st.NodeID != c.ID(leader) || st.Leader != st.NodeID || st.AppliedIndex == 0 || len(st.Configuration) != 3 || st.ClusterID == "" {
			t.Fatalf("Status of the leader = %+v, %v", st, err)
		}
		if id, err := cl.WhoAmI(ctx); err != nil || id.Auth || id.Role != "admin" {
			t.Fatalf("WhoAmI without auth, from the nodes' host: %+v, %v", id, err)
		}
		any, err := cl.Status(ctx, "")
		if err != nil || any.State != "Follower" || any.Leader != c.ID(leader) {
			t.Fatalf("Status of the client's endpoint = %+v, %v", any, err)
		}
	})

	t.Run("BackupRestore", func(t *testing.T) {
		ctx := ctxT(t)
		if _, err := cl.Put(ctx, "bk/a", []byte("before")); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		n, err := cl.Backup(ctx, &buf)
		if err != nil || n == 0 || int64(buf.Len()) != n {
			t.Fatalf("Backup = %d, %v", n, err)
		}
		if _, err := cl.Put(ctx, "bk/a", []byte("after")); err != nil {
			t.Fatal(err)
		}
		res, err := cl.RestoreWithResult(ctx, bytes.NewReader(buf.Bytes()))
		if err != nil || res.Index == 0 {
			t.Fatalf("Restore = %+v, %v", res, err)
		}
		kv, err := cl.Get(ctx, "bk/a", client.WithMinIndex(res.Index))
		if err != nil || string(kv.Value) != "before" || kv.ModIndex != res.SnapshotIndex {
			t.Fatalf("after restore: %+v, %v", kv, err)
		}
		var e *client.Error
		if err := cl.Restore(ctx, strings.NewReader("not a backup")); !errors.As(err, &e) || e.Code != "bad_backup" {
			t.Fatalf("Restore of garbage: %v", err)
		}
	})

	t.Run("Membership", func(t *testing.T) {
		ctx := ctxT(t)
		leader := c.Leader(t)
		var target string
		for _, i := range c.Running() {
			if i != leader {
				target = c.ID(i)
				break
			}
		}
		if err := cl.TransferLeadership(ctx, target); err != nil {
			t.Fatal(err)
		}
		testwait.For(t, 10*time.Second, "leadership to move to "+target, func() error {
			if c.ID(c.Leader(t)) != target {
				return errors.New("not yet")
			}
			return nil
		})
		if err := cl.PromoteMember(ctx, "n9"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("PromoteMember of an unknown id: %v", err)
		}
		if err := cl.RemoveMember(ctx, "n9"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("RemoveMember of an unknown id: %v", err)
		}
		var e *client.Error
		if err := cl.AddMember(ctx, "n9", "127.0.0.1:1", "", false); !errors.As(err, &e) || e.Code != "joiner_unreachable" {
			t.Fatalf("AddMember of nothing: %v", err)
		}

		// A new node: added as a learner, promoted, removed.
		i := c.AddUnjoined(t)
		id := c.ID(i)
		if err := cl.AddMember(ctx, id, c.RaftAddr(i), c.HTTPAddr(i), false); err != nil {
			t.Fatalf("AddMember %s: %v", id, err)
		}
		suffrage := func() string {
			ms, err := cl.Members(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				if m.ID == id {
					return m.Suffrage
				}
			}
			return "absent"
		}
		if s := suffrage(); s != "learner" {
			t.Fatalf("%s after AddMember(voter=false): %s", id, s)
		}
		if err := cl.PromoteMember(ctx, id); err != nil {
			t.Fatalf("PromoteMember: %v", err)
		}
		testwait.For(t, 10*time.Second, id+" to be a voter", func() error {
			if s := suffrage(); s != "voter" {
				return fmt.Errorf("it is %s", s)
			}
			return nil
		})
		if err := cl.RemoveMember(ctx, id); err != nil {
			t.Fatalf("RemoveMember: %v", err)
		}
		if s := suffrage(); s != "absent" {
			t.Fatalf("%s after RemoveMember: %s", id, s)
		}
	})
}
