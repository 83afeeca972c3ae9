package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/httpapi"
	"github.com/raftkv/raftkv/internal/testcluster"
	"github.com/raftkv/raftkv/internal/testwait"
)

// streamClient moves backups; its timeout bounds every transfer.
var streamClient = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{Proxy: nil}}

// loadKeys writes n keys through the leader's node in batches of proposals
// (one log entry per key, as the HTTP API would make them).
func loadKeys(t *testing.T, c *testcluster.Cluster, prefix string, n int, value func(int) string) {
	t.Helper()
	const batch = 1000
	for start := 0; start < n; start += batch {
		var cmds [][]byte
		for i := start; i < min(start+batch, n); i++ {
			cmd := fsm.Command{Op: fsm.OpSet, Key: fmt.Sprintf("%s%06d", prefix, i), Value: value(i)}
			cmds = append(cmds, cmd.Encode(nil))
		}
		testwait.For(t, 30*time.Second, fmt.Sprintf("keys %d..%d to be written", start, start+batch), func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for _, out := range c.Node(c.Leader(t)).ApplyEncoded(ctx, cmds) {
				if out.Err != nil || out.Result.Err != nil {
					t.Logf("batch at %d: %v %v (retrying)", start, out.Err, out.Result)
					return fmt.Errorf("%v %v", out.Err, out.Result) // sets are idempotent: resend the whole batch
				}
			}
			return nil
		})
	}
}

// downloadBackup GETs /backup from member i into a file and checks the
// headers and trailers it promises.
func downloadBackup(t *testing.T, c *testcluster.Cluster, i int, path string) (index uint64) {
	t.Helper()
	resp, err := streamClient.Get(c.URL(i) + "/backup")
	if err != nil {
		t.Fatalf("GET /backup: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /backup on %s: %d %s", c.ID(i), resp.StatusCode, b)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, sum), resp.Body); err != nil {
		t.Fatalf("read backup: %v", err)
	}
	index, err = strconv.ParseUint(resp.Header.Get(httpapi.HeaderRaftIndex), 10, 64)
	if err != nil || index == 0 {
		t.Fatalf("X-Raft-Index %q", resp.Header.Get(httpapi.HeaderRaftIndex))
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, fmt.Sprintf(`filename="raftkv-%s-%d.snap"`, c.ID(i), index)) {
		t.Errorf("Content-Disposition %q", cd)
	}
	if got, want := resp.Trailer.Get(httpapi.TrailerBackupSHA256), hex.EncodeToString(sum.Sum(nil)); got != want {
		t.Errorf("SHA-256 trailer %q, body hashes to %q", got, want)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 5 {
		t.Fatalf("backup file: %d bytes, %v", len(b), err)
	}
	if got, want := resp.Trailer.Get(httpapi.TrailerBackupCRC), fmt.Sprintf("%08x", binary.BigEndian.Uint32(b[len(b)-4:])); got != want {
		t.Errorf("CRC trailer %q, format trailer %q", got, want)
	}
	return index
}

// postRestore POSTs the file at path to member i's /restore.
func postRestore(t *testing.T, c *testcluster.Cluster, i int, body io.Reader, size int64) testcluster.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.URL(i)+"/restore", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	resp, err := streamClient.Do(req)
	if err != nil {
		t.Fatalf("POST /restore to %s: %v", c.ID(i), err)
	}
	defer resp.Body.Close()
	r, err := testcluster.ReadResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// replica reads member i's whole local state (keys, values, indexes).
func replica(t *testing.T, c *testcluster.Cluster, i int) (map[string]fsm.Entry, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if _, err := c.Node(i).FSM().Capture().Write(&buf); err != nil {
		t.Fatal(err)
	}
	m := map[string]fsm.Entry{}
	if _, err := fsm.ScanBackup(bytes.NewReader(buf.Bytes()), func(e fsm.Entry) { m[e.Key] = e }); err != nil {
		t.Fatalf("scan %s: %v", c.ID(i), err)
	}
	return m, buf.Bytes()
}

