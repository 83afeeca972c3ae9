package ui

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func serve(method, target string, header http.Header) (*httptest.ResponseRecorder, error) {
	req := httptest.NewRequest(method, target, nil)
	for k, vs := range header {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	err := Serve(rec, req)
	return rec, err
}

// TestServe: each file comes with its type, the security headers and an
// ETag that answers a revalidation with 304; HEAD is GET without the
// body; /ui redirects relatively to /ui/; anything else is ErrNotFound.
func TestServe(t *testing.T) {
	for _, tt := range []struct{ path, ctype, contains string }{
		{"/ui/", "text/html; charset=utf-8", "<title>raftkv console</title>"},
		{"/ui/index.html", "text/html; charset=utf-8", "<title>raftkv console</title>"},
		{"/ui/app.js", "text/javascript; charset=utf-8", "'use strict'"},
		{"/ui/style.css", "text/css; charset=utf-8", ":root"},
	} {
		rec, err := serve(http.MethodGet, tt.path, nil)
		if err != nil || rec.Code != 200 {
			t.Fatalf("GET %s: %d %v", tt.path, rec.Code, err)
		}
		h := rec.Header()
		if h.Get("Content-Type") != tt.ctype || !strings.Contains(rec.Body.String(), tt.contains) {
			t.Errorf("GET %s: Content-Type %q, body without %q", tt.path, h.Get("Content-Type"), tt.contains)
		}
		for name, want := range map[string]string{
			"Content-Security-Policy": ContentSecurityPolicy,
			"X-Content-Type-Options":  "nosniff",
			"X-Frame-Options":         "DENY",
			"Referrer-Policy":         "no-referrer",
			"Cache-Control":           "no-cache",
		} {
			if got := h.Get(name); got != want {
				t.Errorf("GET %s: %s %q, want %q", tt.path, name, got, want)
			}
		}
		etag := h.Get("ETag")
		if !regexp.MustCompile(`^"[0-9a-f]{32}"$`).MatchString(etag) {
			t.Errorf("GET %s: ETag %q", tt.path, etag)
		}
		rec, _ = serve(http.MethodGet, tt.path, http.Header{"If-None-Match": {etag}})
		if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
			t.Errorf("GET %s If-None-Match its ETag: %d, %d bytes; want 304, none", tt.path, rec.Code, rec.Body.Len())
		}
		rec, _ = serve(http.MethodGet, tt.path, http.Header{"If-None-Match": {`"0000"`}})
		if rec.Code != 200 {
			t.Errorf("GET %s If-None-Match another ETag: %d", tt.path, rec.Code)
		}
		head, _ := serve(http.MethodHead, tt.path, nil)
		full, _ := serve(http.MethodGet, tt.path, nil)
		if head.Code != 200 || head.Body.Len() != 0 || head.Header().Get("Content-Length") != strconv.Itoa(full.Body.Len()) ||
			head.Header().Get("ETag") != etag {
			t.Errorf("HEAD %s: %d, %d body bytes, Content-Length %q, ETag %q", tt.path, head.Code, head.Body.Len(), head.Header().Get("Content-Length"), head.Header().Get("ETag"))
		}
	}
	if a, b := files["app.js"].etag, files["style.css"].etag; a == b {
		t.Errorf("two files share the ETag %s", a)
	}

	rec, err := serve(http.MethodGet, "/ui", nil)
	if err != nil || rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "ui/" {
		t.Errorf("GET /ui: %d Location %q %v; want 301 to the relative ui/", rec.Code, rec.Header().Get("Location"), err)
	}
	for _, p := range []string{"/ui/nope.js", "/ui/static/app.js", "/ui//app.js", "/ui/../ui/app.js", "/other"} {
		if _, err := serve(http.MethodGet, p, nil); err != ErrNotFound {
			t.Errorf("GET %s: %v, want ErrNotFound", p, err)
		}
	}
}

// TestNoInlineCodeOrRemoteFetch: the files keep to the CSP (scripts only
// from app.js, no inline handlers or styles) and fetch nothing from
// elsewhere: no absolute URL, so nothing leaves the node.
func TestNoInlineCodeOrRemoteFetch(t *testing.T) {
	html := string(files["index.html"].body)
	scripts := regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script>`).FindAllStringSubmatch(html, -1)
	if len(scripts) != 1 || !strings.Contains(scripts[0][1], `src="app.js"`) || strings.TrimSpace(scripts[0][2]) != "" {
		t.Errorf("index.html must load app.js and nothing inline: %q", scripts)
	}
	if m := regexp.MustCompile(`(?i)\s(on[a-z]+|style)\s*=`).FindString(html); m != "" {
		t.Errorf("index.html has an inline attribute %q (blocked by the CSP)", m)
	}
	if strings.Contains(html, "<style") {
		t.Error("index.html has an inline <style> (blocked by the CSP)")
	}
	for name, f := range files {
		if m := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/`).FindString(string(f.body)); m != "" {
			t.Errorf("%s names a remote URL %q: the console must fetch nothing from elsewhere", name, m)
		}
	}
	total := 0
	for name, f := range files {
		if name != "" {
			total += len(f.body)
		}
	}
	if total > 64<<10 {
		t.Errorf("the console is %d bytes; keep it small (64 KiB)", total)
	}
}
