package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/server"
)

// endpoints are the examples' cluster: one in-process node that
// TestMain starts (an Example has no *testing.T for testcluster). In your
// program they are your nodes' addresses, such as
// []string{"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"}.
var endpoints []string

func TestMain(m *testing.M) {
	code, err := runWithNode(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "example node:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

// runWithNode runs the tests with a one-node cluster for the examples.
func runWithNode(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "raftkv-client-example-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	env := map[string]string{"RAFT_NODE_ID": "n1", "BIND_ADDR": "127.0.0.1", "RAFT_VOLUME_DIR": dir}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		return 0, err
	}
	cfg.HTTPPort, cfg.RaftPort = 0, 0 // any free port
	logger := logrus.New()
	logger.SetOutput(io.Discard)
	srv, err := server.Start(cfg, server.WithLogger(logger))
	if err != nil {
		return 0, err
	}
	defer srv.Close()
	endpoints = []string{srv.HTTPAddr()}
	// The client's own retries wait out the election (503 no_leader).
	cl, err := client.New(endpoints)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cl.Put(ctx, "example/ready", []byte("1")); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

func Example() {
	c, err := client.New(endpoints)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := c.Put(ctx, "config/mode", []byte("fast")); err != nil {
		log.Fatal(err)
	}
	kv, err := c.Get(ctx, "config/mode")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s = %s\n", kv.Key, kv.Value)

	_, err = c.Get(ctx, "config/absent")
	fmt.Println(errors.Is(err, client.ErrNotFound))
	// Output:
	// config/mode = fast
	// true
}

// Compare-and-set: a write with the mod_index it read applies only if
// nobody changed the key since.
func ExampleWithCAS() {
	c, _ := client.New(endpoints)
	defer c.Close()
	ctx := context.Background()

	first, _ := c.Put(ctx, "counter", []byte("1"))
	if _, err := c.Put(ctx, "counter", []byte("2"), client.WithCAS(first)); err == nil {
		fmt.Println("2 written")
	}
	_, err := c.Put(ctx, "counter", []byte("3"), client.WithCAS(first)) // first is stale now
	var e *client.Error
	if errors.Is(err, client.ErrCompareFailed) && errors.As(err, &e) {
		fmt.Println("compare failed; current mod_index is newer:", e.Index > first)
	}
	// Output:
	// 2 written
	// compare failed; current mod_index is newer: true
}

func ExampleClient_List() {
	c, _ := client.New(endpoints)
	defer c.Close()
	ctx := context.Background()
	for _, k := range []string{"app/a", "app/b/x", "app/b/y", "app/c"} {
		if _, err := c.Put(ctx, k, []byte("v")); err != nil {
			log.Fatal(err)
		}
	}
	res, err := c.List(ctx, "app/", client.WithSeparator("/"), client.WithKeysOnly())
	if err != nil {
		log.Fatal(err)
	}
	for _, kv := range res.Items {
		fmt.Println("key", kv.Key)
	}
	fmt.Println("prefixes", res.Prefixes)
	// Output:
	// key app/a
	// key app/c
	// prefixes [app/b/]
}

// A transaction moves a key only if nobody changed it and the new name
// is free, in one step.
func ExampleClient_Txn() {
	c, _ := client.New(endpoints)
	defer c.Close()
	ctx := context.Background()
	idx, _ := c.Put(ctx, "cfg/old", []byte("v1"))
	resp, err := c.Txn(ctx, client.Txn{
		Compare: []client.Compare{client.CompareModIndex("cfg/old", "=", idx), client.CompareCreateIndex("cfg/new", "=", 0)},
		Success: []client.Op{client.OpPut("cfg/new", []byte("v1")), client.OpDelete("cfg/old")},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("succeeded:", resp.Succeeded, "deleted:", resp.Results[1].Deleted)
	// Output:
	// succeeded: true deleted: 1
}

// Watch from a known index: every change after it, in log order, even
// if the node serving the stream stops (the watch resumes elsewhere).
func ExampleClient_Watch() {
	c, _ := client.New(endpoints)
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // ends the watch

	start, _ := c.Put(ctx, "marker", nil)
	_, _ = c.Put(ctx, "jobs/1", []byte("queued"))
	_, _ = c.Put(ctx, "jobs/1", []byte("running"))
	_, _ = c.Delete(ctx, "jobs/1")

	for ev := range c.Watch(ctx, "jobs/", client.WithStartIndex(fmt.Sprint(start))) {
		switch ev.Type {
		case client.EventPut:
			fmt.Printf("put %s = %s\n", ev.Key, ev.Value)
		case client.EventDelete:
			fmt.Printf("delete %s\n", ev.Key)
			return
		case client.EventReset:
			fmt.Println("fell behind: List again, then Watch from the listing's Index")
			return
		}
	}
	// Output:
	// put jobs/1 = queued
	// put jobs/1 = running
	// delete jobs/1
}

// A lock held by a lease: its token fences the holder's writes.
func ExampleClient_Lock() {
	c, _ := client.New(endpoints)
	defer c.Close()
	ctx := context.Background()

	lease, err := c.Grant(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	kctx, stop := context.WithCancel(ctx)
	keepAlive := c.KeepAlive(kctx, lease.ID) // refreshes every TTL/3 until kctx ends
	token, err := c.Lock(ctx, "report", lease.ID, 5*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	// Written only while this holder still holds the lock.
	resp, err := c.Txn(ctx, client.Txn{
		Compare: []client.Compare{client.CompareCreateIndex("_locks/report", "=", token)},
		Success: []client.Op{client.OpPut("reports/today", []byte("done"))},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("fenced write applied:", resp.Succeeded)
	if err := c.Unlock(ctx, "report", token); err != nil {
		log.Fatal(err)
	}
	stop()
	fmt.Println("keepalive ended:", <-keepAlive)
	if _, err := c.Revoke(ctx, lease.ID); err != nil {
		log.Fatal(err)
	}
	// Output:
	// fenced write applied: true
	// keepalive ended: context canceled
}
