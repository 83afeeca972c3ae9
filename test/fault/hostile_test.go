package fault

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// badRequest is a malformed or hostile request with the status it must
// get. raw requests are written to the socket as they are.
type badRequest struct {
	name   string
	method string
	path   string
	body   []byte
	header map[string]string
	raw    string
	want   int
}

func badRequests(cas, idem bool) []badRequest {
	big := bytes.Repeat([]byte("x"), 2<<20)
	reqs := []badRequest{
		{name: "value over MAX_VALUE_BYTES", method: "PUT", path: "/kv/big", body: big, want: 413},
		{name: "10 MiB Content-Length with Expect: 100-continue", raw: "PUT /kv/x HTTP/1.1\r\nHost: h\r\nContent-Length: 10485760\r\nExpect: 100-continue\r\n\r\n", want: 413},
		{name: "100 KiB header", method: "GET", path: "/kv/x", header: map[string]string{"X-Big": strings.Repeat("a", 100<<10)}, want: 431},
		{name: "empty key", method: "PUT", path: "/kv/", body: []byte("v"), want: 400},
		{name: "key over MAX_KEY_BYTES", method: "PUT", path: "/kv/" + strings.Repeat("k", 2048), body: []byte("v"), want: 400},
		{name: "malformed escape in key", raw: "GET /kv/%zz HTTP/1.1\r\nHost: h\r\n\r\n", want: 400},
		{name: "invalid UTF-8 key", method: "PUT", path: "/kv/%FF%FE", body: []byte("v"), want: 400},
		{name: "unknown consistency", method: "GET", path: "/kv/x?consistency=bogus", want: 400},
		{name: "parameter given twice", method: "GET", path: "/get?key=a&key=b", want: 400},
		{name: "missing value", method: "GET", path: "/set?key=a", want: 400},
		{name: "wrong method", method: "PATCH", path: "/kv/x", want: 405},
		{name: "unknown path", method: "GET", path: "/nope", want: 404},
		{name: "join with unspecified address", method: "POST", path: "/join?nodeId=evil&raftAddr=0.0.0.0:7000", want: 400},
		{name: "join with a bad node id", method: "POST", path: "/join?nodeId=bad%20id&raftAddr=198.18.255.99:9000", want: 400},
		{name: "join without an address", method: "POST", path: "/join?nodeId=evil", want: 400},
		{name: "leave of an unknown node", method: "POST", path: "/leave?nodeId=nosuch", want: 404},
		{name: "Transfer-Encoding: gzip", raw: "PUT /kv/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", want: 501},
		{name: "two different Content-Lengths", raw: "PUT /kv/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", want: 400},
		{name: "HTTP/1.1 without Host", raw: "GET /health HTTP/1.1\r\n\r\n", want: 400},
	}
	if cas {
		reqs = append(reqs,
			badRequest{name: "non-numeric cas", method: "PUT", path: "/kv/x?cas=abc", body: []byte("v"), want: 400},
			badRequest{name: "negative cas", method: "DELETE", path: "/kv/x?cas=-1", want: 400},
			badRequest{name: "non-numeric min_index", method: "GET", path: "/kv/x?min_index=abc", want: 400},
		)
	}
	if idem {
		reqs = append(reqs, badRequest{name: "oversize idempotency key", method: "PUT", path: "/kv/x", body: []byte("v"),
			header: map[string]string{"Idempotency-Key": strings.Repeat("i", 4096)}, want: 400})
	}
	return reqs
}

