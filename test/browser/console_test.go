// Package browser_test drives the web console (/ui, internal/ui) in a real
// headless Chromium against a three-node in-process cluster with
// authentication on, through github.com/chromedp/chromedp.
//
// It needs Debian's chromium (apt-get install chromium; .ci/run installs
// it) or RAFTKV_CHROMIUM naming a Chrome or Chromium binary. Without one
// the test skips, except under CI=true, where it fails: CI must not pass
// by skipping it. Screenshots go to $RAFTKV_TEST_ARTIFACTS/<test> when that
// is set, else to t.ArtifactDir() (kept with `go test -artifacts`); the
// test logs where.
package browser_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/raftkv/raftkv/internal/testcluster"
	"github.com/raftkv/raftkv/internal/testwait"
)

// Bounds on the browser: the whole test, one DOM check, and one wait for
// the page to reach a state.
const (
	browserTimeout = 90 * time.Second
	evalTimeout    = 5 * time.Second
	pageWait       = 20 * time.Second
)

// chromium finds the browser binary, or skips (fails under CI=true).
func chromium(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("RAFTKV_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	msg := "no Chromium found (looked for $RAFTKV_CHROMIUM, chromium, chromium-browser, google-chrome): " +
		"install Debian's chromium (apt-get install chromium) to run the web console's browser test"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true, so this is a failure, not a skip")
	}
	t.Skip(msg)
	return ""
}

