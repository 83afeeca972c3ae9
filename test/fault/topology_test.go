package fault

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/raftkv/raftkv/internal/proc"
)

// topology places the nodes on a network and cuts links between them.
type topology interface {
	name() string
	// addr is where node i (0-based) binds and is reached, and wrap is the
	// command prefix that runs a program in its network.
	addr(i int) (ip string, httpPort, raftPort int)
	wrap(i int) []string
	// canPartition says why partitions are impossible ("" if they work).
	canPartition() string
	// cut drops every packet between a and b, both ways, until heal.
	cut(a, b int) error
	heal() error
}

// newTopology gives a network-namespace topology when running as root with
// iproute2 (and FAULT_TOPOLOGY is not "loopback"), else loopback ports.
// Teardown is registered with t.Cleanup.
func newTopology(t *testing.T, n int) topology {
	t.Helper()
	why := "needs root for network namespaces (nodes share loopback, where peers cannot be partitioned)"
	switch _, err := exec.LookPath("ip"); {
	case os.Getenv("FAULT_TOPOLOGY") == "loopback":
		why = "FAULT_TOPOLOGY=loopback: nodes share loopback, where peers cannot be partitioned"
	case os.Geteuid() != 0:
	case err != nil:
		why = "needs iproute2 (ip) for network namespaces"
	default:
		nt, err := newNetnsTopology(t, n)
		if err == nil {
			return nt
		}
		why = fmt.Sprintf("network namespaces unavailable (%v)", err)
		t.Logf("falling back to loopback: %s", why)
	}
	ports, err := proc.FreePorts(2 * n)
	if err != nil {
		t.Fatal(err)
	}
	return &loopbackTopology{ports: ports, why: why}
}

// loopbackTopology runs every node on 127.0.0.1 with its own ports. Peers
// cannot be told apart by address there (an unbound dial to 127.0.0.x
// leaves from 127.0.0.1), so partitions are impossible.
type loopbackTopology struct {
	ports []int
	why   string // why partitions are impossible
}

func (l *loopbackTopology) name() string { return "loopback" }
func (l *loopbackTopology) addr(i int) (string, int, int) {
	return "127.0.0.1", l.ports[2*i], l.ports[2*i+1]
}
func (l *loopbackTopology) wrap(int) []string    { return nil }
func (l *loopbackTopology) canPartition() string { return l.why }
func (l *loopbackTopology) cut(a, b int) error {
	return fmt.Errorf("loopback topology cannot partition")
}
func (l *loopbackTopology) heal() error { return nil }

// Names owned by this suite start with netnsPrefix followed by the pid of
// the test process, so parallel runs never collide and leftovers of dead
// runs can be recognised and removed. Interface names must fit in 15 bytes.
const (
	netnsPrefix = "rkvf"
	nftTable    = "rkvfault"
	testComm    = "fault.test" // /proc/<pid>/comm of a live run
)

var ownedName = regexp.MustCompile(`^` + netnsPrefix + `(\d+)`)

// netnsTopology puts node i in network namespace <prefix>-n<i+1> with
// address 198.18.X.(11+i) on a veth pair whose other end is enslaved to a
// bridge (198.18.X.1) in the root namespace, where the clients run.
// 198.18.0.0/15 is the RFC 2544 benchmarking range, used only inside these
// namespaces. Partitions drop packets by source address inside a node's
// namespace with nft (or iptables).
type netnsTopology struct {
	t      *testing.T
	prefix string
	octet  int // X in 198.18.X.0/24
	ns     []string
	bridge string
	fw     string // "nft", "iptables" or "" (no partitions)
}

func newNetnsTopology(t *testing.T, n int) (*netnsTopology, error) {
	removeStaleNetns(t)
	nt := &netnsTopology{t: t, prefix: netnsPrefix + strconv.Itoa(os.Getpid())}
	nt.bridge = nt.prefix + "br"
	for _, fw := range []string{"nft", "iptables"} {
		if _, err := exec.LookPath(fw); err == nil {
			nt.fw = fw
			break
		}
	}
	octet, err := freeOctet()
	if err != nil {
		return nil, err
	}
	nt.octet = octet
	t.Cleanup(nt.teardown)

	subnet := fmt.Sprintf("198.18.%d.", octet)
	steps := [][]string{
		{"link", "add", nt.bridge, "type", "bridge"},
		{"addr", "add", subnet + "1/24", "dev", nt.bridge},
		{"link", "set", nt.bridge, "up"},
	}
	for i := range n {
		ns := fmt.Sprintf("%s-n%d", nt.prefix, i+1)
		nt.ns = append(nt.ns, ns)
		host, peer := fmt.Sprintf("%sv%d", nt.prefix, i), fmt.Sprintf("%sp%d", nt.prefix, i)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"link", "add", host, "type", "veth", "peer", "name", peer},
			[]string{"link", "set", peer, "netns", ns},
			[]string{"-n", ns, "link", "set", peer, "name", "eth0"},
			[]string{"-n", ns, "addr", "add", fmt.Sprintf("%s%d/24", subnet, 11+i), "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"link", "set", host, "master", nt.bridge},
			[]string{"link", "set", host, "up"},
		)
	}
	for _, s := range steps {
		if err := sh("ip", s...); err != nil {
			return nil, err
		}
	}
	if nt.fw == "nft" {
		for _, ns := range nt.ns {
			script := "table inet " + nftTable + " {\n chain input { type filter hook input priority 0; policy accept; }\n}\n"
			if err := runIn(ns, script, "nft", "-f", "-"); err != nil {
				return nil, err
			}
		}
	}
	return nt, nil
}

