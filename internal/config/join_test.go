package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestJoinAddrs(t *testing.T) {
	tests := []struct {
		entries []string
		tls     bool
		want    []string
		errHas  string // empty: no error
	}{
		{[]string{"a:8000"}, false, []string{"a:8000"}, ""},
		{[]string{"http://a:8000"}, false, []string{"a:8000"}, ""},
		{[]string{"http://a:8000/"}, false, []string{"a:8000"}, ""},
		{[]string{"HTTP://a:8000"}, false, []string{"a:8000"}, ""},
		{[]string{"https://a:8000", "b:8001", "https://[::1]:8002/"}, true, []string{"a:8000", "b:8001", "[::1]:8002"}, ""},
		{[]string{"10.0.0.1:8000"}, true, []string{"10.0.0.1:8000"}, ""},
		{[]string{"https://a:8000"}, false, nil, `"https://a:8000" is https but this node serves plain HTTP (TLS_CERT_FILE is not set)`},
		{[]string{"http://a:8000"}, true, nil, `"http://a:8000" is http but this node serves HTTPS (TLS_CERT_FILE is set)`},
		{[]string{"ftp://a:8000"}, false, nil, `"ftp://a:8000": scheme "ftp" is not http or https`},
		{[]string{"http://a"}, false, nil, `"http://a": want host:port`},
		{[]string{"http://a:8000/join"}, false, nil, `"http://a:8000/join" is not host:port or http(s)://host:port`},
		{[]string{"http://a:8000?x=1"}, false, nil, `is not host:port`},
		{[]string{"http://u:p@a:8000"}, false, nil, `is not host:port`},
		{[]string{"http://:8000"}, false, nil, `"http://:8000": host is empty`},
		{[]string{"http://a:99999"}, false, nil, `"http://a:99999"`},
		{[]string{"a:1", "a:b:c"}, false, nil, `"a:b:c": want host:port`},
		{[]string{"nocolon"}, false, nil, `"nocolon"`},
	}
	for _, tt := range tests {
		got, err := joinAddrs(tt.entries, tt.tls)
		if tt.errHas == "" {
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("joinAddrs(%q, tls=%v) = %q, %v; want %q", tt.entries, tt.tls, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), "RAFT_JOIN: ") || !strings.Contains(err.Error(), tt.errHas) || strings.Contains(err.Error(), "\n") {
			t.Errorf("joinAddrs(%q, tls=%v) error %v; want one line starting RAFT_JOIN: with %q", tt.entries, tt.tls, err, tt.errHas)
		}
	}
}

// TestLoadJoinURL: Load accepts the URL forms and hands on host:port, and
// refuses a scheme that does not match TLS_CERT_FILE.
func TestLoadJoinURL(t *testing.T) {
	c, err := Load(env("RAFT_JOIN", "http://10.0.0.1:8000/, 10.0.0.2:8000"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.1:8000", "10.0.0.2:8000"}; !reflect.DeepEqual(c.Join, want) || c.Bootstrap {
		t.Fatalf("Join %q bootstrap %v; want %q and no bootstrap", c.Join, c.Bootstrap, want)
	}
	files := pkiFiles(t)
	c, err = Load(env(expand(files, []string{"RAFT_JOIN", "https://10.0.0.1:8000", "TLS_CERT_FILE", "@cert", "TLS_KEY_FILE", "@key"})...))
	if err != nil || !reflect.DeepEqual(c.Join, []string{"10.0.0.1:8000"}) {
		t.Fatalf("https join with TLS: %q, %v", c.Join, err)
	}
	_, err = Load(env(expand(files, []string{"RAFT_JOIN", "http://10.0.0.1:8000", "TLS_CERT_FILE", "@cert", "TLS_KEY_FILE", "@key"})...))
	if err == nil || !strings.HasPrefix(err.Error(), "RAFT_JOIN: ") {
		t.Fatalf("http join with TLS: %v, want a RAFT_JOIN error", err)
	}
}
