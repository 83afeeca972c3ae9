package node

// Checking the volume's snapshots before raft sees them. hashicorp/raft
// checks a snapshot's CRC only when it opens it, and on a mismatch falls
// back to an older snapshot; when the log no longer reaches back to that
// one, applying the next entry panics ("log not found") on every start.
// checkSnapshots sets corrupt snapshots aside first, and when what is left
// cannot be replayed, empties the log so the leader sends a fresh copy.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/raft"
	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/fsm"
)

// ErrCorruptState: the volume's state cannot be used (its snapshots are
// corrupt and what is left cannot be replayed, with no other member to send
// a copy; or raft failed restoring it). The node does not start.
var ErrCorruptState = errors.New("the volume's raft state is corrupt")

// checkSnapshots verifies every snapshot under dir (raft's CRC-64 over
// state.bin, then the FSM format and its CRC-32C), moves each corrupt one
// to corruptDir with one error line, and makes sure what remains can be
// replayed: the newest intact snapshot must be followed by the log without
// a gap. If it is not, and the latest configuration names another voter,
// the log and the remaining snapshots are set aside too, keeping the term
// and vote in the stable store (so this node cannot vote twice in a term);
// raft then starts empty and the leader sends it a snapshot. As the only
// voter it refuses to start (ErrCorruptState). dropped, when not empty,
// says what state was set aside that the leader must send again (then the
// node starts with its vote held: votehold.go).
func checkSnapshots(dir, id string, snaps *raft.FileSnapshotStore, logs logStore, log *logrus.Entry) (dropped string, err error) {
	snapDir := filepath.Join(dir, snapshotsDir)
	metas, err := snaps.List() // newest first; skips snapshots whose meta.json does not parse
	if err != nil {
		return "", fmt.Errorf("list snapshots: %w", err)
	}
	var good []*raft.SnapshotMeta
	var latestConf *raft.Configuration
	setAside := 0
	for _, m := range metas {
		if latestConf == nil {
			c := m.Configuration
			latestConf = &c
		}
		if err := verifySnapshot(dir, m.ID); err != nil {
			if err := moveAside(dir, m.ID); err != nil {
				return "", err
			}
			setAside++
			log.WithFields(logrus.Fields{"snapshot": m.ID, "index": m.Index, "moved_to": filepath.Join(corruptDir, m.ID)}).
				WithError(err).Error("snapshot is corrupt; set aside, not used")
			continue
		}
		good = append(good, m)
	}
	// Directories raft does not list (an unreadable meta.json) are as
	// corrupt; raft would silently ignore them and never remove them.
	entries, err := os.ReadDir(snapDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", snapDir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || strings.HasSuffix(name, ".tmp") ||
			slices.ContainsFunc(metas, func(m *raft.SnapshotMeta) bool { return m.ID == name }) {
			continue
		}
		if err := moveAside(dir, name); err != nil {
			return "", err
		}
		setAside++
		log.WithFields(logrus.Fields{"snapshot": name, "moved_to": filepath.Join(corruptDir, name)}).
			Error("snapshot is corrupt (its meta.json does not parse); set aside, not used")
	}
	if setAside == 0 {
		return "", nil
	}

	first, last, err := logBounds(logs)
	if err != nil {
		return "", err
	}
	var base uint64 // what the newest intact snapshot covers
	if len(good) > 0 {
		base = good[0].Index
	}
	// Replayable: the newest intact snapshot and the log after it, or the
	// whole log from index 1.
	if (last == 0 && len(good) > 0) || (last > 0 && first <= base+1) {
		if len(good) > 0 {
			log.WithField("snapshot", good[0].ID).Warn("starting from an older intact snapshot and the log after it")
		}
		return "", nil
	}

	// A gap (entries base+1 … first-1 are in no intact snapshot and no
	// longer in the log), or nothing left at all (a volume that held only
	// a snapshot, as the offline restore writes it). Only another member
	// can fill it; with nothing left and no term saved, raft would even
	// bootstrap a new, empty cluster.
	missing := fmt.Sprintf("the log starts at index %d but no intact snapshot reaches index %d", first, max(first, 1)-1)
	if last == 0 {
		missing = "no intact snapshot is left and the log is empty"
	}
	if last > 0 {
		if c, ok := lastLogConfiguration(logs, first, last); ok {
			latestConf = &c
		}
	}
	term, _ := logs.GetUint64([]byte(keyCurrentTerm))
	if latestConf == nil || !hasOtherVoter(*latestConf, id) || term == 0 {
		return "", fmt.Errorf("%w: %s, and no other voter holds a copy; restore this node from a backup (raftkv restore --force)",
			ErrCorruptState, missing)
	}
	for _, m := range good {
		if err := moveAside(dir, m.ID); err != nil {
			return "", err
		}
	}
	if last > 0 {
		if err := logs.DeleteRange(first, last); err != nil {
			return "", fmt.Errorf("empty the log: %w", err)
		}
	}
	log.WithFields(logrus.Fields{"deleted_log": fmt.Sprintf("%d-%d", first, last), "intact_snapshots_set_aside": len(good)}).
		Error("no intact snapshot reaches the start of the log; starting with an empty log (term and vote kept) to receive a copy from the leader")
	return fmt.Sprintf("emptied the log (entries %d-%d) and set aside %d intact snapshot(s): %s", first, last, len(good), missing), nil
}

