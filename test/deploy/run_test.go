package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/proc"
	"github.com/raftkv/raftkv/internal/testwait"
)

// TestDockerfileRun starts the binary the Dockerfile builds the way the
// image runs it: the final stage's ENV exactly, its ENTRYPOINT+CMD, its
// USER, a writable VOLUME, and the HEALTHCHECK command beside it. As root
// this happens in a private network namespace with only loopback up, so
// BIND_ADDR=0.0.0.0 and the image's fixed ports are used as they are and
// touch nothing else. Without root, BIND_ADDR and the ports are overridden
// to free loopback ones, and the user is not switched (logged).
func TestDockerfileRun(t *testing.T) {
	img := dockerImage(t)
	imgEnv, order, err := img.final.env()
	if err != nil {
		t.Fatalf("Dockerfile ENV: %v", err)
	}
	argv, err := img.final.command()
	if err != nil {
		t.Fatal(err)
	}
	health, err := img.final.healthcheck()
	if err != nil {
		t.Fatal(err)
	}
	if health[0] != argv[0] {
		t.Fatalf("HEALTHCHECK runs %s, the image's binary is %s", health[0], argv[0])
	}
	uid, gid := imageUser(t, img.final)
	volumes := imageVolumes(img.final)
	checkImageDescription(t, img.final, imgEnv, volumes)

	// Container paths: the binary at img.imagePath, each VOLUME a fresh
	// directory owned by the image's user (as a named volume would be).
	hostDir, err := os.MkdirTemp(buildDir, "run-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	asRoot := os.Geteuid() == 0
	volumeHost := map[string]string{}
	for _, v := range volumes {
		dir := filepath.Join(hostDir, "volume"+strings.ReplaceAll(v, "/", "_"))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if asRoot {
			if err := os.Chown(dir, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		volumeHost[v] = dir
	}
	env := map[string]string{}
	for k, v := range imgEnv {
		if host, ok := volumeHost[v]; ok {
			t.Logf("%s=%s: the container volume %s is %s here", k, v, v, host)
			v = host
		}
		env[k] = v
	}

	var ns *loopNetns
	if asRoot {
		if ns, err = newLoopNetns(); err != nil {
			t.Fatalf("root, but cannot make a network namespace: %v", err)
		}
		t.Cleanup(ns.close)
		t.Logf("in a private network namespace (only lo up): ENV exactly as in the Dockerfile, running as uid %d gid %d", uid, gid)
	} else {
		ports, err := proc.FreePorts(2)
		if err != nil {
			t.Fatal(err)
		}
		env["BIND_ADDR"] = "127.0.0.1"
		env["HTTP_SERVER_PORT"], env["RAFT_SERVER_PORT"] = strconv.Itoa(ports[0]), strconv.Itoa(ports[1])
		t.Logf("not root: no network namespace, so BIND_ADDR=127.0.0.1 and free ports %v replace the Dockerfile's "+
			"BIND_ADDR=%s HTTP_SERVER_PORT=%s RAFT_SERVER_PORT=%s, and the process keeps uid %d instead of %d",
			ports, imgEnv["BIND_ADDR"], imgEnv["HTTP_SERVER_PORT"], imgEnv["RAFT_SERVER_PORT"], os.Geteuid(), uid)
		uid, gid = -1, -1
	}

	// With a wildcard bind the node advertises the host name (in a
	// container: the container's, which Docker's DNS and /etc/hosts
	// resolve). The raft transport resolves it at start, so it must
	// resolve here too.
	cfg, err := config.Load(lookupIn(env))
	if err != nil {
		t.Fatalf("the Dockerfile's ENV does not load: %v", err)
	}
	hostname, _ := os.Hostname()
	if env["BIND_ADDR"] == "0.0.0.0" && cfg.AdvertiseAddr != hostname {
		t.Errorf("advertise address %q, want the host name %q with BIND_ADDR=0.0.0.0", cfg.AdvertiseAddr, hostname)
	}
	if addrs, err := net.LookupHost(cfg.AdvertiseAddr); err != nil {
		t.Logf("the host name %q does not resolve on this machine (%v); ADVERTISE_ADDR=127.0.0.1 is set so the node can start", cfg.AdvertiseAddr, err)
		env["ADVERTISE_ADDR"] = "127.0.0.1"
	} else {
		t.Logf("advertise address %q resolves to %v", cfg.AdvertiseAddr, addrs)
	}
	wantHTTPAddr := net.JoinHostPort(firstNonEmpty(env["ADVERTISE_ADDR"], cfg.AdvertiseAddr), env["HTTP_SERVER_PORT"])

	var envList []string
	for _, k := range order {
		envList = append(envList, k+"="+env[k])
	}
	if v, ok := env["ADVERTISE_ADDR"]; ok && imgEnv["ADVERTISE_ADDR"] == "" {
		envList = append(envList, "ADVERTISE_ADDR="+v)
	}
	if len(envList) != len(env) {
		t.Fatalf("environment %v lost variables of %v", envList, env)
	}
	mapArgv := func(a []string) []string {
		out := append([]string(nil), a...)
		if out[0] != img.imagePath {
			t.Fatalf("the image runs %s, but the binary is at %s", out[0], img.imagePath)
		}
		out[0] = img.bin
		return out
	}

	logPath := filepath.Join(hostDir, "node.log")
	node, _ := startProcess(t, ns, mapArgv(argv), envList, hostDir, logPath, uid, gid)
	exited := make(chan error, 1) // the node's exit, received once
	nodeDone := make(chan struct{})
	go func() { exited <- node.Wait(); close(nodeDone) }()
	t.Cleanup(func() {
		node.Process.Kill() // only this process; a no-op once it has exited
		<-nodeDone
		if t.Failed() {
			t.Logf("--- node log ---\n%s", proc.Tail(logPath, 40))
		}
	})

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	if ns != nil {
		client.Transport.(*http.Transport).DialContext = ns.dial
	}
	base := "http://" + net.JoinHostPort("127.0.0.1", env["HTTP_SERVER_PORT"])
	get := func(path string) (int, []byte, error) {
		resp, err := client.Get(base + path)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, b, err
	}

	started := time.Now()
	waitRunning(t, 20*time.Second, exited, "GET /health", func() error {
		code, body, err := get("/health")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %s", code, body)
		}
		return err
	})

	// The HEALTHCHECK command, as Docker runs it: same env, user and
	// network namespace, polled until it reports healthy.
	healthArgv := mapArgv(health)
	var lastOut []byte
	waitRunning(t, 30*time.Second, exited, "the HEALTHCHECK command to exit 0", func() error {
		hc, outPath := startProcess(t, ns, healthArgv, envList, hostDir, "", uid, gid)
		err := waitProcess(hc, 10*time.Second)
		lastOut, _ = os.ReadFile(outPath)
		if err != nil {
			err = fmt.Errorf("%v: %s", err, bytes.TrimSpace(lastOut))
		}
		return err
	})
	t.Logf("HEALTHCHECK %q exited 0 %v after start: %s", health, time.Since(started).Round(time.Millisecond), bytes.TrimSpace(lastOut))

	// A write and a read, and the membership the node advertises.
	req, _ := http.NewRequest(http.MethodPut, base+"/kv/deploy/check", strings.NewReader("it runs"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("PUT /kv/deploy/check: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /kv/deploy/check: %s", resp.Status)
	}
	if code, body, err := get("/kv/deploy/check"); err != nil || code != http.StatusOK || string(body) != "it runs" {
		t.Fatalf("GET /kv/deploy/check: %d %q %v", code, body, err)
	}
	var members []struct {
		ID       string `json:"id"`
		HTTPAddr string `json:"http_addr"`
		Voter    bool   `json:"voter"`
	}
	if code, body, err := get("/nodes"); err != nil || code != http.StatusOK || json.Unmarshal(body, &members) != nil {
		t.Fatalf("GET /nodes: %d %s %v", code, body, err)
	}
	if len(members) != 1 || members[0].HTTPAddr != wantHTTPAddr || !members[0].Voter {
		t.Errorf("/nodes = %+v, want one voter advertising %s", members, wantHTTPAddr)
	}

	// It ran in the private namespace, as the image's user, and keeps its
	// state in the volume.
	if ns != nil {
		its, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", node.Process.Pid))
		if host, want := threadNetns(nil), threadNetns(ns); its == "" || its != want || its == host {
			t.Errorf("the node is in network namespace %q; want the private %q, not the test's %q", its, want, host)
		}
	}
	if uid >= 0 {
		if got := procUID(t, node.Process.Pid); got != uid {
			t.Errorf("the node runs as uid %d, want the image's %d", got, uid)
		}
	}
	if dir := env["RAFT_VOLUME_DIR"]; !fileExists(filepath.Join(dir, "raft.db")) {
		t.Errorf("no raft.db in the volume %s", dir)
	}

	// docker stop: SIGTERM, then a clean exit.
	if err := node.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit within 20s of SIGTERM")
	}
}

// checkImageDescription checks what the final stage promises a container.
func checkImageDescription(t *testing.T, final stage, env map[string]string, volumes []string) {
	t.Helper()
	if env["BIND_ADDR"] != "0.0.0.0" {
		t.Errorf("ENV BIND_ADDR=%q; a container must listen on 0.0.0.0", env["BIND_ADDR"])
	}
	if _, ok := env["ADVERTISE_ADDR"]; ok {
		t.Errorf("ENV ADVERTISE_ADDR is fixed in the image; it must default to each container's host name")
	}
	if !slices.Contains(volumes, env["RAFT_VOLUME_DIR"]) {
		t.Errorf("RAFT_VOLUME_DIR=%q is not a VOLUME (%v): state would live in the container's layer", env["RAFT_VOLUME_DIR"], volumes)
	}
	var exposed []string
	for _, in := range final.all("EXPOSE") {
		for _, p := range strings.Fields(in.args) {
			exposed = append(exposed, strings.TrimSuffix(p, "/tcp"))
		}
	}
	for _, name := range []string{"HTTP_SERVER_PORT", "RAFT_SERVER_PORT"} {
		port := env[name]
		if port == "" {
			port = strconv.Itoa(map[string]int{"HTTP_SERVER_PORT": config.DefaultHTTPPort, "RAFT_SERVER_PORT": config.DefaultRaftPort}[name])
		}
		if !slices.Contains(exposed, port) {
			t.Errorf("%s %s is not in EXPOSE %v", name, port, exposed)
		}
	}
}

// imageUser is the final stage's USER as numeric uid and gid; root or a
// name (which the test cannot map without the image's /etc/passwd) fails.
func imageUser(t *testing.T, final stage) (int, int) {
	t.Helper()
	in, ok := final.last("USER")
	if !ok {
		t.Fatal("the final stage has no USER: the container would run as root")
	}
	u, g, _ := strings.Cut(in.args, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(firstNonEmpty(g, u))
	if err1 != nil || err2 != nil {
		t.Fatalf("USER %q: want numeric uid:gid (Kubernetes' runAsNonRoot can only verify a number)", in.args)
	}
	if uid == 0 {
		t.Fatalf("USER %q is root", in.args)
	}
	return uid, gid
}

func imageVolumes(final stage) []string {
	var out []string
	for _, in := range final.all("VOLUME") {
		if a, err := execForm(in.args); err == nil {
			out = append(out, a...)
		} else {
			out = append(out, strings.Fields(in.args)...)
		}
	}
	return out
}

// startProcess starts argv with exactly env (nothing inherited), inside ns
// when it is not nil, as uid/gid when they are not negative. Output goes
// to logPath, or to a fresh file under dir when logPath is empty.
func startProcess(t *testing.T, ns *loopNetns, argv, env []string, dir, logPath string, uid, gid int) (*exec.Cmd, string) {
	t.Helper()
	var f *os.File
	var err error
	if logPath == "" {
		f, err = os.CreateTemp(dir, "healthcheck-*.out")
	} else {
		f, err = os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, dir, f, f
	if uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	start := func() { err = cmd.Start() }
	if ns != nil {
		ns.do(start)
	} else {
		start()
	}
	if err != nil {
		f.Close()
		t.Fatalf("start %v: %v", argv, err)
	}
	f.Close() // the child holds its own copy
	return cmd, f.Name()
}

// waitProcess waits for cmd, killing it after timeout.
func waitProcess(cmd *exec.Cmd, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("%v still running after %v; killed", cmd.Args, timeout)
	}
}

// waitRunning is testwait.For, except that it fails the test at once if
// the node exits: nothing it waits for can happen then.
func waitRunning(t *testing.T, timeout time.Duration, exited <-chan error, what string, cond func() error) time.Duration {
	t.Helper()
	return testwait.For(t, timeout, what, func() error {
		err := cond()
		if err != nil {
			select {
			case e := <-exited:
				t.Fatalf("the node exited (%v) while waiting for %s (last: %v)", e, what, err)
			default:
			}
		}
		return err
	})
}

func procUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return -1
}

// threadNetns names the network namespace of ns's thread, or of an
// ordinary thread of this process when ns is nil.
func threadNetns(ns *loopNetns) string {
	var name string
	read := func() { name, _ = os.Readlink("/proc/thread-self/ns/net") }
	if ns != nil {
		ns.do(read)
		return name
	}
	// Pinned so the read and the thread it names are the same.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	read()
	return name
}

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// TestHealthcheckNotReady runs the real binary as a node that can never be
// ready (its only join address is one nobody serves) and checks that the
// process is up while `raftkv healthcheck` still fails and says why: the
// container must not be reported healthy before it is in a cluster.
func TestHealthcheckNotReady(t *testing.T) {
	img := dockerImage(t)
	ports, err := proc.FreePorts(3) // HTTP, Raft, and a join address nobody serves
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := append(proc.BaseEnv(),
		"HTTP_SERVER_PORT="+strconv.Itoa(ports[0]), "RAFT_SERVER_PORT="+strconv.Itoa(ports[1]),
		"RAFT_VOLUME_DIR="+filepath.Join(dir, "volume"), "RAFT_JOIN=127.0.0.1:"+strconv.Itoa(ports[2]))
	logPath := filepath.Join(dir, "node.log")
	node, _ := startProcess(t, nil, []string{img.bin}, env, dir, logPath, -1, -1)
	exited := make(chan error, 1)
	nodeDone := make(chan struct{})
	go func() { exited <- node.Wait(); close(nodeDone) }()
	t.Cleanup(func() {
		node.Process.Kill()
		<-nodeDone
		if t.Failed() {
			t.Logf("--- node log ---\n%s", proc.Tail(logPath, 40))
		}
	})

	base := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	waitRunning(t, 20*time.Second, exited, "the process to answer /health", func() error {
		hc, out := startProcess(t, nil, []string{img.bin, "healthcheck", base + "/health"}, env, dir, "", -1, -1)
		err := waitProcess(hc, 10*time.Second)
		if err != nil {
			b, _ := os.ReadFile(out)
			err = fmt.Errorf("%v: %s", err, bytes.TrimSpace(b))
		}
		return err
	})
	// The default URL is this node's /ready, which must not be 200.
	hc, out := startProcess(t, nil, []string{img.bin, "healthcheck"}, env, dir, "", -1, -1)
	err = waitProcess(hc, 10*time.Second)
	b, _ := os.ReadFile(out)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("healthcheck of a node without a cluster: %v, want exit status 1; output %s", err, b)
	}
	if !strings.Contains(string(b), base+"/ready") {
		t.Errorf("the failure does not name the URL it checked: %s", b)
	}
	if !strings.Contains(string(b), "503 Service Unavailable") {
		t.Errorf("want a 503 from /ready with its reason, got: %s", b)
	}
	t.Logf("not ready, as expected: %s", bytes.TrimSpace(b))
}
