package integration

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/httpapi"
	"github.com/raftkv/raftkv/internal/testcluster"
)

// TestEveryBodyIsCapped: every endpoint that reads a request body refuses
// one over its limit with 413 too_large, whether the length is declared
// or the body is chunked (so only reading can tell), and applies nothing.
func TestEveryBodyIsCapped(t *testing.T) {
	const maxValue = 1024
	c := testcluster.Start(t, 1, testcluster.WithMaxValueBytes(maxValue))
	// Percent-encoding may triple the key and value on the wire.
	formLimit := 3*(c.MaxKeyBytes()+maxValue) + 4096
	// The peer protocol allows a 4 MiB batch plus one largest command.
	applyLimit := 4<<20 + formLimit
	form := "application/x-www-form-urlencoded"
	tests := []struct {
		method, path, contentType string
		size                      int
	}{
		{http.MethodPost, "/set", form, formLimit + 1},
		{http.MethodPost, "/get", form, formLimit + 1},
		{http.MethodPost, "/remove", form, formLimit + 1},
		{http.MethodPost, "/join", form, formLimit + 1},
		{http.MethodPost, "/leave", form, formLimit + 1},
		{http.MethodPut, "/kv/big", "application/octet-stream", maxValue + 1},
		{http.MethodPost, "/txn", "application/json", httpapi.MaxTxnBodyBytes + 1},
		{http.MethodPost, "/internal/apply", "application/octet-stream", applyLimit + 1},
	}
	client := &http.Client{Timeout: 10 * time.Second}
	before := c.Node(0).FSM().AppliedIndex()
	for _, tt := range tests {
		for _, chunked := range []bool{false, true} {
			name := tt.method + " " + tt.path + " declared"
			if chunked {
				name = tt.method + " " + tt.path + " chunked"
			}
			t.Run(name, func(t *testing.T) {
				body := "key=k&value=" + strings.Repeat("v", tt.size)
				var rd io.Reader = strings.NewReader(body[:tt.size])
				if chunked {
					rd = io.MultiReader(rd) // hides the length: sent chunked
				}
				req, err := http.NewRequest(tt.method, c.URL(0)+tt.path, rd)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", tt.contentType)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				r, err := testcluster.ReadResponse(resp)
				if err != nil {
					t.Fatal(err)
				}
				if chunked != (req.ContentLength <= 0) {
					t.Fatalf("request sent with ContentLength %d", req.ContentLength)
				}
				if r.Status != http.StatusRequestEntityTooLarge || r.Code() != "too_large" {
					t.Fatalf("%d-byte body: %s, want 413 too_large", tt.size, r.Summary())
				}
			})
		}
	}
	if after := c.Node(0).FSM().AppliedIndex(); after != before {
		t.Fatalf("applied index moved from %d to %d", before, after)
	}
}