func (nt *netnsTopology) name() string {
	if nt.fw == "" {
		return "netns"
	}
	return "netns+" + nt.fw
}

func (nt *netnsTopology) ip(i int) string { return fmt.Sprintf("198.18.%d.%d", nt.octet, 11+i) }

func (nt *netnsTopology) addr(i int) (string, int, int) { return nt.ip(i), 8000, 9000 }

// wrap runs a program in node i's namespace; ip execs it in place, so the
// pid is the program's own and signals reach it directly.
func (nt *netnsTopology) wrap(i int) []string { return []string{"ip", "netns", "exec", nt.ns[i]} }

func (nt *netnsTopology) canPartition() string {
	if nt.fw == "" {
		return "needs nft or iptables to drop packets (apt-get install nftables)"
	}
	return ""
}

func (nt *netnsTopology) cut(a, b int) error {
	for _, p := range [][2]int{{a, b}, {b, a}} {
		var err error
		if nt.fw == "nft" {
			err = runIn(nt.ns[p[0]], "", "nft", "add", "rule", "inet", nftTable, "input", "ip", "saddr", nt.ip(p[1]), "drop")
		} else {
			err = runIn(nt.ns[p[0]], "", "iptables", "-w", "-A", "INPUT", "-s", nt.ip(p[1]), "-j", "DROP")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (nt *netnsTopology) heal() error {
	for _, ns := range nt.ns {
		var err error
		if nt.fw == "nft" {
			err = runIn(ns, "", "nft", "flush", "chain", "inet", nftTable, "input")
		} else if nt.fw == "iptables" {
			err = runIn(ns, "", "iptables", "-w", "-F", "INPUT")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// teardown removes everything this topology made. The cluster's processes
// are killed first (their cleanup is registered later, so runs earlier);
// any process still in a namespace is killed here too.
func (nt *netnsTopology) teardown() {
	for _, ns := range nt.ns {
		killNetnsPids(ns)
		if err := sh("ip", "netns", "del", ns); err != nil {
			nt.t.Logf("teardown: %v", err)
		}
	}
	for i := range nt.ns {
		_ = sh("ip", "link", "del", fmt.Sprintf("%sv%d", nt.prefix, i)) // usually gone with its peer
	}
	if err := sh("ip", "link", "del", nt.bridge); err != nil {
		nt.t.Logf("teardown: %v", err)
	}
}

// removeStaleNetns deletes namespaces and links left by runs of this suite
// whose test process no longer exists.
func removeStaleNetns(t *testing.T) {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if stale(name) {
			t.Logf("removing stale network namespace %s", name)
			killNetnsPids(name)
			_ = sh("ip", "netns", "del", name)
		}
	}
	out, _ = exec.Command("ip", "-o", "link", "show").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if stale(name) {
			t.Logf("removing stale link %s", name)
			_ = sh("ip", "link", "del", name)
		}
	}
}

// stale reports whether name belongs to this suite and its run is over.
func stale(name string) bool {
	m := ownedName.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	pid, _ := strconv.Atoi(m[1])
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err != nil || strings.TrimSpace(string(comm)) != testComm
}

func killNetnsPids(ns string) {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// freeOctet picks X such that no address in 198.18.X.0/24 is configured in
// the root namespace (another live run may be using one).
func freeOctet() (int, error) {
	out, err := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		return 0, fmt.Errorf("ip addr show: %v", err)
	}
	for x := 0; x < 256; x++ {
		if !bytes.Contains(out, []byte(fmt.Sprintf(" 198.18.%d.", x))) {
			return x, nil
		}
	}
	return 0, fmt.Errorf("every 198.18.X.0/24 is in use")
}

func sh(name string, args ...string) error { return runIn("", "", name, args...) }

// runIn runs a command, inside network namespace ns unless ns is empty,
// with stdin as its input.
func runIn(ns, stdin, name string, args ...string) error {
	if ns != "" {
		args = append([]string{"netns", "exec", ns, name}, args...)
		name = "ip"
	}
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
