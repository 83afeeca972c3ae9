package config

import (
	"github.com/raftkv/raftkv/internal/auth"
)

// loadAuth reads AUTH_TOKENS_FILE and ALLOW_REMOTE_ADMIN. The tokens file
// is parsed here too, so a node with a broken file fails at start with the
// file's line number rather than refusing every request later.
func (c *Config) loadAuth(p *parser) {
	c.AuthTokensFile = p.str("AUTH_TOKENS_FILE", "")
	c.AllowRemoteAdmin = p.boolean("ALLOW_REMOTE_ADMIN", false)
	if c.AuthTokensFile == "" || p.err != nil {
		return
	}
	if _, err := auth.LoadFile(c.AuthTokensFile); err != nil {
		p.fail("AUTH_TOKENS_FILE", "%v", err)
	}
}

// AuthEnabled reports whether requests must carry a bearer token.
func (c Config) AuthEnabled() bool { return c.AuthTokensFile != "" }
