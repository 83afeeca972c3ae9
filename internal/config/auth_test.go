package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadAuth(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "# tokens\n0123456789abcdef0123 admin\n")
	badRole := write("badrole", "0123456789abcdef0123 admin\nfedcba9876543210fedc root\n")
	noAdmin := write("noadmin", "0123456789abcdef0123 read\n")

	c, err := Load(env("AUTH_TOKENS_FILE", good, "ALLOW_REMOTE_ADMIN", "true"))
	if err != nil {
		t.Fatal(err)
	}
	if c.AuthTokensFile != good || !c.AllowRemoteAdmin || !c.AuthEnabled() || c.Tokens == nil || c.Tokens.Len() != 1 {
		t.Fatalf("Load = %+v", c)
	}
	if c, err := Load(env()); err != nil || c.AuthEnabled() || c.AllowRemoteAdmin {
		t.Fatalf("defaults: auth must be off and remote admin refused: %+v %v", c, err)
	}

	for _, tt := range []struct {
		name     string
		env      []string
		wantVar  string
		contains string
	}{
		{"missing file", []string{"AUTH_TOKENS_FILE", filepath.Join(dir, "nope")}, "AUTH_TOKENS_FILE", "no such file"},
		{"unknown role", []string{"AUTH_TOKENS_FILE", badRole}, "AUTH_TOKENS_FILE", "line 2: unknown role \"root\""},
		{"no admin token", []string{"AUTH_TOKENS_FILE", noAdmin}, "AUTH_TOKENS_FILE", "no admin token"},
		{"remote admin maybe", []string{"ALLOW_REMOTE_ADMIN", "maybe"}, "ALLOW_REMOTE_ADMIN", "not true or false"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(env(tt.env...))
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantVar+":") || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("error %v, want %q naming %s", err, tt.contains, tt.wantVar)
			}
			if strings.Contains(err.Error(), "0123456789abcdef0123") {
				t.Fatalf("error quotes a token: %v", err)
			}
		})
	}
}
