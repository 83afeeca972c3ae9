package client_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testcluster"
)

func token(t *testing.T) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestTLSAndTokens: bare host:port endpoints mean https with a TLS
// option; WithTLSFiles and WithTLSConfig both reach a cluster that
// requires client certificates; tokens are sent on calls and watches,
// and the refusals match ErrUnauthorized and ErrForbidden.
func TestTLSAndTokens(t *testing.T) {
	dir := t.TempDir()
	admin, write, read := token(t), token(t), token(t)
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, fmt.Appendf(nil, "%s admin\n%s write\n%s read\n", admin, write, read), 0o600); err != nil {
		t.Fatal(err)
	}
	c := testcluster.Start(t, 3, testcluster.WithTLS(), testcluster.WithAuthTokensFile(tokens))
	files := c.CA().Issue(t, "client").Write(t, dir, "client", c.CA())
	var eps []string
	for _, i := range c.Running() {
		eps = append(eps, c.HTTPAddr(i)) // bare: https because of the TLS option
	}
	mk := func(opts ...client.Option) *client.Client {
		cl, err := client.New(eps, append(opts, client.WithRetryBackoff(10*time.Millisecond, 100*time.Millisecond))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cl.Close() })
		return cl
	}
	ctx := ctxT(t)

	writer := mk(client.WithTLSFiles(files.CA, files.Cert, files.Key), client.WithToken(write))
	if !strings.HasPrefix(writer.Endpoints()[0], "https://") {
		t.Fatalf("endpoints %v", writer.Endpoints())
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := writer.Watch(wctx, "tls/", client.WithStartIndex("1"))
	if _, err := writer.Put(ctx, "tls/a", []byte("v")); err != nil {
		t.Fatalf("Put over TLS with a write token: %v", err)
	}
	if ev, _ := next(t, events); ev.Key != "tls/a" {
		t.Fatalf("watch over TLS: %+v", ev)
	}

	reader := mk(client.WithTLSConfig(c.ClientTLS()), client.WithToken(read))
	if kv, err := reader.Get(ctx, "tls/a"); err != nil || string(kv.Value) != "v" {
		t.Fatalf("Get with a read token: %+v, %v", kv, err)
	}
	if id, err := reader.WhoAmI(ctx); err != nil || !id.Auth || id.Role != "read" {
		t.Fatalf("WhoAmI with a read token: %+v, %v", id, err)
	}
	if _, err := reader.Put(ctx, "tls/b", []byte("v")); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("Put with a read token: %v, want ErrForbidden", err)
	}
	if _, err := writer.Backup(ctx, &strings.Builder{}); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("Backup with a write token: %v, want ErrForbidden", err)
	}
	anonymous := mk(client.WithTLSConfig(c.ClientTLS()))
	if _, err := anonymous.WhoAmI(ctx); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("WhoAmI without a token: %v", err)
	}
	if _, err := anonymous.Get(ctx, "tls/a"); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("Get without a token: %v, want ErrUnauthorized", err)
	}
	if ev, _ := next(t, anonymous.Watch(ctx, "tls/")); ev.Type != client.EventError || !errors.Is(ev.Err, client.ErrUnauthorized) {
		t.Fatalf("Watch without a token: %+v", ev)
	}
}

// TestNewRefuses: New's errors.
func TestNewRefuses(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		eps  []string
		opts []client.Option
	}{
		"no endpoints":        {nil, nil},
		"empty endpoint":      {[]string{" "}, nil},
		"ftp":                 {[]string{"ftp://h:1"}, nil},
		"query":               {[]string{"http://h:1/?a=b"}, nil},
		"missing CA":          {[]string{"h:1"}, []client.Option{client.WithTLSFiles(filepath.Join(dir, "none.pem"), "", "")}},
		"CA not PEM":          {[]string{"h:1"}, []client.Option{client.WithTLSFiles(garbage, "", "")}},
		"cert without key":    {[]string{"h:1"}, []client.Option{client.WithTLSFiles("", garbage, "")}},
		"TLS and HTTP client": {[]string{"h:1"}, []client.Option{client.WithTLSFiles("", "", ""), client.WithHTTPClient(&http.Client{})}},
		"zero timeout":        {[]string{"h:1"}, []client.Option{client.WithAttemptTimeout(0)}},
		"backoff max < min":   {[]string{"h:1"}, []client.Option{client.WithRetryBackoff(time.Second, time.Millisecond)}},
	} {
		if _, err := client.New(tc.eps, tc.opts...); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	cl, err := client.New([]string{"127.0.0.1:8000", "http://127.0.0.1:8000/", "https://example.com:8443/raftkv/"})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(cl.Endpoints()); got != "[http://127.0.0.1:8000 https://example.com:8443/raftkv]" {
		t.Fatalf("Endpoints() = %s", got)
	}
}
