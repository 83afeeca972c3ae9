package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

const (
	// defaultLockTTL is the lease TTL of `lock` (etcdctl lock's default
	// too): a holder that dies frees the lock within about this long.
	defaultLockTTL = 10 * time.Second
	// lockWaitStep bounds one POST /locks/{name}?wait= of the wait loop:
	// the server caps a wait at its REQUEST_TIMEOUT (5 s by default, at
	// least 100 ms); a step it refuses as too long is halved.
	lockWaitStep = 2 * time.Second
)

// Environment variables `lock` gives its command.
const (
	envLockName  = "RAFTKV_LOCK_NAME"
	envLockToken = "RAFTKV_LOCK_TOKEN"
	envLockLease = "RAFTKV_LOCK_LEASE"
)

func (a *app) lockCommand() *cobra.Command {
	var (
		ttl, wait time.Duration
	)
	cmd := &cobra.Command{
		Use:   "lock [--ttl 10s] [--wait DURATION] NAME [--] COMMAND [ARG...]",
		Short: "run a command while holding a lock (exit 5 if it was held)",
		Long: `Takes the lock NAME for a lease of --ttl that it keeps alive, runs COMMAND with
the lock's fencing token in RAFTKV_LOCK_TOKEN (and RAFTKV_LOCK_NAME,
RAFTKV_LOCK_LEASE), then releases the lock and revokes the lease. It exits with
the command's status (128+N when a signal N ended it).

The flags go before NAME: everything after NAME is the command. Without --wait
it waits for a held lock as long as it takes; with --wait it gives up after
that long (--wait 0: at once), runs nothing and exits 5.

If the lock is lost while the command runs (the lease could not be kept alive
within its TTL), it says so on stderr and sends the command SIGTERM, and exits 1
if the command then exits 0. Use the token to fence writes: a /txn compare of
_locks/NAME's create_index against it fails once the lock was lost
(docs/api.md, Fenced writes). SIGTERM and SIGHUP are passed on to the command;
Ctrl-C reaches it from the terminal; either way the lock is released after it.`,
		Example: `  raftkv lock nightly-report -- ./make-report.sh
  raftkv lock --wait 0 deploy -- sh -c 'echo "holding token $RAFTKV_LOCK_TOKEN"'`,
		DisableFlagsInUseLine: true,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 && args[1] == "--" {
				args = append(args[:1:1], args[2:]...)
			}
			if len(args) < 2 || args[0] == "" {
				return usageError("lock takes NAME and a COMMAND to run (raftkv lock NAME -- COMMAND [ARG...])")
			}
			if ttl < time.Second {
				return usageError("--ttl %v: want at least 1s", ttl)
			}
			if wait < 0 {
				return usageError("--wait %v: want 0 or more", wait)
			}
			err := a.lock(cmd, args[0], args[1:], ttl, wait, isSet(cmd, "wait"))
			var ee *exitErr
			if err != nil && !errors.As(err, &ee) && !errors.Is(err, client.ErrLockHeld) {
				// Its codes are the command's, 5 and 1: a lease that
				// vanished is a failure here, not a "not found".
				return &exitErr{code: exitError, err: err}
			}
			return err
		}),
	}
	cmd.Flags().SetInterspersed(false) // the command's own flags are its own
	cmd.Flags().DurationVar(&ttl, "ttl", defaultLockTTL, "TTL of the lease that holds the lock (kept alive every third of it)")
	cmd.Flags().DurationVar(&wait, "wait", 0, "give up waiting for a held lock after this long (default: wait as long as it takes)")
	return clientCommand(cmd, groupCoord)
}

