package integration

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testcluster"
)

// TestSizeLimitsOnDecodedValues: MAX_VALUE_BYTES and MAX_KEY_BYTES apply
// to the decoded key and value on every path: a form-encoded /set whose
// value is under the limit succeeds however much percent-encoding swells
// it on the wire, and each refusal names the setting.
func TestSizeLimitsOnDecodedValues(t *testing.T) {
	c := testcluster.Start(t, 1)
	maxValue, maxKey := c.MaxValueBytes(), c.MaxKeyBytes()
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	// "é" is two bytes, "%C3%A9" on the wire: three wire bytes per byte.
	encoded := func(n int) string { return strings.Repeat("é", n/2) }
	tests := []struct {
		name, method, target string
		body                 string
		status               int
		mention              string
	}{
		{"form 400 KB", "POST", "/set", url.Values{"key": {"f400"}, "value": {encoded(400 << 10)}}.Encode(), 200, ""},
		{"form at the limit, all escaped", "POST", "/set", url.Values{"key": {"fmax"}, "value": {encoded(maxValue)}}.Encode(), 200, ""},
		{"form ASCII 400 KB", "POST", "/set", url.Values{"key": {"fa"}, "value": {strings.Repeat("a", 400<<10)}}.Encode(), 200, ""},
		{"form one byte over", "POST", "/set", url.Values{"key": {"fo"}, "value": {strings.Repeat("a", maxValue+1)}}.Encode(), 413, "MAX_VALUE_BYTES"},
		{"form escaped over", "POST", "/set", url.Values{"key": {"fe"}, "value": {encoded(maxValue + 2)}}.Encode(), 413, "MAX_VALUE_BYTES"},
		{"form key over", "POST", "/set", url.Values{"key": {strings.Repeat("k", maxKey+1)}, "value": {"v"}}.Encode(), 400, "MAX_KEY_BYTES"},
		{"form escaped key at the limit", "POST", "/set", url.Values{"key": {encoded(maxKey)}, "value": {"v"}}.Encode(), 200, ""},
		{"PUT one byte over", "PUT", "/kv/po", strings.Repeat("a", maxValue+1), 413, "MAX_VALUE_BYTES"},
		{"path key over", "PUT", "/kv/" + url.PathEscape(encoded(maxKey+2)), "v", 400, "MAX_KEY_BYTES"},
		{"query escaped key at the limit", "GET", "/set?" + url.Values{"key": {encoded(maxKey - 2)}, "value": {"v"}}.Encode(), "", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h http.Header
			if tt.method == "POST" {
				h = form
			}
			r := c.MustDo(t, 0, tt.method, tt.target, []byte(tt.body), h)
			if r.Status != tt.status {
				t.Fatalf("%s, want %d", r.Summary(), tt.status)
			}
			if tt.mention != "" && !strings.Contains(r.String("error"), tt.mention) {
				t.Fatalf("error %q does not name %s", r.String("error"), tt.mention)
			}
		})
	}
	if e, ok := c.Node(0).FSM().Get("f400"); !ok || e.Value != encoded(400<<10) {
		t.Fatalf("form value not stored as sent (present %v, %d bytes)", ok, len(e.Value))
	}
	for _, k := range []string{"fo", "fe", "po"} {
		if _, ok := c.Node(0).FSM().Get(k); ok {
			t.Errorf("refused key %q was written", k)
		}
	}
}

// TestOversizedBodyWithoutExpect: a client that writes its whole 5 MB body
// before reading (no "Expect: 100-continue", as Python's http.client does)
// gets the 413, not a reset connection, declared length or chunked.
func TestOversizedBodyWithoutExpect(t *testing.T) {
	c := testcluster.Start(t, 1)
	const size = 5 << 20
	for _, tt := range []struct {
		name, method, target, contentType string
		chunked                           bool
	}{
		{"PUT /kv declared", "PUT", "/kv/big", "application/octet-stream", false},
		{"PUT /kv chunked", "PUT", "/kv/big", "application/octet-stream", true},
		{"form /set declared", "POST", "/set", "application/x-www-form-urlencoded", false},
		{"form /set chunked", "POST", "/set", "application/x-www-form-urlencoded", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", c.HTTPAddr(0), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
				t.Fatal(err)
			}
			w := bufio.NewWriterSize(conn, 64<<10)
			fmt.Fprintf(w, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n", tt.method, tt.target, c.HTTPAddr(0), tt.contentType)
			body := []byte("key=big&value=" + strings.Repeat("v", size))[:size]
			if tt.chunked {
				fmt.Fprintf(w, "Transfer-Encoding: chunked\r\n\r\n")
				for off := 0; off < size; off += 64 << 10 {
					chunk := body[off:min(off+64<<10, size)]
					fmt.Fprintf(w, "%x\r\n%s\r\n", len(chunk), chunk)
				}
				fmt.Fprintf(w, "0\r\n\r\n")
			} else {
				fmt.Fprintf(w, "Content-Length: %d\r\n\r\n", size)
				_, _ = w.Write(body)
			}
			if err := w.Flush(); err != nil {
				t.Fatalf("writing the body failed (server cut the connection?): %v", err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer after sending the body: %v", err)
			}
			defer resp.Body.Close()
			r, err := testcluster.ReadResponse(resp)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			if r.Status != http.StatusRequestEntityTooLarge || r.Code() != "too_large" {
				t.Fatalf("%s, want 413 too_large", r.Summary())
			}
		})
	}
	if _, ok := c.Node(0).FSM().Get("big"); ok {
		t.Fatal("the oversized write was applied")
	}
}

// TestOversizedBodyWithExpect: a client that asks "Expect: 100-continue"
// for an oversized body is answered 413 at once, from the headers, and
// never invited to send the body (no 100 Continue).
func TestOversizedBodyWithExpect(t *testing.T) {
	c := testcluster.Start(t, 1)
	conn, err := net.DialTimeout("tcp", c.HTTPAddr(0), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Well under the one second a drain waits for a silent client.
	if err := conn.SetDeadline(time.Now().Add(700 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT /kv/big HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", c.HTTPAddr(0), 5<<20)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no prompt answer: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413 (and no 100 Continue)", resp.StatusCode)
	}
}
