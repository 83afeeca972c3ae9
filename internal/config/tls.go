package config

import (
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/internal/tlsconfig"
)

// loadTLS reads the six TLS file variables.
func (c *Config) loadTLS(p *parser) {
	c.TLSCertFile = p.str("TLS_CERT_FILE", "")
	c.TLSKeyFile = p.str("TLS_KEY_FILE", "")
	c.TLSCAFile = p.str("TLS_CA_FILE", "")
	c.RaftTLSCertFile = p.str("RAFT_TLS_CERT_FILE", "")
	c.RaftTLSKeyFile = p.str("RAFT_TLS_KEY_FILE", "")
	c.RaftTLSCAFile = p.str("RAFT_TLS_CA_FILE", "")
}

// HTTPTLS reports whether the HTTP API (and every node-to-node HTTP call)
// uses TLS.
func (c Config) HTTPTLS() bool { return c.TLSCertFile != "" }

// RaftTLS reports whether the Raft transport uses mutual TLS.
func (c Config) RaftTLS() bool { return c.RaftTLSCertFile != "" }

// LoadHTTPTLS loads the HTTP API's certificate material (nil when TLS is
// off). Load has already checked it, so an error here means the files
// changed since.
func (c Config) LoadHTTPTLS() (*tlsconfig.Material, error) {
	if !c.HTTPTLS() {
		return nil, nil
	}
	return c.loadMaterial(c.TLSCertFile, c.TLSKeyFile, c.TLSCAFile, "TLS_")
}

// LoadRaftTLS loads the Raft transport's certificate material (nil when
// mutual TLS is off).
func (c Config) LoadRaftTLS() (*tlsconfig.Material, error) {
	if !c.RaftTLS() {
		return nil, nil
	}
	return c.loadMaterial(c.RaftTLSCertFile, c.RaftTLSKeyFile, c.RaftTLSCAFile, "RAFT_TLS_")
}

// validateTLS checks the variables go together and that the files exist,
// parse and fit each other, so a bad certificate stops the node at start
// rather than failing every handshake later.
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
	if _, err := c.LoadHTTPTLS(); err != nil {
		return err
	}
	_, err := c.LoadRaftTLS()
	return err
}

// loadMaterial loads the files and names the variable at fault.
func (c Config) loadMaterial(cert, key, ca, prefix string) (*tlsconfig.Material, error) {
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
