package fault

import (
	"bufio"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestClientResentWriteIsNotFailed pins the outcome of a write whose first
// copy reached a node that then died (S7, seed 1795997580772088718: a put
// with an idempotency key sent to a follower just before its SIGKILL was
// forwarded, sat in the leader's log and committed after the restart, but
// was recorded as "definitely not applied", and porcupine found a write
// nobody had made).
//
// Go's Transport treats a request with an Idempotency-Key header as
// replayable: when the reused connection breaks before the answer, it
// resends the request on a new connection, and if that dial is refused,
// Do returns the dial error. The client must still call the outcome
// unknown, because the first copy was written.
func TestClientResentWriteIsNotFailed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/kv/a"
	received := make(chan string, 4)
	go func() {
		// One connection: answer the first request, then take the second
		// (the write), stop listening and drop the connection unanswered,
		// like a node killed while forwarding it.
		defer ln.Close()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(conn)
		for i := range 2 {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			received <- req.Method + " " + req.Header.Get("Idempotency-Key")
			if i == 0 {
				if _, err := conn.Write([]byte("HTTP/1.1 200 OK\r\nX-Raft-Index: 3\r\nContent-Length: 1\r\n\r\nx")); err != nil {
					return
				}
				continue
			}
			ln.Close()
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // reset, as a killed process's socket is
			}
		}
	}()

	w := &workload{h: newHistory(), opts: workloadOpts{seed: 1}}
	cl := w.newClient(0, nil)
	if a := cl.send(http.MethodGet, url, nil, "", 5*time.Second); a.err != nil || a.status != http.StatusOK {
		t.Fatalf("first request (opens the connection to reuse): %+v", a)
	}
	a := cl.send(http.MethodPut, url, []byte("v"), "rid-1", 5*time.Second)
	<-received // the GET
	select {
	case got := <-received:
		if got != "PUT rid-1" {
			t.Fatalf("server received %q, want the PUT with its idempotency key", got)
		}
	default:
		t.Fatal("the write never reached the server; the test did not set up the case")
	}
	if !notSent(a.err) {
		t.Fatalf("want the Transport's resend to end in a dial error (the case under test), got err %v", a.err)
	}
	if got := a.classify(opPut); got != outcomeUnknown {
		t.Fatalf("a write the server received, then a dial error on the Transport's resend: outcome %s, want %s (err %v, wrote %v)",
			got, outcomeUnknown, a.err, a.wrote)
	}
	o := &op{Kind: opPut}
	a.fill(o)
	if o.Unexpected {
		t.Fatalf("a connection error is an allowed outcome: %+v", o)
	}

	// A request that never found a connection is still definitely not
	// applied: the listener is gone, so a fresh client's dial is refused.
	fresh := w.newClient(1, nil)
	b := fresh.send(http.MethodPut, url, []byte("v"), "rid-2", 5*time.Second)
	if !notSent(b.err) || b.wrote {
		t.Fatalf("fresh client: want a refused dial that wrote nothing, got err %v wrote %v", b.err, b.wrote)
	}
	if got := b.classify(opPut); got != outcomeFail {
		t.Fatalf("a write that was never sent: outcome %s, want %s", got, outcomeFail)
	}
}