func (a *app) lock(cmd *cobra.Command, name string, argv []string, ttl, wait time.Duration, bounded bool) error {
	c, err := a.client(cmd)
	if err != nil {
		return err
	}
	defer c.Close()

	// SIGINT and SIGTERM while waiting end the wait; once the command runs
	// they are handled below.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()

	tctx, tcancel := a.context(cmd)
	lease, err := c.Grant(tctx, ttl)
	tcancel()
	if err != nil {
		return fmt.Errorf("granting the lease: %w", err)
	}
	defer a.revoke(c, lease.ID)
	kaCtx, kaCancel := context.WithCancel(context.Background())
	defer kaCancel()
	lost := c.KeepAlive(kaCtx, lease.ID)

	// Take the lock: in steps of at most lockWaitStep, so an unbounded
	// wait outlives the server's cap on one request's wait.
	var deadline time.Time
	if bounded {
		deadline = time.Now().Add(wait)
	}
	var token uint64
	waitCtx, stopWait := context.WithCancel(ctx)
	go func() {
		select {
		case <-sigs:
			stopWait()
		case <-waitCtx.Done():
		}
	}()
	maxStep := lockWaitStep
	for {
		step := maxStep
		if bounded {
			step = min(step, time.Until(deadline))
		}
		if step < 0 {
			step = 0
		}
		actx, acancel := context.WithTimeout(waitCtx, step+a.requestBound())
		token, err = c.Lock(actx, name, lease.ID, step)
		acancel()
		if err == nil {
			break
		}
		var ce *client.Error
		if errors.As(err, &ce) && ce.Code == "bad_request" && step > 50*time.Millisecond && strings.Contains(ce.Message, "wait=") {
			maxStep = step / 2 // over this cluster's REQUEST_TIMEOUT
			continue
		}
		if interrupted := waitCtx.Err() != nil; interrupted || !errors.Is(err, client.ErrLockHeld) {
			stopWait()
			if interrupted {
				return errors.New("interrupted while waiting for the lock; nothing ran")
			}
			return err
		}
		if bounded && !time.Now().Before(deadline) {
			stopWait()
			return err // lock_held: exit 5
		}
		select {
		case err := <-lost:
			stopWait()
			if err == nil {
				err = errors.New("its keepalive ended")
			}
			return fmt.Errorf("lease %d was lost while waiting for the lock: %w", lease.ID, err)
		default:
		}
	}
	stopWait()
	defer a.unlock(c, name, token)

	child := exec.Command(argv[0], argv[1:]...)
	// The command gets the streams themselves when they are files (a
	// terminal stays a terminal). Otherwise exec copies its stderr in a
	// goroutine, and our own lines must not race with that copy.
	stderr := a.stderr
	if _, ok := stderr.(*os.File); !ok {
		stderr = &lockedWriter{w: stderr}
	}
	child.Stdin, child.Stdout, child.Stderr = a.stdin, a.stdout, stderr
	child.Env = append(os.Environ(),
		envLockName+"="+name,
		envLockToken+"="+strconv.FormatUint(token, 10),
		envLockLease+"="+strconv.FormatUint(lease.ID, 10))
	release := bindToParent(child)
	defer release()
	if err := child.Start(); err != nil {
		return fmt.Errorf("running %s: %w", argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	lockLost := false
	for {
		select {
		case sig := <-sigs:
			// Ctrl-C reaches the command from the terminal already.
			if sig != syscall.SIGINT {
				_ = child.Process.Signal(sig)
			}
			continue
		case err, ok := <-lost:
			if !ok || lockLost {
				lost = nil
				continue
			}
			lockLost = true
			fmt.Fprintf(stderr, "raftkv lock: lost the lock %q (lease %d could not be kept alive: %s); sending %s SIGTERM\n", name, lease.ID, describe(err), argv[0])
			_ = child.Process.Signal(syscall.SIGTERM)
			continue
		case err := <-done:
			code := childExitCode(err)
			if code < 0 {
				return fmt.Errorf("running %s: %w", argv[0], err)
			}
			if lockLost && code == 0 {
				code = exitError
			}
			return exitCode(code)
		}
	}
}

// requestBound is what one request may take beyond a lock's wait.
func (a *app) requestBound() time.Duration {
	if a.g.timeout > 0 {
		return a.g.timeout
	}
	return defaultTimeout
}

// childExitCode is the status of a command that ended: its exit code, or
// 128+N when signal N ended it (as shells report it); -1 if it is not an
// exit status at all.
func childExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return -1
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ee.ExitCode()
}

// unlock releases the lock after the command; a failure is reported but
// not fatal (revoking the lease releases it too).
func (a *app) unlock(c *client.Client, name string, token uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), a.requestBound())
	defer cancel()
	if err := c.Unlock(ctx, name, token); err != nil && !errors.Is(err, client.ErrCompareFailed) && !errors.Is(err, client.ErrNotFound) {
		fmt.Fprintf(a.stderr, "raftkv lock: releasing %q: %s\n", name, describe(err))
	}
}

// revoke revokes the lock's lease; when that fails the lease expires
// within its TTL, which is said.
func (a *app) revoke(c *client.Client, id uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), a.requestBound())
	defer cancel()
	if _, err := c.Revoke(ctx, id); err != nil && !errors.Is(err, client.ErrNotFound) {
		fmt.Fprintf(a.stderr, "raftkv lock: revoking lease %d: %s (it expires by itself within its TTL)\n", id, describe(err))
	}
}

// lockedWriter serializes writes to w (and hides any ReadFrom of w, which
// would read into w's buffer outside the lock).
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
