package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
	"github.com/raftkv/raftkv/internal/testwait"
)

// TestStartScriptsRespectExportedSettings runs scripts/startn1.sh and
// startn2.sh with HTTP_SERVER_PORT, RAFT_SERVER_PORT, RAFT_NODE_ID and
// RAFT_VOLUME_DIR exported (off the seed's 8000/9000 and /tmp/nodeN): each
// node must listen on the exported ports, keep its data in the exported
// volume and answer to the exported id, and the README's join request
// (nodeId, raftPort) must still make n2 a member.
func TestStartScriptsRespectExportedSettings(t *testing.T) {
	bin := raftkvBinary(t)
	root := repoRoot(t)
	dir := t.TempDir()
	ports := freePorts(t, 4)
	start := func(script, id string, http, raft int) *proc.Node {
		vol := filepath.Join(dir, id)
		return proc.StartNode(t, proc.Config{
			Name: id, Bin: filepath.Join(root, "scripts", script), Dir: dir,
			Env: map[string]string{
				"RAFTKV_BIN":       bin, // the script would otherwise build bin/raftkv in the checkout
				"HTTP_SERVER_PORT": strconv.Itoa(http),
				"RAFT_SERVER_PORT": strconv.Itoa(raft),
				"RAFT_NODE_ID":     id,
				"RAFT_VOLUME_DIR":  vol,
			},
		})
	}
	n1 := start("startn1.sh", "s1", ports[0], ports[1])
	n2 := start("startn2.sh", "s2", ports[2], ports[3])
	for _, n := range []*proc.Node{n1, n2} {
		testwait.For(t, 20*time.Second, n.Name+" answering on its exported HTTP port", func() error {
			st, err := n.Status()
			if err != nil {
				return err
			}
			if st.ID != n.Name {
				return fmt.Errorf("id %q, want %q", st.ID, n.Name)
			}
			return nil
		})
		if _, err := os.Stat(n.Volume); err != nil {
			t.Fatalf("%s: the exported RAFT_VOLUME_DIR is not used: %v", n.Name, err)
		}
	}
	testwait.For(t, 10*time.Second, "s1 bootstrapped (leader)", func() error {
		st, err := n1.Status()
		if err == nil && st.State != "Leader" {
			err = fmt.Errorf("state %s", st.State)
		}
		return err
	})
	if st, err := n2.Status(); err != nil || st.State == "Leader" || len(st.Configuration) > 0 {
		t.Fatalf("s2 from startn2.sh must wait to be joined, got %+v, %v", st, err)
	}
	code, body, err := n1.Do(http.MethodGet, fmt.Sprintf("/join?nodeId=s2&raftPort=%d", ports[3]), nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("join: %d %s %v", code, body, err)
	}
	testwait.For(t, 20*time.Second, "s2 a voter", func() error {
		ms, err := n1.Members()
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.ID == "s2" && m.Voter {
				return nil
			}
		}
		return errors.New("s2 not a voter yet")
	})
	if err := set(n2, "k", "v"); err != nil {
		t.Fatal(err)
	}
}
