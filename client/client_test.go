package client_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testcluster"
)

// ctxT is a context for one call of a test, bounded well below the test's
// own timeout.
func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newClient is a client of the listed members of c (all when none).
func newClient(t *testing.T, c *testcluster.Cluster, members ...int) *client.Client {
	t.Helper()
	if len(members) == 0 {
		members = c.Running()
	}
	var eps []string
	for _, i := range members {
		eps = append(eps, c.URL(i))
	}
	cl, err := client.New(eps, client.WithRetryBackoff(10*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// testKV runs the key calls through cl (a client of a follower only: the
// server forwards, and the answers carry the leader's indexes).
func testKV(t *testing.T, cl *client.Client) {
	ctx := ctxT(t)

	idx, err := cl.Put(ctx, "a/b c", []byte("v1"))
	if err != nil || idx == 0 {
		t.Fatalf("Put: %d, %v", idx, err)
	}
	kv, err := cl.Get(ctx, "a/b c")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(kv.Value) != "v1" || kv.ModIndex != idx || kv.CreateIndex != idx || kv.Key != "a/b c" {
		t.Fatalf("Get = %+v, want v1 at %d", kv, idx)
	}
	bin := []byte{0xff, 0xfe, 0, '\n'}
	binIdx, err := cl.Put(ctx, "bin", bin)
	if err != nil {
		t.Fatal(err)
	}
	if kv, err := cl.Get(ctx, "bin", client.WithConsistency(client.Stale), client.WithMinIndex(binIdx)); err != nil || !bytes.Equal(kv.Value, bin) {
		t.Fatalf("Get bin = %+v, %v", kv, err)
	}
	// CAS: a stale token fails with the current mod_index.
	idx2, err := cl.Put(ctx, "a/b c", []byte("v2"), client.WithCAS(idx))
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.Put(ctx, "a/b c", []byte("v3"), client.WithCAS(idx))
	var e *client.Error
	if !errors.Is(err, client.ErrCompareFailed) || !errors.As(err, &e) || e.Index != idx2 || e.Status != 409 {
		t.Fatalf("stale CAS: %v, want ErrCompareFailed with index %d", err, idx2)
	}
	if _, err := cl.Put(ctx, "a/b c", []byte("x"), client.WithCAS(0)); !errors.Is(err, client.ErrCompareFailed) {
		t.Fatalf("cas=0 on a present key: %v", err)
	}
	if _, err := cl.Delete(ctx, "a/b c", client.WithCAS(idx)); !errors.Is(err, client.ErrCompareFailed) {
		t.Fatalf("stale CAS delete: %v", err)
	}
	if _, err := cl.Delete(ctx, "a/b c", client.WithCAS(idx2)); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := cl.Get(ctx, "a/b c"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Get after delete: %v, want ErrNotFound", err)
	}
	if _, err := cl.Delete(ctx, "a/b c"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Delete of an absent key: %v, want ErrNotFound", err)
	}

	// Keys travel byte-exact in the path, whatever they hold.
	odd := []string{"esc/a?b#c", "esc/100%", "esc/é ü", "esc//x/../y", "esc/+&=;"}
	for _, k := range odd {
		if _, err := cl.Put(ctx, k, []byte(k)); err != nil {
			t.Fatalf("Put %q: %v", k, err)
		}
		if kv, err := cl.Get(ctx, k); err != nil || string(kv.Value) != k {
			t.Fatalf("Get %q = %+v, %v", k, kv, err)
		}
	}
	if n, _, err := cl.Count(ctx, "esc/"); err != nil || n != int64(len(odd)) {
		t.Fatalf("Count esc/ = %d, %v", n, err)
	}
}
