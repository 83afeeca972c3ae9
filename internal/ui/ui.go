// Package ui holds the web console (served at /ui by every node): three
// static files embedded in the binary (index.html, app.js, style.css),
// plain HTML, CSS and JavaScript with nothing fetched at run time, and the
// function that serves them with their headers. The page reads and writes
// through the ordinary API, which checks every call's role; these files
// are public. Design: DESIGN.md.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Prefix is the path the console is served under; Prefix without its
// trailing slash redirects to it.
const Prefix = "/ui/"

// ContentSecurityPolicy is sent with every file: scripts, styles and
// fetches from this origin only, no inline script or style, no plugins,
// frames, forms or base-URI tricks.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// ErrNotFound: the path names no file of the console.
var ErrNotFound = errors.New("no such file in the web console")

// file is one embedded file with what its answer needs.
type file struct {
	body        []byte
	contentType string
	etag        string // quoted: the first 16 bytes of its SHA-256, in hex
}

// files are the console's files by name ("" is index.html), read once.
var files = func() map[string]file {
	types := map[string]string{
		".html": "text/html; charset=utf-8",
		".js":   "text/javascript; charset=utf-8",
		".css":  "text/css; charset=utf-8",
	}
	out := map[string]file{}
	entries, err := static.ReadDir("static")
	if err != nil {
		panic("ui: embedded files: " + err.Error())
	}
	for _, e := range entries {
		b, err := static.ReadFile("static/" + e.Name())
		if err != nil {
			panic("ui: embedded files: " + err.Error())
		}
		ct, ok := types[path.Ext(e.Name())]
		if !ok {
			panic("ui: no content type for " + e.Name())
		}
		sum := sha256.Sum256(b)
		out[e.Name()] = file{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
	}
	out[""] = out["index.html"]
	return out
}()

// Names lists the files the console serves under Prefix ("" is the page
// itself, index.html), for tests.
func Names() []string {
	out := make([]string, 0, len(files))
	for name := range files {
		out = append(out, name)
	}
	return out
}

// Serve answers a GET or HEAD of Prefix (without its slash: a redirect to
// it) or of a file under it. Every file comes with its Content-Type,
// Content-Security-Policy, X-Content-Type-Options: nosniff,
// X-Frame-Options: DENY, Referrer-Policy: no-referrer, and an ETag (a
// hash of its content) with Cache-Control: no-cache, so a browser keeps
// it and revalidates it (If-None-Match: 304 Not Modified) on every use:
// a node upgraded to a new console serves the new files at once. A path
// that names no file is ErrNotFound, for the caller to answer.
func Serve(w http.ResponseWriter, r *http.Request) error {
	p := r.URL.Path
	if p == strings.TrimSuffix(Prefix, "/") {
		// Relative, so it holds behind a proxy that mounts the node
		// under a path of its own.
		w.Header().Set("Location", path.Base(Prefix)+"/")
		w.WriteHeader(http.StatusMovedPermanently)
		return nil
	}
	name, ok := strings.CutPrefix(p, Prefix)
	if !ok {
		return ErrNotFound
	}
	f, ok := files[name]
	if !ok {
		return ErrNotFound
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	// ServeContent answers If-None-Match (304), HEAD and ranges.
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
	return nil
}
