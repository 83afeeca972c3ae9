// Package proc is the process-level test harness: the one every test that
// runs the real daemon uses (test/e2e, test/fault), as etcd's
// tests/framework/e2e serves its e2e and robustness suites.
//
// At the bottom are the primitives: build the binary once per test binary
// (Builder), pick free ports, start a child process with a minimal
// environment and a log file, signal it and wait for it with a bound
// (Process). On them stand a Node (one raftkv process: start, stop, kill,
// pause, restart, its URLs, its log, its /status decoded into node.Status)
// and a Cluster (start N nodes formed one of three ways, wait for a leader
// and for each node's own view of the voters). Waits poll through
// internal/testwait, the one polling loop of all the tests.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Module is the module path that identifies the repository root.
const Module = "github.com/raftkv/raftkv"

// ModuleRoot walks up from dir to the directory whose go.mod declares
// Module.
func ModuleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(b, []byte("module "+Module+"\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod for %s above %s", Module, dir)
		}
	}
}

// Builder builds ./cmd/raftkv once and remembers the result. The zero
// value is ready to use; call Remove when the binary is no longer needed.
type Builder struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Binary builds the daemon from the module at root (static, without -race:
// tests treat it as a black box) on the first call and returns its path.
func (b *Builder) Binary(root string) (string, error) {
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "raftkv-bin-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "raftkv")
		cmd := exec.Command("go", "build", "-o", b.path, "./cmd/raftkv")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./cmd/raftkv: %v\n%s", err, out)
		}
	})
	return b.path, b.err
}

// Remove deletes the built binary.
func (b *Builder) Remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// FreePorts returns n distinct loopback ports that were free a moment ago.
// All listeners stay open until every port is picked, so none repeats.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		defer ln.Close()
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// BaseEnv is the minimal environment of a node process, so the caller's
// RAFT_* and other configuration variables never leak into a test.
func BaseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Spec describes a process to start.
type Spec struct {
	// Argv is the program and its arguments. A wrapper that execs the real
	// program in place (such as "ip netns exec NS prog") keeps the pid, so
	// signals reach the program itself.
	Argv    []string
	Env     []string
	Dir     string // working directory
	LogPath string // stdout and stderr are appended here
}

// Process is one started child process.
type Process struct {
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{}
	err     error // cmd.Wait's result, set before exited closes
}

// Start runs s in the background.
func Start(s Spec) (*Process, error) {
	if len(s.Argv) == 0 {
		return nil, errors.New("proc: empty Argv")
	}
	f, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(s.Argv[0], s.Argv[1:]...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = s.Env, s.Dir, f, f
	p := &Process{cmd: cmd, started: time.Now(), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", s.Argv[0], err)
	}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Started is when Start ran.
func (p *Process) Started() time.Time { return p.started }

// Exited is closed once the process has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Signal sends sig; signalling an exited process is not an error.
func (p *Process) Signal(sig syscall.Signal) error {
	if !p.Running() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// Wait waits up to timeout for the process to exit and returns cmd.Wait's
// error; ok is false if it is still running.
func (p *Process) Wait(timeout time.Duration) (exitErr error, ok bool) {
	select {
	case <-p.exited:
		return p.err, true
	case <-time.After(timeout):
		return nil, false
	}
}

// Kill sends SIGKILL (which also ends a stopped process) and waits for the
// exit, at most timeout.
func (p *Process) Kill(timeout time.Duration) error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	if _, ok := p.Wait(timeout); !ok {
		return fmt.Errorf("pid %d did not exit within %v of SIGKILL", p.Pid(), timeout)
	}
	return nil
}

// Tail returns the last n lines of the file at path.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
