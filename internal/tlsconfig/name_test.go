package tlsconfig

import (
	"net"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/internal/testpki"
)

// TestCheckName: the advertised host must be an IP SAN (for an IP) or a
// DNS SAN (for a name, wildcards as HTTPS clients match them); the error
// lists what the certificate names.
func TestCheckName(t *testing.T) {
	ca := testpki.NewCA(t, "cluster")
	loop := load(t, ca, ca.Issue(t, "n1")) // IP:127.0.0.1, DNS:localhost
	far := load(t, ca, ca.IssueWith(t, "n2", elsewhere))
	wild := load(t, ca, ca.IssueWith(t, "n3", testpki.LeafOptions{IPs: []net.IP{}, DNSNames: []string{"*.nodes.example"}}))
	v6 := load(t, ca, ca.IssueWith(t, "n4", testpki.LeafOptions{IPs: []net.IP{net.ParseIP("fd00::4")}, DNSNames: []string{}}))
	bare := load(t, ca, ca.IssueWith(t, "n5", testpki.LeafOptions{IPs: []net.IP{}, DNSNames: []string{}}))
	tests := []struct {
		m      *Material
		host   string
		errHas string // "": names it
	}{
		{loop, "127.0.0.1", ""},
		{loop, "localhost", ""},
		{loop, "10.0.0.1", "names IP:127.0.0.1, DNS:localhost, not 10.0.0.1"},
		{loop, "n1", "not n1"},
		{far, "10.9.9.9", ""},
		{far, "elsewhere", ""},
		{far, "127.0.0.1", "names IP:10.9.9.9, DNS:elsewhere, not 127.0.0.1"},
		{wild, "n3.nodes.example", ""},
		{wild, "nodes.example", "not nodes.example"},
		{v6, "fd00::4", ""},
		{v6, "fd00::5", "not fd00::5"},
		{bare, "127.0.0.1", "no subject alternative names"},
	}
	for _, tt := range tests {
		err := tt.m.CheckName(tt.host)
		switch {
		case tt.errHas == "" && err != nil:
			t.Errorf("%s: %v, want it named", tt.host, err)
		case tt.errHas != "" && (err == nil || !strings.Contains(err.Error(), tt.errHas)):
			t.Errorf("%s: %v, want an error with %q", tt.host, err, tt.errHas)
		}
	}
}
