package config

import (
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/internal/auth"
	"github.com/raftkv/raftkv/internal/tlsconfig"
)

// validateTLS checks that the TLS variables go together.
func (c Config) validateTLS() error {
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		return errors.New("TLS_KEY_FILE: must be set together with TLS_CERT_FILE")
	case c.TLSKeyFile != "" && c.TLSCertFile == "":
		return errors.New("TLS_CERT_FILE: must be set together with TLS_KEY_FILE")
	case c.TLSCAFile != "" && c.TLSCertFile == "":
		return errors.New("TLS_CA_FILE: requires TLS_CERT_FILE and TLS_KEY_FILE (client certificates are checked only over TLS)")
	}
	raft := map[string]string{
		"RAFT_TLS_CERT_FILE": c.RaftTLSCertFile, "RAFT_TLS_KEY_FILE": c.RaftTLSKeyFile, "RAFT_TLS_CA_FILE": c.RaftTLSCAFile,
	}
	if c.RaftTLSCertFile != "" || c.RaftTLSKeyFile != "" || c.RaftTLSCAFile != "" {
		for _, name := range []string{"RAFT_TLS_CERT_FILE", "RAFT_TLS_KEY_FILE", "RAFT_TLS_CA_FILE"} {
			if raft[name] == "" {
				return fmt.Errorf("%s: must be set: mutual TLS on the Raft transport needs RAFT_TLS_CERT_FILE, RAFT_TLS_KEY_FILE and RAFT_TLS_CA_FILE", name)
			}
		}
	}
	return nil
}

// LoadFiles reads the files the configuration names into Tokens,
// HTTPMaterial and RaftMaterial, each only if it is not loaded yet. The
// tokens are parsed and the certificates checked now (they exist, parse
// and fit each other), so a broken file stops the node at start, with the
// variable at fault named, rather than refusing every request or failing
// every handshake later. Load calls it; server.Start calls it for a
// Config built by hand, whose files it then reads that once.
func (c *Config) LoadFiles() error {
	if c.AuthTokensFile != "" && c.Tokens == nil {
		t, err := auth.LoadFile(c.AuthTokensFile)
		if err != nil {
			return fmt.Errorf("AUTH_TOKENS_FILE: %w", err)
		}
		c.Tokens = t
	}
	if c.HTTPTLS() && c.HTTPMaterial == nil {
		m, err := loadMaterial(c.TLSCertFile, c.TLSKeyFile, c.TLSCAFile, "TLS_")
		if err != nil {
			return err
		}
		// Peers and clients verify the API's certificate against the
		// address this node advertises. The Raft certificate needs no
		// such check: Raft TLS verifies the chain, not names
		// (internal/node/DESIGN.md). A Config built by hand without an
		// advertised address has nothing to check against.
		if c.AdvertiseAddr != "" {
			if err := m.CheckName(c.AdvertiseAddr); err != nil {
				return fmt.Errorf("TLS_CERT_FILE: %s %w (ADVERTISE_ADDR); peers and clients would refuse it: issue it with a subject alternative name for %s, or set ADVERTISE_ADDR to a name it holds",
					c.TLSCertFile, err, c.AdvertiseAddr)
			}
		}
		c.HTTPMaterial = m
	}
	if c.RaftTLS() && c.RaftMaterial == nil {
		m, err := loadMaterial(c.RaftTLSCertFile, c.RaftTLSKeyFile, c.RaftTLSCAFile, "RAFT_TLS_")
		if err != nil {
			return err
		}
		c.RaftMaterial = m
	}
	return nil
}

// loadMaterial loads the files and names the variable at fault.
func loadMaterial(cert, key, ca, prefix string) (*tlsconfig.Material, error) {
	m, err := tlsconfig.Load(cert, key, ca)
	if err == nil {
		return m, nil
	}
	name := prefix + "CERT_FILE"
	var te *tlsconfig.Error
	if errors.As(err, &te) {
		switch te.Part {
		case tlsconfig.PartKey:
			name = prefix + "KEY_FILE"
		case tlsconfig.PartCA:
			name = prefix + "CA_FILE"
		}
	}
	return nil, fmt.Errorf("%s: %w", name, err)
}
