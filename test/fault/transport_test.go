package fault

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
)

// A write that reached a node whose connection then broke must come back
// as an error that is not a refused dial, even with an Idempotency-Key
// (which makes Go's transport resend a rewindable request on a new
// connection when a kept-alive one broke, and the resend's refused dial
// would read as "never sent"). The node here answers a first request,
// then reads the write, stops listening and drops the connection.
func TestWriteReachingADyingNodeIsNotNotSent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			got <- err.Error()
			return
		}
		if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")); err != nil {
			got <- err.Error()
			return
		}
		req, err := http.ReadRequest(br)
		ln.Close() // every later dial is refused
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(req.Body)
		got <- req.Header.Get("Idempotency-Key") + " " + string(b)
	}()
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	ctx := context.Background()
	url := "http://" + ln.Addr().String()
	resp, err := client.Do(newRequest(ctx, http.MethodGet, url+"/status", nil, ""))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close() // the connection goes back to the pool
	resp, err = client.Do(newRequest(ctx, http.MethodPut, url+"/kv/a", []byte("v"), "rid-1"))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("the dying node answered %d", resp.StatusCode)
	}
	if s := <-got; s != "rid-1 v" {
		t.Fatalf("the node read %q", s)
	}
	if notSent(err) {
		t.Fatalf("a write the node read is reported as never sent: %v", err)
	}
	if a := (attempt{err: err}).classify(opPut); a != outcomeUnknown {
		t.Fatalf("outcome %s, want unknown (%v)", a, err)
	}
}