func scanFile(t *testing.T, path string) (map[string]string, fsm.BackupInfo) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	info, err := fsm.ScanBackup(f, func(e fsm.Entry) { m[e.Key] = e.Value })
	if err != nil {
		t.Fatalf("scan %s: %v", path, err)
	}
	return m, info
}

// waitApplied waits until every running member has applied index.
func waitApplied(t *testing.T, c *testcluster.Cluster, index uint64) {
	t.Helper()
	for _, i := range c.Running() {
		testwait.For(t, catchUp, fmt.Sprintf("%s to apply index %d", c.ID(i), index), func() error {
			if got := c.Node(i).FSM().AppliedIndex(); got < index {
				return fmt.Errorf("applied %d", got)
			}
			return nil
		})
	}
}

// TestBackupRestoreRoundTrip: 100,000 keys backed up from cluster A are
// restored into cluster B, which had keys of its own: afterwards every
// node of B holds exactly A's keys and values (B's own are gone), also
// after a restart, and B goes on taking writes.
func TestBackupRestoreRoundTrip(t *testing.T) {
	keys := 100_000
	if raceEnabled || testing.Short() {
		keys = 10_000
	}
	value := func(i int) string { return fmt.Sprintf("value-%d-%s", i, strings.Repeat("x", i%50)) }

	a := testcluster.Start(t, 3)
	start := time.Now()
	loadKeys(t, a, "key-", keys, value)
	t.Logf("wrote %d keys to A in %v", keys, time.Since(start).Round(time.Millisecond))

	b := testcluster.Start(t, 3)
	b.MustSet(t, b.Leader(t), "b-only", "doomed")
	casToken := b.MustSet(t, b.Leader(t), "key-000001", "B's version")
	loadKeys(t, b, "b-key-", 500, func(i int) string { return "b" })

	// A follower of A serves the backup.
	path := filepath.Join(t.TempDir(), "a.snap")
	start = time.Now()
	backupIndex := downloadBackup(t, a, others(a, a.Leader(t))[0], path)
	fi, _ := os.Stat(path)
	t.Logf("backup: %d keys, %d bytes, index %d, in %v", keys, fi.Size(), backupIndex, time.Since(start).Round(time.Millisecond))
	want, info := scanFile(t, path)
	if len(want) != keys || info.Keys != uint64(keys) || info.Applied != backupIndex {
		t.Fatalf("backup holds %d keys (header %d) at index %d, want %d keys at %d", len(want), info.Keys, info.Applied, keys, backupIndex)
	}
	for i := range keys {
		k := fmt.Sprintf("key-%06d", i)
		if want[k] != value(i) {
			t.Fatalf("backup has %q = %q, want %q", k, want[k], value(i))
		}
	}

	// Restore through a follower of B: it verifies, then hands the file on.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bf := others(b, b.Leader(t))[0]
	start = time.Now()
	r := postRestore(t, b, bf, f, fi.Size())
	t.Logf("restore of %d keys (%d bytes) through a follower: %v", keys, fi.Size(), time.Since(start).Round(time.Millisecond))
	if r.Status != http.StatusOK || r.Uint("keys") != uint64(keys) || r.Uint("bytes") != uint64(fi.Size()) || r.Uint("backup_index") != backupIndex {
		t.Fatalf("POST /restore: %s", r.Summary())
	}
	if r.ServedBy() != b.ID(b.Leader(t)) {
		t.Errorf("restore answered by %q, want the leader %s (forwarded by %s)", r.ServedBy(), b.ID(b.Leader(t)), b.ID(bf))
	}
	readIndex, snapIndex := r.Uint("index"), r.Uint("snapshot_index")
	if snapIndex == 0 || readIndex < snapIndex || r.RaftIndex() != readIndex {
		t.Fatalf("POST /restore: index %d, snapshot_index %d, X-Raft-Index %d", readIndex, snapIndex, r.RaftIndex())
	}

	check := func(when string) {
		t.Helper()
		waitApplied(t, b, readIndex)
		var first []byte
		for _, i := range b.Running() {
			got, raw := replica(t, b, i)
			if len(got) != len(want) {
				t.Fatalf("%s: %s holds %d keys, want %d", when, b.ID(i), len(got), len(want))
			}
			for k, e := range got {
				if w, ok := want[k]; !ok || w != e.Value {
					t.Fatalf("%s: %s has %q = %q (in backup: %v, %q)", when, b.ID(i), k, e.Value, ok, w)
				}
				if e.CreateIndex != snapIndex || e.ModIndex != snapIndex {
					t.Fatalf("%s: %s key %q has indexes %d/%d, want both %d", when, b.ID(i), k, e.CreateIndex, e.ModIndex, snapIndex)
				}
			}
			// Identical states write identical bytes, node table included.
			if first == nil {
				first = raw
			} else if b.Node(i).FSM().AppliedIndex() == readIndex && !bytes.Equal(raw, first) {
				t.Fatalf("%s: %s's state differs from %s's", when, b.ID(i), b.ID(b.Running()[0]))
			}
			if st := b.GetKey(t, i, "b-only", "stale"); st.Status != http.StatusNotFound {
				t.Fatalf("%s: B's own key survived on %s: %s", when, b.ID(i), st.Summary())
			}
			mustRead(t, b, i, "key-000001", value(1))
			mustRead(t, b, i, fmt.Sprintf("key-%06d", keys-1), value(keys-1))
		}
	}
	check("after restore")

	// The restored state is what a member recovers from its own disk.
	b.Kill(t, bf)
	b.Restart(t, bf)
	check("after a follower restart")

	// B keeps accepting writes, through every node, on top of the restore.
	for _, i := range b.Running() {
		k := "after-" + b.ID(i)
		idx := b.MustSet(t, i, k, "new")
		if idx <= readIndex {
			t.Fatalf("write after restore at index %d, not after %d", idx, readIndex)
		}
		mustRead(t, b, i, k, "new")
	}
	// A compare-and-set token B handed out before the restore no longer
	// matches the restored key.
	cas := b.MustDo(t, b.Leader(t), http.MethodPut, "/kv/key-000001?cas="+strconv.FormatUint(casToken, 10), []byte("x"), nil)
	if cas.Status != http.StatusConflict || cas.Uint("index") != snapIndex {
		t.Fatalf("CAS with a pre-restore index: %s, want 409 with index %d", cas.Summary(), snapIndex)
	}
}

