package node

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

// TestLogEntryChecksum: entries stored through faultStore carry a
// checksum; one whose data changed on disk stops the node when read at run
// time, and before start checkLog drops it and what follows on a follower
// but refuses on the only voter.
func TestLogEntryChecksum(t *testing.T) {
	raw, err := openLogStore(t.TempDir(), LogStoreBolt, 0, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var fatal error
	fs := &faultStore{logStore: raw, h: &storageHealth{log: quietLogger().WithField("t", 1)}, fatal: func(err error) { fatal = err }}
	var logs []*raft.Log
	for i := uint64(1); i <= 5; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("value")})
	}
	if err := fs.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := fs.SetUint64([]byte(keyCurrentTerm), 1); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := fs.GetLog(3, &l); err != nil || fatal != nil {
		t.Fatalf("intact entry: %v, fatal %v", err, fatal)
	}
	l.Data = []byte("valuf") // the same entry, changed on disk
	if err := raw.StoreLog(&l); err != nil {
		t.Fatal(err)
	}
	if err := fs.GetLog(3, &l); !errors.Is(err, ErrCorruptState) || !errors.Is(fatal, ErrCorruptState) {
		t.Fatalf("changed entry: %v, fatal %v; want ErrCorruptState both", err, fatal)
	}

	alone := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: "n1", Address: "a:1"}}}
	if _, err := checkLog("n1", raw, &alone, quietLogger().WithField("t", 1)); !errors.Is(err, ErrCorruptState) {
		t.Fatalf("checkLog as the only voter: %v, want ErrCorruptState", err)
	}
	three := raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "n1", Address: "a:1"}, {Suffrage: raft.Voter, ID: "n2", Address: "a:2"}}}
	if dropped, err := checkLog("n1", raw, &three, quietLogger().WithField("t", 1)); err != nil || dropped != "dropped log entries 3-5 (entry 3 is corrupt)" {
		t.Fatalf("checkLog as a follower: %q, %v; want entries 3-5 reported dropped (the vote hold's reason)", dropped, err)
	}
	if dropped, err := checkLog("n1", raw, &three, quietLogger().WithField("t", 1)); err != nil || dropped != "" {
		t.Fatalf("checkLog on the repaired log: %q, %v; want nothing dropped", dropped, err)
	}
	if last, err := raw.LastIndex(); err != nil || last != 2 {
		t.Fatalf("last index after the repair: %d, %v; want 2 (entries 3-5 dropped)", last, err)
	}
}
