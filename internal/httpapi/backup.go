package httpapi

// GET /backup streams a consistent copy of the whole store in the FSM's
// snapshot format; POST /restore installs such a file into the cluster
// through Raft. Both move arbitrarily large bodies, so instead of the
// server's fixed read and write timeouts they use idle deadlines that
// advance as bytes flow: a stalled client is still cut off.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/internal/cluster"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/node"
)

// streamIdleTimeout is how long a backup or restore body may stall.
const streamIdleTimeout = 30 * time.Second

// restoreBytesPerSecond is the rate a restore is assumed to reach at least
// (write the snapshot, rebuild the state machine, send it to followers);
// it sizes the restore deadline on top of REQUEST_TIMEOUT.
const restoreBytesPerSecond = 4 << 20

type restoreResponse struct {
	node.RestoreResult
	Bytes       int64  `json:"bytes"`
	BackupIndex uint64 `json:"backup_index"` // the index the backup reflected where it was taken
}

// handleBackup streams this node's replica after a linearizable barrier, so
// the backup holds every write acknowledged before the request. Any node
// serves it; the state is captured in O(1) and streamed while writes go on.
func (s *Service) handleBackup(w http.ResponseWriter, r *http.Request, _ params) error {
	if err := s.linearizable(r); err != nil {
		return err
	}
	c := s.store.FSM().Capture()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="raftkv-%s-%d.snap"`, s.store.ID(), c.AppliedIndex()))
	h.Set(HeaderBackupKeys, strconv.Itoa(c.Keys()))
	h.Set("Trailer", TrailerBackupSHA256+", "+TrailerBackupCRC)
	setIndexHeader(w, HeaderRaftIndex, c.AppliedIndex())
	w.WriteHeader(http.StatusOK)

	start := time.Now()
	sum := sha256.New()
	dw := &deadlineWriter{w: w, rc: http.NewResponseController(w)}
	crc, err := c.Write(io.MultiWriter(dw, sum))
	if err != nil {
		s.log.WithError(err).WithField("index", c.AppliedIndex()).Warn("backup stream broken")
		// Abort the connection: a clean end of the chunked body would let
		// a client mistake the truncated stream for a whole one.
		panic(http.ErrAbortHandler)
	}
	h.Set(TrailerBackupSHA256, hex.EncodeToString(sum.Sum(nil)))
	h.Set(TrailerBackupCRC, fmt.Sprintf("%08x", crc))
	s.log.WithFields(map[string]any{
		"index": c.AppliedIndex(), "keys": c.Keys(), "bytes": dw.n, "duration": time.Since(start).Round(time.Millisecond),
	}).Info("backup served")
	return nil
}

// handleRestore spools the upload under the volume, verifies all of it,
// and only then installs it: on the leader itself, or by passing the
// verified file on to the leader.
func (s *Service) handleRestore(w http.ResponseWriter, r *http.Request, _ params) error {
	f, info, err := s.receiveBackup(w, r)
	if f != nil {
		defer func() {
			f.Close()
			os.Remove(f.Name())
		}()
	}
	if err != nil {
		return err
	}
	timeout := s.restoreTimeout(info.Size)
	// The answer comes after the install, which may outlast the server's
	// WriteTimeout for a large backup.
	if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + 2*cluster.ForwardSlack)); err != nil {
		s.log.WithError(err).Debug("cannot extend the write deadline for /restore")
	}
	fwd := cluster.Forward{Body: f, Size: info.Size, Timeout: timeout}
	return s.onLeader(w, r, fwd, func() error {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		res, err := s.store.Restore(ctx, f, info)
		if err != nil {
			return err
		}
		setIndexHeader(w, HeaderRaftIndex, res.Index)
		writeJSON(w, http.StatusOK, restoreResponse{RestoreResult: res, Bytes: info.Size, BackupIndex: info.Applied})
		return nil
	})
}

// restoreTimeout bounds a restore of size bytes.
func (s *Service) restoreTimeout(size int64) time.Duration {
	return s.opts.RequestTimeout + time.Duration(size/restoreBytesPerSecond)*time.Second
}

// receiveBackup copies the body to a temporary file (at most
// MaxRestoreBytes) and verifies it completely. The caller removes the
// file, which is returned, rewound, whenever it was created.
func (s *Service) receiveBackup(w http.ResponseWriter, r *http.Request) (*os.File, fsm.BackupInfo, error) {
	limit := s.opts.MaxRestoreBytes
	if r.ContentLength > limit {
		discardRefused(w, r, limit, false)
		return nil, fsm.BackupInfo{}, fmt.Errorf("%w: backup of %d bytes exceeds MAX_RESTORE_BYTES (%d)", ErrTooLarge, r.ContentLength, limit)
	}
	dir, err := s.store.UploadDir()
	if err != nil {
		return nil, fsm.BackupInfo{}, err
	}
	f, err := os.CreateTemp(dir, "upload-*.snap")
	if err != nil {
		return nil, fsm.BackupInfo{}, fmt.Errorf("spool backup: %w", err)
	}
	body := &deadlineReader{r: http.MaxBytesReader(w, r.Body, limit), rc: http.NewResponseController(w)}
	if _, err := io.Copy(f, body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			discardRefused(w, r, limit, true)
			return f, fsm.BackupInfo{}, fmt.Errorf("%w: backup exceeds MAX_RESTORE_BYTES (%d)", ErrTooLarge, limit)
		}
		if body.readErr {
			return f, fsm.BackupInfo{}, fmt.Errorf("%w: the backup could not be read to its end", ErrBadRequest)
		}
		return f, fsm.BackupInfo{}, fmt.Errorf("spool backup: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return f, fsm.BackupInfo{}, fmt.Errorf("rewind backup: %w", err)
	}
	info, err := fsm.VerifyBackup(f)
	if err != nil {
		return f, fsm.BackupInfo{}, fmt.Errorf("%w: %v", ErrBadBackup, err)
	}
	_, err = f.Seek(0, io.SeekStart)
	return f, info, err
}

// deadlineWriter pushes the connection's write deadline forward as data
// goes out, so a long stream is bounded by stalls, not by its length.
type deadlineWriter struct {
	w        io.Writer
	rc       *http.ResponseController
	n        int64
	extended time.Time
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if now := time.Now(); now.Sub(d.extended) > time.Second {
		// Unsupported (a wrapping writer without Unwrap) leaves the
		// server's WriteTimeout in force; nothing better to do.
		_ = d.rc.SetWriteDeadline(now.Add(streamIdleTimeout))
		d.extended = now
	}
	n, err := d.w.Write(p)
	d.n += int64(n)
	return n, err
}

// deadlineReader does the same for a request body; readErr tells its
// errors from the destination's.
type deadlineReader struct {
	r        io.Reader
	rc       *http.ResponseController
	extended time.Time
	readErr  bool
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if now := time.Now(); now.Sub(d.extended) > time.Second {
		_ = d.rc.SetReadDeadline(now.Add(streamIdleTimeout))
		d.extended = now
	}
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		d.readErr = true
	}
	return n, err
}