// TestBackupFromFollowerIsLinearizable: a backup served by a follower
// includes a write acknowledged, through another node, just before it.
func TestBackupFromFollowerIsLinearizable(t *testing.T) {
	c := testcluster.Start(t, 3)
	l := c.Leader(t)
	fs := others(c, l)
	dir := t.TempDir()
	for round := range 10 {
		writer, reader := []int{l, fs[1]}[round%2], fs[0]
		key := fmt.Sprintf("fresh-%d", round)
		idx := c.MustSet(t, writer, key, "v"+strconv.Itoa(round))
		path := filepath.Join(dir, key+".snap")
		index := downloadBackup(t, c, reader, path)
		if index < idx {
			t.Fatalf("backup from %s reflects index %d, before the acknowledged write at %d", c.ID(reader), index, idx)
		}
		got, _ := scanFile(t, path)
		for r := range round + 1 {
			if k := fmt.Sprintf("fresh-%d", r); got[k] != "v"+strconv.Itoa(r) {
				t.Fatalf("round %d: backup from %s lacks %q (has %q)", round, c.ID(reader), k, got[k])
			}
		}
	}
}

// TestRestoreRefusesBadInput: corrupt, truncated and oversize uploads are
// refused (400/413, JSON) by leader and follower alike, and no node's
// state or applied index moves.
func TestRestoreRefusesBadInput(t *testing.T) {
	const maxBytes = 64 << 10
	c := testcluster.Start(t, 3, testcluster.WithMaxRestoreBytes(maxBytes))
	for i := range 200 {
		c.MustSet(t, c.Leader(t), fmt.Sprintf("k%03d", i), strings.Repeat("v", i))
	}
	path := filepath.Join(t.TempDir(), "good.snap")
	downloadBackup(t, c, c.Leader(t), path)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(good) > maxBytes {
		t.Fatalf("test backup is %d bytes, over the %d cap", len(good), maxBytes)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x20
		return b
	}
	tests := []struct {
		name    string
		body    []byte
		chunked bool // no Content-Length: the cap is enforced while reading
		status  int
		code    string
	}{
		{"empty body", []byte{}, false, http.StatusBadRequest, "bad_backup"},
		{"wrong magic", append([]byte("NOTRAFTK"), good[8:]...), false, http.StatusBadRequest, "bad_backup"},
		{"truncated to 4", good[:4], false, http.StatusBadRequest, "bad_backup"},
		{"truncated to 9", good[:9], false, http.StatusBadRequest, "bad_backup"},
		{"truncated to a half", good[:len(good)/2], false, http.StatusBadRequest, "bad_backup"},
		{"truncated before the trailer", good[:len(good)-5], false, http.StatusBadRequest, "bad_backup"},
		{"truncated by one byte", good[:len(good)-1], true, http.StatusBadRequest, "bad_backup"},
		{"flipped byte in a value", flip(len(good) / 2), false, http.StatusBadRequest, "bad_backup"},
		{"flipped byte in the checksum", flip(len(good) - 1), false, http.StatusBadRequest, "bad_backup"},
		{"trailing garbage", append(bytes.Clone(good), "garbage"...), false, http.StatusBadRequest, "bad_backup"},
		{"oversize, declared", bytes.Repeat(good, 2*maxBytes/len(good)+1), false, http.StatusRequestEntityTooLarge, "too_large"},
		{"oversize, chunked", bytes.Repeat(good, 2*maxBytes/len(good)+1), true, http.StatusRequestEntityTooLarge, "too_large"},
	}
	// Followers first catch up, so that "unchanged" is about the restores.
	waitApplied(t, c, c.Node(c.Leader(t)).FSM().AppliedIndex())
	before := map[int][]byte{}
	applied := map[int]uint64{}
	for _, i := range c.Running() {
		_, before[i] = replica(t, c, i)
		applied[i] = c.Node(i).FSM().AppliedIndex()
	}
	targets := map[string]int{"leader": c.Leader(t), "follower": others(c, c.Leader(t))[0]}
	for _, tt := range tests {
		for role, i := range targets {
			t.Run(tt.name+" via "+role, func(t *testing.T) {
				var body io.Reader = bytes.NewReader(tt.body)
				size := int64(len(tt.body))
				if tt.chunked {
					body, size = io.MultiReader(body), -1 // hides the length
				}
				r := postRestore(t, c, i, body, size)
				if r.Status != tt.status || r.Code() != tt.code || r.String("error") == "" {
					t.Fatalf("got %s, want %d %s", r.Summary(), tt.status, tt.code)
				}
			})
		}
	}
	for _, i := range c.Running() {
		if got := c.Node(i).FSM().AppliedIndex(); got != applied[i] {
			t.Errorf("%s applied index moved from %d to %d", c.ID(i), applied[i], got)
		}
		if _, now := replica(t, c, i); !bytes.Equal(now, before[i]) {
			t.Errorf("%s state changed", c.ID(i))
		}
	}
	if entries, err := os.ReadDir(filepath.Join(c.Dir(targets["follower"]), "restore-uploads")); err != nil || len(entries) != 0 {
		t.Errorf("upload spool not cleaned: %v, %v", entries, err)
	}
	// The good file still restores, so the refusals were about the damage.
	r := postRestore(t, c, targets["follower"], bytes.NewReader(good), int64(len(good)))
	if r.Status != http.StatusOK || r.Uint("keys") != 200 {
		t.Fatalf("restore of the undamaged backup: %s", r.Summary())
	}
}

