package fault

// Membership faults: a node that formed a cluster of
// its own and took writes, and a mistyped join port, meet /join under load.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
	"github.com/raftkv/raftkv/internal/testwait"
)

// joinStranger (S17) starts a "stranger" beside a follower (in its network)
// that bootstraps a cluster of its own and takes writes, then asks the
// leader to join it in the three forms an operator might use, and to join
// a mistyped port: every join is refused with 409 and its code, the
// configuration keeps its three voters, and then the leader is killed (the
// issue's sequence: before, the stranger had been counted as a caught-up
// voter and, elected, answered 404 for acknowledged keys). The run's
// checkers then find every acknowledged write.
func joinStranger(r *run) {
	f := r.follower()
	ip, _, _ := r.c.topo.addr(f)
	ports, err := proc.FreePorts(3)
	if err != nil {
		r.t.Fatal(err)
	}
	root, err := proc.ModuleRoot(".")
	if err != nil {
		r.t.Fatal(err)
	}
	bin, err := builder.Binary(root)
	if err != nil {
		r.t.Fatal(err)
	}
	dir := r.t.TempDir()
	stranger := proc.StartNode(r.t, proc.Config{Name: "stranger", Bin: bin, Wrap: r.c.topo.wrap(f), Dir: dir, Client: r.c.admin,
		Env: map[string]string{
			"RAFT_NODE_ID": "stranger", "HTTP_SERVER_PORT": strconv.Itoa(ports[0]), "RAFT_SERVER_PORT": strconv.Itoa(ports[1]),
			"BIND_ADDR": ip, "ADVERTISE_ADDR": ip, "RAFT_VOLUME_DIR": filepath.Join(dir, "stranger"),
			"RAFT_BOOTSTRAP": "true", "ALLOW_REMOTE_ADMIN": "true", "LOG_LEVEL": "info",
		}})
	var strangerKeys []string
	testwait.For(r.t, 20*time.Second, "the stranger to take writes in its own cluster", func() error {
		k := fmt.Sprintf("stranger-%d", len(strangerKeys))
		code, body, err := stranger.Do(http.MethodGet, "/set?key="+k+"&value="+k, nil)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %s", code, body)
		}
		if err == nil {
			strangerKeys = append(strangerKeys, k)
			if len(strangerKeys) < 10 {
				err = fmt.Errorf("%d writes so far", len(strangerKeys))
			}
		}
		return err
	})

	end := r.begin("join a node of another cluster, and a mistyped port")
	l := r.c.Nodes[r.leader()]
	mistyped := net.JoinHostPort(ip, strconv.Itoa(ports[2]))
	for _, tt := range []struct{ query, code string }{
		{fmt.Sprintf("/join?nodeId=stranger&raftAddr=%s&httpAddr=%s", stranger.RaftAddr, stranger.HTTPAddr), "other_cluster"},
		{fmt.Sprintf("/join?nodeId=stranger&raftAddr=%s", stranger.RaftAddr), "joiner_has_state"},
		{fmt.Sprintf("/join?nodeId=s4&raftAddr=%s", mistyped), "joiner_unreachable"},
	} {
		code, body, err := l.Do(http.MethodGet, tt.query, nil)
		var e struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(body, &e)
		if err != nil || code != http.StatusConflict || e.Code != tt.code {
			r.t.Fatalf("GET %s: %d %s %v, want 409 %s", tt.query, code, body, err, tt.code)
		}
	}
	ms, err := l.Members()
	if err != nil || len(ms) != 3 {
		r.t.Fatalf("configuration after the refused joins: %+v %v", ms, err)
	}
	end()
	r.crash([]int{r.c.index(l)}, 5*time.Second)
	for _, k := range strangerKeys {
		var v struct {
			Value string `json:"value"`
		}
		if err := stranger.GetJSON("/get?key="+k, &v); err != nil || v.Value != k {
			r.t.Errorf("the stranger lost its own acknowledged %s: %q %v", k, v.Value, err)
		}
	}
	r.res.notes = append(r.res.notes, "joins of another cluster's node and of a mistyped port refused (409); leader killed after")
}
