package auth

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// newToken is a random 32-character token, generated per test.
func newToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Write and rename, as an operator's tooling should: a reload never
	// sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestParseValid(t *testing.T) {
	r, w, a1, a2 := newToken(t), newToken(t), newToken(t), newToken(t)
	file := fmt.Sprintf("# raftkv tokens\n\n%s read\r\n  %s\twrite  \n# admins\n%s admin\n%s admin\n", r, w, a1, a2)
	toks, err := Parse(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if toks.Len() != 4 {
		t.Fatalf("Len = %d, want 4", toks.Len())
	}
	if got := toks.Counts(); got[RoleRead] != 1 || got[RoleWrite] != 1 || got[RoleAdmin] != 2 {
		t.Fatalf("Counts = %v", got)
	}
	if toks.NodeToken() != a1 {
		t.Fatalf("NodeToken is not the first admin token")
	}
	cases := []struct {
		token string
		want  Role
	}{
		{r, RoleRead}, {w, RoleWrite}, {a1, RoleAdmin}, {a2, RoleAdmin},
		{"", RoleNone}, {a1[:len(a1)-1], RoleNone}, {a1 + "x", RoleNone}, {strings.ToUpper(a1), RoleNone},
		{a1 + " admin", RoleNone}, {newToken(t), RoleNone},
	}
	for i, c := range cases {
		if got := toks.Lookup(c.token); got != c.want {
			t.Errorf("case %d: Lookup = %v, want %v", i, got, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	a, b := newToken(t), newToken(t)
	short := "abcdefghijklmno" // 15 characters
	cases := []struct {
		name, file, want string
	}{
		{"unknown role", a + " admin\n" + b + " superuser\n", "line 2: unknown role \"superuser\""},
		{"role case matters", a + " Admin\n", "line 1: unknown role"},
		{"duplicate token", "# c\n" + a + " admin\n\n" + a + " read\n", "line 4: duplicate token (first on line 2)"},
		{"short token", a + " admin\n" + short + " read\n", "line 2: token is 15 characters, need at least 16"},
		{"missing role", a + " admin\n" + b + "\n", "line 2: want \"token role\", got 1 fields"},
		{"extra field", a + " admin extra\n", "line 1: want \"token role\", got 3 fields"},
		{"non-ascii token", "ééééééééééééééééé admin\n", "line 1: token has a byte outside printable ASCII"},
		{"no admin", "# only readers\n" + a + " read\n" + b + " write\n", ErrNoAdmin.Error()},
		{"empty", "", ErrNoAdmin.Error()},
		{"too large", a + " admin\n" + strings.Repeat("#", MaxFileBytes), "larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(c.file))
			if err == nil {
				t.Fatalf("Parse accepted the file")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
			// An error message ends up in logs: it must never quote a token.
			for _, tok := range []string{a, b, short} {
				if strings.Contains(err.Error(), tok) {
					t.Fatalf("error %q quotes a token", err)
				}
			}
		})
	}
}

// TestLookupConstantWork checks that a lookup does the same work whatever
// the presented token: one constant-time comparison per entry, always of
// fixed-length digests, whether the token matches the first entry, the
// last, a prefix of one, or nothing. (The comparison itself is
// crypto/subtle's; what this test guards is that Lookup neither stops
// early nor compares raw tokens of differing lengths.)
func TestLookupConstantWork(t *testing.T) {
	var tokens []string
	var file strings.Builder
	for i := range 8 {
		tok := newToken(t)
		tokens = append(tokens, tok)
		fmt.Fprintf(&file, "%s %s\n", tok, Roles[i%3])
	}
	toks, err := Parse(strings.NewReader(file.String()))
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	var lengths []int
	orig := compare
	compare = func(x, y []byte) int {
		calls++
		lengths = append(lengths, len(x), len(y))
		return orig(x, y)
	}
	t.Cleanup(func() { compare = orig })

	for _, probe := range []string{tokens[0], tokens[4], tokens[7], tokens[7][:20], "", "x", newToken(t) + newToken(t)} {
		calls, lengths = 0, nil
		toks.Lookup(probe)
		if calls != len(tokens) {
			t.Fatalf("lookup of a %d-byte token made %d comparisons, want %d (one per entry)", len(probe), calls, len(tokens))
		}
		for _, l := range lengths {
			if l != 32 {
				t.Fatalf("compared a %d-byte value; only 32-byte digests may be compared", l)
			}
		}
	}
}

func TestStoreReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	oldAdmin, oldRead, newAdmin := newToken(t), newToken(t), newToken(t)
	writeFile(t, path, oldAdmin+" admin\n"+oldRead+" read\n")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	log, hook := test.NewNullLogger()

	// A broken file: the old tokens stay, one error line, no token in it.
	writeFile(t, path, newAdmin+" admin\n"+oldRead+" reader\n")
	hook.Reset()
	s.ReloadAndLog(log)
	if s.Lookup(oldAdmin) != RoleAdmin || s.Lookup(newAdmin) != RoleNone || s.NodeToken() != oldAdmin {
		t.Fatalf("a broken file changed the tokens in force")
	}
	e := hook.LastEntry()
	if e == nil || e.Level != logrus.ErrorLevel || !strings.Contains(fmt.Sprint(e.Data[logrus.ErrorKey]), "line 2") {
		t.Fatalf("want one error line naming line 2, got %+v", e)
	}
	assertNoTokens(t, hook, oldAdmin, oldRead, newAdmin)

	// A good file: the new tokens work at once, removed ones stop working.
	writeFile(t, path, "# rotated\n"+newAdmin+" admin\n"+oldRead+" write\n")
	hook.Reset()
	s.ReloadAndLog(log)
	if s.Lookup(newAdmin) != RoleAdmin || s.Lookup(oldAdmin) != RoleNone || s.Lookup(oldRead) != RoleWrite {
		t.Fatalf("reload did not install the new tokens")
	}
	if s.NodeToken() != newAdmin {
		t.Fatalf("node token did not follow the reload")
	}
	e = hook.LastEntry()
	if e == nil || e.Level != logrus.InfoLevel || e.Data["admin_tokens"] != 1 || e.Data["write_tokens"] != 1 || e.Data["read_tokens"] != 0 || e.Data["tokens"] != 2 {
		t.Fatalf("want an info line with counts per role, got %+v", e)
	}
	assertNoTokens(t, hook, oldAdmin, oldRead, newAdmin)

	// A missing file is an error too, and changes nothing.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(); err == nil || s.Lookup(newAdmin) != RoleAdmin {
		t.Fatalf("reload of a missing file: err=%v, tokens changed=%v", err, s.Lookup(newAdmin) != RoleAdmin)
	}
}

func assertNoTokens(t *testing.T, hook *test.Hook, tokens ...string) {
	t.Helper()
	for _, e := range hook.AllEntries() {
		line, err := e.String()
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range tokens {
			if strings.Contains(line, tok) {
				t.Fatalf("log line quotes a token: %s", line)
			}
		}
	}
}

// TestStoreConcurrentReload runs lookups while the file is swapped back and
// forth: every lookup sees one whole set (run with -race).
func TestStoreConcurrentReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	a, b := newToken(t), newToken(t)
	files := []string{a + " admin\n" + b + " read\n", b + " admin\n" + a + " read\n"}
	writeFile(t, path, files[0])
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan string, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				toks := s.Tokens()
				ra, rb := toks.Lookup(a), toks.Lookup(b)
				if !(ra == RoleAdmin && rb == RoleRead || ra == RoleRead && rb == RoleAdmin) {
					select {
					case errs <- fmt.Sprintf("saw a mixed set: %v %v", ra, rb):
					default:
					}
					return
				}
			}
		}()
	}
	for i := range 200 {
		writeFile(t, path, files[i%2])
		if _, err := s.Reload(); err != nil {
			t.Error(err)
			break
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if c := s.Tokens().Counts(); c[RoleAdmin] != 1 || c[RoleRead] != 1 {
		t.Fatalf("counts after reloads: %v", c)
	}
}

// BenchmarkLookup measures the per-request cost of a lookup, which grows
// with the number of tokens (every entry is compared).
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{3, 100} {
		b.Run(fmt.Sprintf("tokens=%d", n), func(b *testing.B) {
			var file strings.Builder
			var last string
			for i := range n {
				last = fmt.Sprintf("%032x", i+1)
				fmt.Fprintf(&file, "%s %s\n", last, Roles[i%3])
			}
			toks, err := Parse(strings.NewReader(file.String()))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if toks.Lookup(last) == RoleNone {
					b.Fatal("no match")
				}
			}
		})
	}
}
