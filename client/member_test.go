package client

import (
	"encoding/json"
	"testing"
)

// TestMemberJSONRoundTrip: a Member writes back the /nodes row it was read
// from, unknown values as null and an empty state left out.
func TestMemberJSONRoundTrip(t *testing.T) {
	for _, row := range []string{
		`{"id":"n1","raft_addr":"127.0.0.1:9000","http_addr":"127.0.0.1:8000","voter":true,"suffrage":"voter","leader":true,"reachable":true,"state":"Leader","last_contact_ms":1.5,"match_index":13,"applied_index":13,"lag":0,"term":2,"commit_index":13}`,
		`{"id":"n3","raft_addr":"127.0.0.1:9002","http_addr":"","voter":false,"suffrage":"learner","leader":false,"reachable":false,"last_contact_ms":null,"match_index":null,"applied_index":null,"lag":null,"term":null,"commit_index":null}`,
	} {
		var w wireMember
		if err := json.Unmarshal([]byte(row), &w); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(w.member())
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != row {
			t.Errorf("Member JSON\n got %s\nwant %s", b, row)
		}
	}
}
