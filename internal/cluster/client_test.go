package cluster

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestRequestBuilder: a node's own call carries its credential and no hop
// count; a forwarded call carries the client's credential and headers and
// one more hop; the scheme follows the TLS setting.
func TestRequestBuilder(t *testing.T) {
	ctx := context.Background()
	c := newClient(nil, func() string { return "node-token" }, time.Second)
	req, err := c.newRequest(ctx, call{method: http.MethodPost, addr: "127.0.0.1:1", uri: PathApply, hops: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := req.Header.Get("Authorization"); got != "Bearer node-token" {
		t.Fatalf("own call sends Authorization %q", got)
	}
	if req.URL.String() != "http://127.0.0.1:1/internal/apply" || req.Header.Get(HeaderForwarded) != "1" {
		t.Fatalf("own call: %s %q", req.URL, req.Header.Get(HeaderForwarded))
	}

	from := httptest.NewRequest(http.MethodPost, "/set?key=a&value=b", nil)
	from.Header.Set("Authorization", "Bearer client-token")
	from.Header.Set("Idempotency-Key", "k1")
	from.Header.Set(HeaderForwarded, "1")
	req, err = c.newRequest(ctx, call{method: from.Method, addr: "h:2", uri: "/set?key=a&value=b", from: from, requestID: "rid"})
	if err != nil {
		t.Fatal(err)
	}
	for h, want := range map[string]string{"Authorization": "Bearer client-token", "Idempotency-Key": "k1", HeaderForwarded: "2", "X-Request-Id": "rid"} {
		if got := req.Header.Get(h); got != want {
			t.Errorf("forwarded call: %s %q, want %q", h, got, want)
		}
	}

	off := newClient(nil, nil, time.Second)
	if req, _ := off.newRequest(ctx, call{method: http.MethodGet, addr: "h:1", uri: "/health"}); req.Header.Get("Authorization") != "" || req.Header.Get(HeaderForwarded) != "" {
		t.Fatalf("with auth off a node's own call sends no credential and no hop count: %v", req.Header)
	}
}

// TestSendClasses: a call that was never sent is ErrLeaderUnreachable; one
// that broke after sending is ErrForwardUnknown for a write and
// ErrForwardFailed for a read.
func TestSendClasses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // read the request, answer nothing
		}
	}))
	defer broken.Close()
	addr := strings.TrimPrefix(broken.URL, "http://")

	c := newClient(nil, nil, 2*time.Second)
	defer c.Close()
	tests := []struct {
		name, addr string
		write      bool
		want       error
	}{
		{"not sent", closed, true, ErrLeaderUnreachable},
		{"write lost", addr, true, ErrForwardUnknown},
		{"read lost", addr, false, ErrForwardFailed},
	}
	for _, tt := range tests {
		_, _, err := c.do(context.Background(), call{method: http.MethodPost, addr: tt.addr, uri: "/x", write: tt.write})
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

// TestRequestCarriesClusterID: every call, a node's own or a forward,
// carries the cluster id once the node has one, and none before.
func TestRequestCarriesClusterID(t *testing.T) {
	ctx := context.Background()
	id := ""
	c := newClient(nil, nil, time.Second)
	c.clusterID = func() string { return id }
	from := httptest.NewRequest(http.MethodPost, "/set?key=a&value=b", nil)
	for _, k := range []call{
		{method: http.MethodGet, addr: "h:1", uri: PathInfo},
		{method: http.MethodPost, addr: "h:1", uri: "/set?key=a&value=b", from: from},
	} {
		id = ""
		req, err := c.newRequest(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if got := req.Header.Get(HeaderClusterID); got != "" {
			t.Fatalf("%s %s without an id sends %s %q", k.method, k.uri, HeaderClusterID, got)
		}
		id = "0123456789abcdef"
		if req, _ = c.newRequest(ctx, k); req.Header.Get(HeaderClusterID) != id {
			t.Fatalf("%s %s sends %s %q, want %q", k.method, k.uri, HeaderClusterID, req.Header.Get(HeaderClusterID), id)
		}
	}
}
