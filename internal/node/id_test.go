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
