package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
	"github.com/raftkv/raftkv/internal/testwait"
)

// TestOfflineRestoreForceOverUsedVolume: `raftkv restore --force` into the
// volume of the node the backup came from, on both log stores. After the
// backup one key is deleted and another written; the restarted node must
// serve exactly the backup. A log left in the volume (wal/ once was) would
// replay those later writes on top of it.
func TestOfflineRestoreForceOverUsedVolume(t *testing.T) {
	bin := raftkvBinary(t)
	for _, store := range []string{"boltdb", "wal"} {
		t.Run(store, func(t *testing.T) {
			tmp := t.TempDir()
			ports := freePorts(t, 2)
			volume := filepath.Join(tmp, "n1")
			env := map[string]string{
				"RAFT_NODE_ID": "n1", "RAFT_VOLUME_DIR": volume, "RAFT_LOG_STORE": store,
				"HTTP_SERVER_PORT": strconv.Itoa(ports[0]), "RAFT_SERVER_PORT": strconv.Itoa(ports[1]),
			}
			n := proc.StartNode(t, proc.Config{Name: "n1", Bin: bin, Dir: tmp, Env: env})
			testwait.For(t, 20*time.Second, "the node to take writes", func() error { return set(n, "kept", "1") })
			if err := set(n, "deleted-later", "2"); err != nil {
				t.Fatal(err)
			}
			resp, err := proc.Client.Get(n.URL("/backup"))
			if err != nil {
				t.Fatalf("GET /backup: %v", err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /backup: %d, %d bytes, %v", resp.StatusCode, len(b), err)
			}
			backup := filepath.Join(tmp, "backup.snap")
			if err := os.WriteFile(backup, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if code, body, err := n.Do(http.MethodPost, "/remove?key=deleted-later", nil); err != nil || code != http.StatusOK {
				t.Fatalf("remove: %d %s %v", code, body, err)
			}
			for _, kv := range [][2]string{{"written-later", "3"}, {"kept", "changed"}} {
				if err := set(n, kv[0], kv[1]); err != nil {
					t.Fatal(err)
				}
			}
			if err := n.Stop(10 * time.Second); err != nil {
				t.Fatalf("exit after SIGTERM: %v", err)
			}

			code, stdout, stderr := runRestore(t, bin, env, "--force", backup)
			if code != 0 {
				t.Fatalf("restore --force: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
			}
			logDir := map[string]string{"boltdb": "raft.db", "wal": "wal"}[store]
			for _, p := range []string{logDir, "snapshots"} {
				if !strings.Contains(stdout, "removed "+filepath.Join(volume, p)+"\n") {
					t.Errorf("restore --force did not report removing %s:\n%s", p, stdout)
				}
			}

			n.Restart()
			testwait.For(t, 20*time.Second, "a linearizable read on the restored node", func() error {
				v, err := get(n, "kept", "")
				if err == nil && v != "1" {
					err = fmt.Errorf("kept = %q, want the backup's 1", v)
				}
				return err
			})
			if v, err := get(n, "deleted-later", ""); err != nil || v != "2" {
				t.Errorf("deleted-later after the restore: %q, %v; want the backup's 2", v, err)
			}
			code, body, err := n.Do(http.MethodGet, "/get?"+url.Values{"key": {"written-later"}}.Encode(), nil)
			if code != http.StatusNotFound {
				t.Errorf("written-later after the restore: status %d %s (%v), want 404: it was written after the backup", code, body, err)
			}
			if err := n.Stop(10 * time.Second); err != nil {
				t.Errorf("exit after SIGTERM: %v", err)
			}
		})
	}
}