// browser starts a fresh headless Chromium (its own profile directory)
// and returns a tab's context, bounded by browserTimeout; cleanup closes
// it.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// A container's /dev/shm may be 64 MB: keep Chrome's shared memory
		// in the temporary directory instead.
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		// The HTTPS check's proxy has a self-signed certificate.
		chromedp.IgnoreCertErrors,
		chromedp.WindowSize(1280, 1000),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	ctx, cancelTime := context.WithTimeout(ctx, browserTimeout)
	t.Cleanup(func() { cancelTime(); cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// run runs browser actions, each call bounded by evalTimeout.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, evalTimeout)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page, bounded by
// evalTimeout.
func eval[T any](ctx context.Context, expr string) (T, error) {
	c, cancel := context.WithTimeout(ctx, evalTimeout)
	defer cancel()
	return chromedp.Run(c, chromedp.Evaluate[T](expr))
}

// waitPage polls a JavaScript expression that returns "" once the page is
// in the awaited state and otherwise says what it shows instead.
func waitPage(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	took := testwait.For(t, pageWait, what, func() error {
		got, err := eval[string](ctx, expr)
		if err != nil {
			return err
		}
		if got != "" {
			return errors.New(got)
		}
		return nil
	})
	if took > time.Second {
		t.Logf("waited %v for %s", took.Round(time.Millisecond), what)
	}
}

// visible is JavaScript: whether the element of the CSS selector exists
// and is rendered.
func visible(sel string) string {
	return fmt.Sprintf(`(function(){const e=document.querySelector(%q);return !!e && e.getClientRects().length>0})()`, sel)
}

// artifacts is where the test's screenshots go.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := t.ArtifactDir()
	if base := os.Getenv("RAFTKV_TEST_ARTIFACTS"); base != "" {
		dir = filepath.Join(base, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, evalTimeout)
	defer cancel()
	png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// apiGet is curl: a plain GET of the API with a bearer token.
func apiGet(url, token string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// signIn types token into the console's token form.
func signIn(t *testing.T, ctx context.Context, token string) {
	t.Helper()
	waitPage(t, ctx, "the token form", `document.getElementById('login').hidden ? 'no token form' : ''`)
	run(t, ctx, "sign in",
		chromedp.SetValue(chromedp.ID("token"), token),
		chromedp.Click(chromedp.ID("login-submit")),
	)
}

// TestConsole opens the console on a follower of a three-node cluster with
// authentication on, as a user would: it asks for a token; with a write
// token it shows the three members and marks the leader, creates a key
// that the API then reads, shows a write made through the API in its live
// tail (and, after the page's node restarts, the writes made meanwhile,
// once), refuses to overwrite a key changed behind its back (CAS), pages
// and descends a prefix, and shows binary values as hex; with a read
// token it offers no edit controls. It works over HTTPS behind a proxy
// that mounts the node under a path, and says there is no quorum when two
// nodes die.
func TestConsole(t *testing.T) {
	ctx := browser(t)
	dir := artifacts(t)
	toks := newTokens(t)
	c := testcluster.Start(t, 3, testcluster.WithAuthTokensFile(toks.path))
	leader := ""
	for i := range c.Size() {
		if c.Node(i).IsLeader() {
			leader = c.ID(i)
		}
	}
	// A follower serves the page: its /nodes is forwarded to the leader.
	pageAt := 1
	if leader == c.ID(1) {
		pageAt = 2
	}
	page := c.URL(pageAt)
	api := c.URL(0)

	run(t, ctx, "open /ui", chromedp.Navigate(page+"/ui"))
	signIn(t, ctx, toks.write)

	// The cluster page: three members, the leader marked, no banner.
	waitPage(t, ctx, "three members with "+leader+" marked leader", fmt.Sprintf(`(function(){
		const rows = document.querySelectorAll('#members tbody tr');
		const leaders = [...rows].filter(r => r.dataset.role === 'leader').map(r => r.dataset.node);
		const ok = [...rows].filter(r => r.dataset.health === 'ok').length;
		if (rows.length !== 3 || leaders.join() !== %q || ok !== 3) return rows.length + ' rows, leaders [' + leaders + '], ' + ok + ' healthy';
		if (!document.getElementById('banner').hidden) return 'banner: ' + document.getElementById('banner').textContent;
		if (!document.querySelector('tr.leader td').textContent.startsWith('★')) return 'leader row not starred';
		return '';
	})()`, leader))
	waitPage(t, ctx, "terms, commit indexes and lags filled in", `(function(){
		for (const r of document.querySelectorAll('#members tbody tr'))
			for (const i of [4, 5, 6, 7]) if (r.cells[i].textContent === '—') return r.dataset.node + ' column ' + i + ' empty';
		return '';
	})()`)
	screenshot(t, ctx, dir, "cluster.png")

	// The key browser on prefix ui/, its change feed live.
	run(t, ctx, "open the key browser", chromedp.Navigate(page+"/ui/#/keys/ui%2F"))
	waitPage(t, ctx, "the live tail", `document.getElementById('tail-state').textContent === '● live' ? '' : 'tail: ' + document.getElementById('tail-state').textContent`)

	// A key created through the page is readable through the API.
	run(t, ctx, "create a key",
		chromedp.SetValue(chromedp.ID("new-key"), "ui/created"),
		chromedp.SetValue(chromedp.ID("new-value"), "from the browser"),
		chromedp.Click(chromedp.ID("create")),
	)
	testwait.For(t, pageWait, "ui/created through the API", func() error {
		code, body, err := apiGet(c.URL(2)+"/kv/ui/created", toks.read)
		if err == nil && (code != http.StatusOK || body != "from the browser") {
			err = fmt.Errorf("%d %q", code, body)
		}
		return err
	})

	// A write made through the API appears in the live tail.
	apiDo(t, http.MethodPut, api+"/kv/ui/from-api", c.AdminToken(), "hello from curl")
	waitPage(t, ctx, "the API's write in the live tail", `(function(){
		const li = document.querySelector('#tail li[data-key="ui/from-api"][data-event="put"]');
		return li && li.textContent.includes('"hello from curl"') ? '' : 'tail: ' + document.getElementById('tail').textContent;
	})()`)

	waitPage(t, ctx, "the listing refreshed by the change", `document.querySelector('#key-list tr[data-key="ui/from-api"]') ? '' : 'listing: ' + document.getElementById('list-status').textContent`)

	// A long key and a long value without spaces stay inside the listing's
	// column instead of pushing the table over the live tail beside it.
	longKey := "ui/" + strings.Repeat("k", 90)
	apiDo(t, http.MethodPut, api+"/kv/"+longKey, c.AdminToken(), strings.Repeat("x", 200))
	waitPage(t, ctx, "the long key listed", fmt.Sprintf(`document.querySelector('#key-list tr[data-key=%q]') ? '' : 'listing: ' + document.getElementById('list-status').textContent`, longKey))
	overflow, err := eval[string](ctx, `(function(){
		const table = document.getElementById('key-list').getBoundingClientRect();
		const col = document.getElementById('key-list').parentElement.getBoundingClientRect();
		return table.right <= col.right + 1 ? '' : 'the key table ends at ' + table.right + ' px, its column at ' + col.right + ' px';
	})()`)
	if err != nil || overflow != "" {
		t.Fatalf("listing with a long key and value: %s (%v)", overflow, err)
	}

	// The page's node restarts while a write is made elsewhere: the tail
	// resumes after its last event (Last-Event-ID), missing nothing and
	// repeating nothing.
	c.Kill(t, pageAt)
	waitPage(t, ctx, "the tail to notice", `document.getElementById('tail-state').textContent === 'reconnecting…' ? '' : 'tail: ' + document.getElementById('tail-state').textContent`)
	apiDo(t, http.MethodPut, api+"/kv/ui/while-down", c.AdminToken(), "written while the page's node was down")
	c.Restart(t, pageAt)
	waitPage(t, ctx, "the write made while down, once, in the resumed tail", `(function(){
		const n = (k) => document.querySelectorAll('#tail li[data-key="' + k + '"]').length;
		const s = document.getElementById('tail-state').textContent;
		return s === '● live' && n('ui/while-down') === 1 && n('ui/from-api') === 1 && n('ui/created') === 1 ? '' :
			s + ': ' + n('ui/while-down') + ' ui/while-down, ' + n('ui/from-api') + ' ui/from-api, ' + n('ui/created') + ' ui/created';
	})()`)

	waitPage(t, ctx, "the listing after the restart", `document.querySelector('#key-list tr[data-key="ui/while-down"]') ? '' : 'listing: ' + document.getElementById('list-status').textContent + ' ' + document.querySelector('#key-list tbody').textContent`)

	// An edit of a key changed meanwhile is refused and shown, not applied.
	run(t, ctx, "open ui/created", chromedp.Click(chromedp.CSS(`#key-list tr[data-key="ui/created"] a`)))
	waitPage(t, ctx, "the viewer on ui/created", `document.getElementById('viewer').dataset.state === 'loaded' && document.getElementById('view-value').value === 'from the browser' ? '' : 'viewer: ' + document.getElementById('view-value').value`)
	apiDo(t, http.MethodPut, api+"/kv/ui/created", c.AdminToken(), "changed behind its back")
	run(t, ctx, "edit and save",
		chromedp.SetValue(chromedp.ID("view-value"), "my edit"),
		chromedp.Click(chromedp.ID("save")),
	)
	waitPage(t, ctx, "the conflict shown", `(function(){
		const s = document.getElementById('view-status');
		return s.dataset.kind === 'error' && s.textContent.startsWith('Save not done: the key changed') ? '' : 'status: ' + s.textContent;
	})()`)
	if code, body, err := apiGet(api+"/kv/ui/created", toks.read); err != nil || body != "changed behind its back" {
		t.Fatalf("after the refused edit the API reads %d %q (%v), want the API's write kept", code, body, err)
	}
	if v, err := eval[string](ctx, `document.getElementById('view-value').value`); err != nil || v != "my edit" {
		t.Fatalf("the user's refused edit is not kept in the editor: %q (%v)", v, err)
	}
	screenshot(t, ctx, dir, "keys.png")

	// Opened again, the edit applies; then a two-step delete.
	run(t, ctx, "open ui/created again", chromedp.Click(chromedp.CSS(`#key-list tr[data-key="ui/created"] a`)))
	waitPage(t, ctx, "the viewer on the current value", `document.getElementById('viewer').dataset.state === 'loaded' && document.getElementById('view-value').value === 'changed behind its back' ? '' : 'viewer: ' + document.getElementById('view-value').value`)
	run(t, ctx, "edit and save",
		chromedp.SetValue(chromedp.ID("view-value"), "my second edit"),
		chromedp.Click(chromedp.ID("save")),
	)
	waitPage(t, ctx, "the save confirmed", `document.getElementById('view-status').textContent.startsWith('Saved at index') ? '' : 'status: ' + document.getElementById('view-status').textContent`)
	if code, body, err := apiGet(api+"/kv/ui/created", toks.read); err != nil || body != "my second edit" {
		t.Fatalf("after the save the API reads %d %q (%v)", code, body, err)
	}
	run(t, ctx, "delete", chromedp.Click(chromedp.ID("delete")), chromedp.Click(chromedp.ID("delete-confirm")))
	testwait.For(t, pageWait, "ui/created deleted", func() error {
		code, body, err := apiGet(api+"/kv/ui/created", toks.read)
		if err == nil && code != http.StatusNotFound {
			err = fmt.Errorf("%d %q", code, body)
		}
		return err
	})

	// A key created with a TTL has one.
	run(t, ctx, "create a key with a TTL",
		chromedp.SetValue(chromedp.ID("new-key"), "ui/ttl"),
		chromedp.SetValue(chromedp.ID("new-value"), "short-lived"),
		chromedp.SetValue(chromedp.ID("new-ttl"), "1h"),
		chromedp.Click(chromedp.ID("create")),
	)
	testwait.For(t, pageWait, "ui/ttl with a TTL", func() error {
		code, body, err := apiGet(api+"/get?key=ui/ttl", toks.read)
		if err == nil && (code != http.StatusOK || !strings.Contains(body, `"ttl":`)) {
			err = fmt.Errorf("%d %s", code, body)
		}
		return err
	})

	// An edit keeps the key's TTL (a PUT without one would drop it).
	run(t, ctx, "open ui/ttl", chromedp.Click(chromedp.CSS(`#key-list tr[data-key="ui/ttl"] a`)))
	waitPage(t, ctx, "the viewer on ui/ttl", `document.getElementById('viewer').dataset.state === 'loaded' && document.getElementById('view-value').value === 'short-lived' ? '' : 'viewer: ' + document.getElementById('view-value').value`)
	run(t, ctx, "edit ui/ttl",
		chromedp.SetValue(chromedp.ID("view-value"), "still short-lived"),
		chromedp.Click(chromedp.ID("save")),
	)
	testwait.For(t, pageWait, "ui/ttl edited, with its TTL", func() error {
		code, body, err := apiGet(api+"/get?key=ui/ttl", toks.read)
		if err == nil && (code != http.StatusOK || !strings.Contains(body, `"value":"still short-lived"`) || !strings.Contains(body, `"ttl":`)) {
			err = fmt.Errorf("%d %s", code, body)
		}
		return err
	})

	// Paging and one-level navigation: 120 keys and a sub-prefix, written
	// in one transaction; a binary value shows as hex.
	ops := []string{`{"op":"put","key":"pg/dir/a","value":"1"}`}
	for i := range 120 {
		ops = append(ops, fmt.Sprintf(`{"op":"put","key":"pg/k%03d","value":"v%d"}`, i, i))
	}
	apiDo(t, http.MethodPost, api+"/txn", c.AdminToken(), `{"success":[`+strings.Join(ops, ",")+`]}`)
	apiDo(t, http.MethodPut, api+"/kv/pg/bin", c.AdminToken(), "\xff\xfe\x00A")
	run(t, ctx, "open pg/", chromedp.Navigate(page+"/ui/#/keys/pg%2F"))
	rows := `document.querySelectorAll('#key-list tbody tr').length`
	waitPage(t, ctx, "the first page of pg/", `(function(){
		const n = `+rows+`, more = !document.getElementById('more').hidden;
		const dir = document.querySelector('#key-list tr.prefix[data-prefix="pg/dir/"]');
		return n === 100 && more && dir ? '' : n + ' rows, more ' + more + ', dir/ row ' + !!dir;
	})()`)
	run(t, ctx, "next page", chromedp.Click(chromedp.ID("more")))
	waitPage(t, ctx, "both pages of pg/", `(function(){
		const n = `+rows+`, more = !document.getElementById('more').hidden;
		return n === 122 && !more ? '' : n + ' rows, more ' + more;
	})()`)
	run(t, ctx, "open pg/bin", chromedp.Click(chromedp.CSS(`#key-list tr[data-key="pg/bin"] a`)))
	waitPage(t, ctx, "pg/bin as hex", `(function(){
		const h = document.getElementById('view-hex');
		return document.getElementById('viewer').dataset.state === 'loaded' && !h.hidden && h.textContent === '00000000  ff fe 00 41' && document.getElementById('save').disabled ? '' : 'hex: ' + h.textContent;
	})()`)
	run(t, ctx, "descend into dir/", chromedp.Click(chromedp.CSS(`#key-list tr.prefix[data-prefix="pg/dir/"] a`)))
	waitPage(t, ctx, "the level pg/dir/", `(function(){
		const keys = [...document.querySelectorAll('#key-list tbody tr')].map(r => r.dataset.key || r.dataset.prefix);
		return location.hash === '#/keys/pg%2Fdir%2F' && keys.join() === 'pg/dir/a' ? '' : location.hash + ' ' + keys;
	})()`)
	screenshot(t, ctx, dir, "keys-level.png")
	run(t, ctx, "back to ui/", chromedp.Navigate(page+"/ui/#/keys/ui%2F"))

	// The token is kept in session storage only.
	stored, err := eval[string](ctx, `(sessionStorage.getItem('raftkv.token') || '') + '|' + localStorage.length + '|' + document.cookie`)
	if err != nil || stored != toks.write+"|0|" {
		t.Fatalf("token storage: %q (%v), want it in sessionStorage only", stored, err)
	}

	// A read token: no edit controls, but the data.
	run(t, ctx, "forget the token", chromedp.Click(chromedp.ID("signout")))
	signIn(t, ctx, toks.read)
	waitPage(t, ctx, "the listing for a read token", `(function(){
		const who = document.getElementById('whoami').textContent;
		if (who !== 'token role: read') return 'whoami: ' + who;
		return document.querySelector('#key-list tr[data-key="ui/from-api"]') ? '' : 'no ui/from-api row';
	})()`)
	run(t, ctx, "open ui/from-api as reader", chromedp.Click(chromedp.CSS(`#key-list tr[data-key="ui/from-api"] a`)))
	waitPage(t, ctx, "the viewer for a read token", `document.getElementById('viewer').dataset.state === 'loaded' && document.getElementById('view-value').value === 'hello from curl' ? '' : 'viewer: ' + document.getElementById('view-value').value`)
	for _, sel := range []string{"#create-form", "#save", "#delete", "#new-key"} {
		if shown, err := eval[bool](ctx, visible(sel)); err != nil || shown {
			t.Errorf("read token: %s is shown (%v)", sel, err)
		}
	}
	if ro, err := eval[bool](ctx, `document.getElementById('view-value').readOnly`); err != nil || !ro {
		t.Errorf("read token: the value is editable (%v)", err)
	}
	screenshot(t, ctx, dir, "keys-read-only.png")
	// The same controls are there for the write token (so the check above
	// can fail).
	if shown, err := eval[bool](ctx, `(function(){sessionStorage.setItem('raftkv.token', `+fmt.Sprintf("%q", toks.write)+`); return true})()`); err != nil || !shown {
		t.Fatal(err)
	}
	run(t, ctx, "reload with the write token", chromedp.Reload())
	waitPage(t, ctx, "edit controls for a write token", fmt.Sprintf(`%s && document.getElementById('whoami').textContent === 'token role: write' ? '' : 'no create form'`, visible("#create-form")))

	// Over HTTPS, behind a proxy that mounts the node under /raftkv/: the
	// page's relative URLs reach the API, its feed streams through.
	target, err := url.Parse(page)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewTLSServer(http.StripPrefix("/raftkv", httputil.NewSingleHostReverseProxy(target)))
	t.Cleanup(proxy.Close)
	run(t, ctx, "open the console over HTTPS", chromedp.Navigate(proxy.URL+"/raftkv/ui/#/keys/ui%2F"))
	signIn(t, ctx, toks.write)
	waitPage(t, ctx, "the console over HTTPS", `(function(){
		const n = document.querySelectorAll('#members tbody tr').length;
		const s = document.getElementById('tail-state').textContent;
		return location.protocol === 'https:' && n === 3 && s === '● live' && document.querySelector('#key-list tr[data-key="ui/from-api"]') ? '' : location.protocol + ' ' + n + ' members, tail ' + s;
	})()`)
	apiDo(t, http.MethodPut, api+"/kv/ui/over-https", c.AdminToken(), "streamed through the proxy")
	waitPage(t, ctx, "the tail over HTTPS", `document.querySelector('#tail li[data-key="ui/over-https"]') ? '' : 'tail: ' + document.getElementById('tail').textContent`)
	run(t, ctx, "create a key over HTTPS",
		chromedp.SetValue(chromedp.ID("new-key"), "ui/https"),
		chromedp.SetValue(chromedp.ID("new-value"), "via https"),
		chromedp.Click(chromedp.ID("create")),
	)
	testwait.For(t, pageWait, "ui/https through the API", func() error {
		code, body, err := apiGet(api+"/kv/ui/https", toks.read)
		if err == nil && (code != http.StatusOK || body != "via https") {
			err = fmt.Errorf("%d %q", code, body)
		}
		return err
	})

	// Two of three nodes die: the page's node says there is no leader and
	// no quorum.
	run(t, ctx, "open the cluster page", chromedp.Navigate(proxy.URL+"/raftkv/ui/#/cluster"))
	for i := range c.Size() {
		if i != pageAt {
			c.Kill(t, i)
		}
	}
	waitPage(t, ctx, "the no-leader and no-quorum banner", `(function(){
		const b = document.getElementById('banner');
		return !b.hidden && b.textContent.startsWith('No leader') && b.textContent.includes('No quorum: 1 of 3 voters answer') ? '' : 'banner: ' + b.textContent;
	})()`)
	screenshot(t, ctx, dir, "no-quorum.png")
}

// apiDo is curl -X method --data-binary body with a bearer token; it
// fails the test unless the answer is 200.
func apiDo(t *testing.T, method, url, token, body string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
}

type tokens struct{ path, admin, write, read string }

// newTokens writes a tokens file with one token of each role.
func newTokens(t *testing.T) tokens {
	t.Helper()
	tk := tokens{path: filepath.Join(t.TempDir(), "tokens"), admin: "admin-token-0123456789abcdef", write: "write-token-0123456789abcdef", read: "read-token-0123456789abcdef"}
	content := fmt.Sprintf("%s admin\n%s write\n%s read\n", tk.admin, tk.write, tk.read)
	if err := os.WriteFile(tk.path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return tk
}