// verifySnapshot reads snapshot id's state.bin once, checking raft's
// CRC-64 (kept in meta.json) and, on the same bytes, the FSM's format and
// its CRC-32C (fsm.VerifyBackup). raft's own Open would read the file a
// second time and log a line of its own.
func verifySnapshot(dir, id string) error {
	base := filepath.Join(dir, snapshotsDir, id)
	b, err := os.ReadFile(filepath.Join(base, "meta.json"))
	if err != nil {
		return err
	}
	var meta struct{ CRC []byte }
	if err := json.Unmarshal(b, &meta); err != nil {
		return fmt.Errorf("meta.json: %w", err)
	}
	f, err := os.Open(filepath.Join(base, "state.bin"))
	if err != nil {
		return err
	}
	defer f.Close()
	sum := crc64.New(crc64.MakeTable(crc64.ECMA))
	r := bufio.NewReaderSize(io.TeeReader(f, sum), 256<<10)
	_, verr := fsm.VerifyBackup(r)
	if _, err := io.Copy(io.Discard, r); err != nil { // the rest, for the CRC
		return fmt.Errorf("read state.bin: %w", err)
	}
	if !bytes.Equal(sum.Sum(nil), meta.CRC) {
		return errors.New("state.bin does not match the CRC-64 in meta.json")
	}
	return verr
}

// moveAside renames snapshots/<id> to snapshots-corrupt/<id>, out of
// raft's sight, keeping it for inspection.
func moveAside(dir, id string) error {
	to := filepath.Join(dir, corruptDir)
	if err := os.MkdirAll(to, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", to, err)
	}
	dst := filepath.Join(to, id)
	if _, err := os.Stat(dst); err == nil {
		dst += ".1"
		_ = os.RemoveAll(dst)
	}
	if err := os.Rename(filepath.Join(dir, snapshotsDir, id), dst); err != nil {
		return fmt.Errorf("set aside snapshot %s: %w", id, err)
	}
	return nil
}

// lastLogConfiguration is the newest configuration entry in the log
// between first and last, looking back at most 100,000 entries.
func lastLogConfiguration(logs raft.LogStore, first, last uint64) (raft.Configuration, bool) {
	for i, n := last, 0; i >= first && i > 0 && n < 100_000; i, n = i-1, n+1 {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			continue
		}
		if l.Type == raft.LogConfiguration {
			return decodeConfiguration(l.Data)
		}
	}
	return raft.Configuration{}, false
}

func hasOtherVoter(c raft.Configuration, id string) bool {
	for _, s := range c.Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != id {
			return true
		}
	}
	return false
}

// decodeConfiguration is raft.DecodeConfiguration without its panic on a
// damaged entry.
func decodeConfiguration(b []byte) (c raft.Configuration, ok bool) {
	defer func() {
		if recover() != nil {
			c, ok = raft.Configuration{}, false
		}
	}()
	return raft.DecodeConfiguration(b), true
}