// slowReader hands out its data with a pause before every piece bytes.
type slowReader struct {
	data  []byte
	piece int
	pause time.Duration
	left  int // bytes until the next pause
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	if s.left == 0 {
		time.Sleep(s.pause)
		s.left = s.piece
	}
	n := copy(p[:min(len(p), s.left)], s.data)
	s.data, s.left = s.data[n:], s.left-n
	return n, nil
}

// TestBackupRestoreOutliveServerTimeouts: a backup download and a restore
// upload that each take several times the server's read and write
// timeouts still complete, because bytes keep flowing.
func TestBackupRestoreOutliveServerTimeouts(t *testing.T) {
	c := testcluster.Start(t, 1)
	const keys = 40_000 // 12 MB, three times the server's socket buffer
	start := time.Now()
	loadKeys(t, c, "k", keys, func(int) string { return strings.Repeat("v", 300) })
	t.Logf("load: %v", time.Since(start))

	// The same API on a second listener, with one-second server timeouts.
	cl := cluster.New(c.Node(0), cluster.Options{RequestTimeout: c.RequestTimeout()})
	defer cl.Close()
	svc := httpapi.New(c.Node(0), cl, httpapi.Options{
		MaxKeyBytes: c.MaxKeyBytes(), MaxValueBytes: c.MaxValueBytes(), RequestTimeout: c.RequestTimeout(),
		MaxRestoreBytes: 1 << 30,
	})
	srv := httptest.NewUnstartedServer(svc)
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = time.Second, time.Second
	srv.Start()
	defer srv.Close()

	// A small receive buffer keeps the kernel from absorbing the whole
	// download (loopback autotunes it to 32 MiB), so the server's writes
	// really wait for this slow reader.
	slowClient := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		Control: func(_, _ string, rc syscall.RawConn) error {
			var err error
			if cerr := rc.Control(func(fd uintptr) {
				err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
			}); cerr != nil {
				return cerr
			}
			return err
		},
	}).DialContext}}
	start = time.Now()
	resp, err := slowClient.Get(srv.URL + "/backup")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %v and %d bytes: %v", time.Since(start), got.Len(), err)
		}
		time.Sleep(15 * time.Millisecond)
	}
	resp.Body.Close()
	took := time.Since(start)
	info, err := fsm.VerifyBackup(bytes.NewReader(got.Bytes()))
	if err != nil || info.Keys != keys {
		t.Fatalf("slow download (%v): %d keys, %v", took, info.Keys, err)
	}
	t.Logf("slow download of %d bytes: %v", got.Len(), took)
	if took < 2*time.Second {
		t.Fatalf("download took %v: too fast to outlast the 1s write timeout, the test proves nothing", took)
	}

	start = time.Now()
	body := &slowReader{data: got.Bytes(), piece: 256 << 10, pause: 50 * time.Millisecond}
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/restore", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(got.Len())
	resp, err = streamClient.Do(req)
	if err != nil {
		t.Fatalf("slow upload after %v: %v", time.Since(start), err)
	}
	r, err := testcluster.ReadResponse(resp)
	resp.Body.Close()
	if err != nil || r.Status != http.StatusOK || r.Uint("keys") != keys {
		t.Fatalf("slow upload: %s, %v", r.Summary(), err)
	}
	t.Logf("slow upload: %v", time.Since(start))
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("upload took %v: too fast to outlast the 1s read timeout", took)
	}
}