// hostile (S16) stops the load, then sends bad requests to every node,
// holds slowloris connections and a slow body open against one node while
// a fresh client keeps being served, and throws garbage at a raft port.
// Nothing may be applied: every node's applied index stays put.
func hostile(r *run) {
	t, c := r.t, r.c
	r.w.stop()
	r.c.waitConverged(15*time.Second, r.w.keys)
	before := appliedIndexes(r)

	end := r.begin("bad requests to every node")
	reqs := badRequests(r.cas, r.idem)
	for _, n := range c.Nodes {
		for _, br := range reqs {
			start := time.Now()
			code, err := sendBad(n.HTTPAddr, br)
			took := time.Since(start)
			switch {
			case err != nil:
				t.Errorf("S16 %s via %s: %v", br.name, n.Name, err)
			case code != br.want:
				t.Errorf("S16 %s via %s: status %d, want %d", br.name, n.Name, code, br.want)
			case took > time.Second:
				t.Errorf("S16 %s via %s: answered in %v, want < 1s", br.name, n.Name, took)
			}
		}
	}
	end()

	target := c.Nodes[r.leader()]
	end = r.begin(fmt.Sprintf("20 slowloris connections and a slow body to %s", target.Name))
	closed, slowBody := slowloris(target.HTTPAddr, 20), slowPut(target.HTTPAddr)
	// A fresh client is served promptly throughout (reads and health).
	fresh := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{Proxy: nil}}
	var worst time.Duration
	for deadline := time.Now().Add(7 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		for _, path := range []string{"/health", "/kv/r0"} {
			start := time.Now()
			resp, err := fresh.Get(target.URL(path))
			took := time.Since(start)
			worst = max(worst, took)
			if err != nil {
				t.Errorf("S16 fresh client GET %s during slowloris: %v", path, err)
				continue
			}
			resp.Body.Close()
			if took > time.Second {
				t.Errorf("S16 fresh client GET %s during slowloris took %v", path, took)
			}
		}
	}
	r.res.notes = append(r.res.notes, fmt.Sprintf("fresh client worst latency %v", worst.Round(time.Millisecond)))
	// The server drops header tricklers at its ReadHeaderTimeout (5s).
	select {
	case d := <-closed:
		r.res.notes = append(r.res.notes, fmt.Sprintf("slowloris closed after %v", d.Round(100*time.Millisecond)))
		if d > 8*time.Second {
			t.Errorf("S16 slowloris connections held for %v (ReadHeaderTimeout is 5s)", d)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("S16 slowloris connections still open after 12s")
	}
	slowBody.Close()
	end()

	end = r.begin("garbage to the raft port of " + c.Nodes[0].Name)
	garbage := make([]byte, 4096)
	_, _ = rand.Read(garbage)
	for _, payload := range [][]byte{garbage, []byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n")} {
		if conn, err := net.DialTimeout("tcp", c.Nodes[0].RaftAddr, time.Second); err == nil {
			_ = conn.SetDeadline(time.Now().Add(time.Second))
			_, _ = conn.Write(payload)
			_, _ = io.Copy(io.Discard, conn)
			conn.Close()
		}
	}
	end()

	time.Sleep(time.Second)
	after := appliedIndexes(r)
	for i := range before {
		if after[i] != before[i] {
			t.Errorf("S16: %s applied index moved from %d to %d: a hostile request was applied", c.Nodes[i].Name, before[i], after[i])
		}
	}
	c.waitReady(10 * time.Second)
}

func appliedIndexes(r *run) []uint64 {
	var out []uint64
	for i := range r.c.Nodes {
		st, err := r.c.Nodes[i].Status()
		if err != nil {
			r.t.Fatal(err)
		}
		out = append(out, st.AppliedIndex)
	}
	return out
}

// sendBad sends one bad request and returns the status it got.
func sendBad(addr string, br badRequest) (int, error) {
	if br.raw != "" {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Write([]byte(br.raw)); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	req, err := http.NewRequest(br.method, "http://"+addr+br.path, bytes.NewReader(br.body))
	if err != nil {
		return 0, err
	}
	for k, v := range br.header {
		req.Header.Set(k, v)
	}
	cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// slowloris opens n connections that send a request line and then one
// header byte every 300ms, never finishing the headers. The channel gets
// how long it took until the server had closed all of them.
func slowloris(addr string, n int) <-chan time.Duration {
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			gone := make(chan struct{})
			go func() {
				_, _ = io.Copy(io.Discard, conn) // returns when the server closes
				close(gone)
			}()
			_, _ = fmt.Fprintf(conn, "GET /health HTTP/1.1\r\nHost: h\r\nX-Slow-%d: ", i)
			for {
				select {
				case <-gone:
					return
				case <-time.After(300 * time.Millisecond):
				}
				if time.Since(start) > 30*time.Second {
					return
				}
				_, _ = conn.Write([]byte("a"))
			}
		}()
	}
	done := make(chan time.Duration, 1)
	go func() {
		wg.Wait()
		done <- time.Since(start)
	}()
	return done
}

// slowPut starts a PUT whose body trickles in and never completes; the
// caller closes the connection, so the write must never be applied.
func slowPut(addr string) io.Closer {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return io.NopCloser(nil)
	}
	stop := make(chan struct{})
	go func() {
		_, _ = conn.Write([]byte("PUT /kv/slow-body HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n"))
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			if _, err := conn.Write([]byte("b")); err != nil {
				return
			}
		}
	}()
	return closerFunc(func() error {
		close(stop)
		return conn.Close()
	})
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }
