package node

import (
	"strings"
	"testing"
)

func TestValidateNodeID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"n1", true},
		{"Node-1_a.b", true},
		{strings.Repeat("x", 64), true},
		{"", false},
		{strings.Repeat("x", 65), false},
		{"a b", false},
		{"a/b", false},
		{"a:b", false},
		{"é", false},
		{"a\n", false},
	}
	for _, tt := range tests {
		if err := ValidateNodeID(tt.id); (err == nil) != tt.ok {
			t.Errorf("ValidateNodeID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
	}
}

func TestSplitHostPort(t *testing.T) {
	tests := []struct {
		in       string
		wantHost string
		wantPort int
		wantErr  bool
	}{
		{"a:1", "a", 1, false},
		{"10.0.0.1:65535", "10.0.0.1", 65535, false},
		{"[::1]:8000", "::1", 8000, false},
		{"nocolon", "", 0, true},
		{":8000", "", 0, true},
		{"a:0", "", 0, true},
		{"a:65536", "", 0, true},
		{"a:http", "", 0, true},
		{"a:", "", 0, true},
		{"::1:80", "", 0, true},
	}
	for _, tt := range tests {
		host, port, err := SplitHostPort(tt.in)
		if (err != nil) != tt.wantErr || host != tt.wantHost || port != tt.wantPort {
			t.Errorf("SplitHostPort(%q) = %q, %d, %v; want %q, %d, err=%v", tt.in, host, port, err, tt.wantHost, tt.wantPort, tt.wantErr)
		}
	}
}
