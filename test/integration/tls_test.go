package integration

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/testcluster"
	"github.com/raftkv/raftkv/internal/testpki"
	"github.com/raftkv/raftkv/internal/testwait"
	"github.com/raftkv/raftkv/internal/tlsconfig"
)

// TestTLSCluster: with all six TLS variables set, a three-node cluster
// works end to end over HTTPS, including everything nodes send each other
// over HTTP: a write through a follower (batched peer protocol), a
// linearizable read served by a follower (read index from the leader), a
// consistency=leader read and a /join sent to a follower (the forwarding
// proxy), the retry-join that registers each member's HTTP address (Start
// waits for it) and the /nodes probes.
func TestTLSCluster(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.WithTLS())
	l := c.Leader(t)
	f := c.Followers(t)[0]
	leaderID := c.ID(l)
	if !strings.HasPrefix(c.URL(f), "https://") {
		t.Fatalf("cluster URL %q is not https", c.URL(f))
	}

	r := c.Set(t, f, "tls-a", "one")
	if r.Status != http.StatusOK || r.ServedBy() != leaderID {
		t.Fatalf("write via follower: %s served by %q, want 200 from the leader %q", r.Summary(), r.ServedBy(), leaderID)
	}
	if r := c.GetKey(t, f, "tls-a", ""); r.Status != http.StatusOK || r.String("value") != "one" || r.ServedBy() != c.ID(f) {
		t.Fatalf("linearizable read via follower: %s served by %q, want the value from the follower itself", r.Summary(), r.ServedBy())
	}
	if r := c.GetKey(t, f, "tls-a", "leader"); r.Status != http.StatusOK || r.String("value") != "one" || r.ServedBy() != leaderID {
		t.Fatalf("consistency=leader via follower: %s served by %q, want the leader", r.Summary(), r.ServedBy())
	}
	// An existing member at its own addresses: a no-op join, decided by the
	// leader after the follower forwarded it.
	other := others(c, l, f)[0]
	join := "/join?" + url.Values{"nodeId": {c.ID(other)}, "raftAddr": {c.RaftAddr(other)}, "httpAddr": {c.HTTPAddr(other)}}.Encode()
	if r := c.Get(t, f, join); r.Status != http.StatusOK || r.String("change") != "unchanged" || r.ServedBy() != leaderID {
		t.Fatalf("join via follower: %s served by %q, want 200 unchanged from the leader", r.Summary(), r.ServedBy())
	}
	var nodes []struct {
		ID        string `json:"id"`
		Reachable bool   `json:"reachable"`
	}
	if r := c.Get(t, f, "/nodes"); r.Status != http.StatusOK || r.Decode(&nodes) != nil || len(nodes) != 3 {
		t.Fatalf("/nodes: %s", r.Summary())
	}
	for _, n := range nodes {
		if !n.Reachable {
			t.Errorf("/nodes on %s: %s not reachable over https", c.ID(f), n.ID)
		}
	}
}

// TestTLSRefusesClients: a TLS node refuses plain HTTP, clients without a
// certificate, clients with a certificate from another CA, and clients
// that do not trust its CA, on every endpoint; the same request with the
// cluster's certificate is served (the control).
func TestTLSRefusesClients(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.WithTLS())
	rogue := testpki.NewCA(t, "rogue CA")
	addr := c.HTTPAddr(0)
	clientWith := func(tc *tls.Config) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
	}
	clients := []struct {
		name    string
		scheme  string
		client  *http.Client
		wantErr string // "" means a 200 is expected
		status  int    // for plain HTTP: net/http's answer to it
	}{
		{"cluster certificate (control)", "https", clientWith(c.ClientTLS()), "", http.StatusOK},
		{"plain http", "http", clientWith(nil), "", http.StatusBadRequest},
		{"no client certificate", "https", clientWith(testpki.ClientConfig(c.CA(), nil)), "certificate required", 0},
		{"certificate from a rogue CA", "https", clientWith(testpki.ClientConfig(c.CA(), rogue.Issue(t, "mallory"))), "unknown certificate authority", 0},
		{"does not trust the cluster CA", "https", clientWith(testpki.ClientConfig(rogue, c.CA().Issue(t, "lost"))), "certificate signed by unknown authority", 0},
	}
	paths := []string{"/health", "/get?key=k", "/set?key=k&value=v", "/join?nodeId=x&raftAddr=127.0.0.1:1", "/internal/readindex", "/nodes"}
	for _, cl := range clients {
		t.Run(cl.name, func(t *testing.T) {
			for _, p := range paths {
				method := http.MethodGet
				if strings.HasPrefix(p, "/internal/") {
					method = http.MethodPost
				}
				req, err := http.NewRequest(method, cl.scheme+"://"+addr+p, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := cl.client.Do(req)
				if cl.wantErr != "" {
					if err == nil {
						resp.Body.Close()
						t.Fatalf("%s %s: answered %d, want the TLS handshake refused (%s)", method, p, resp.StatusCode, cl.wantErr)
					}
					if !strings.Contains(err.Error(), cl.wantErr) {
						t.Fatalf("%s %s: error %v, want one mentioning %q", method, p, err, cl.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s %s: %v", method, p, err)
				}
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				if cl.status == http.StatusOK {
					// The control: reached the API (any API answer, not a refusal).
					if resp.Header.Get("X-Raft-Served-By") == "" {
						t.Fatalf("%s %s with the cluster certificate: %d %s, want an API answer", method, p, resp.StatusCode, body)
					}
					continue
				}
				if resp.StatusCode != cl.status || !strings.Contains(string(body), "HTTPS") {
					t.Fatalf("%s %s over plain http: %d %q, want %d from net/http naming HTTPS", method, p, resp.StatusCode, body, cl.status)
				}
			}
		})
	}
	// Nothing a refused client sent was applied: only the control's /set.
	if e, ok := c.Node(0).FSM().Get("k"); !ok || e.CreateIndex != e.ModIndex {
		t.Fatalf("key k: %+v present %v, want exactly the control's one write", e, ok)
	}
}

// refusals counts the raft TLS layer's "refused a connection" log lines.
type refusals struct{ n atomic.Int64 }

func (h *refusals) Levels() []logrus.Level { return logrus.AllLevels }
func (h *refusals) Fire(e *logrus.Entry) error {
	if strings.Contains(e.Message, "refused a connection") {
		h.n.Add(1)
	}
	return nil
}

// openPeer starts a raft node outside the cluster (no HTTP API), waiting
// to be joined, with tc as its Raft TLS material (nil: plain TCP).
func openPeer(t *testing.T, id string, tc *tlsconfig.Material) (*node.Node, *refusals) {
	t.Helper()
	logger := logrus.New()
	logger.SetOutput(io.Discard)
	logger.SetLevel(logrus.DebugLevel) // hooks see only enabled levels
	hook := &refusals{}
	logger.AddHook(hook)
	n, err := node.Open(node.Config{
		ID: id, Dir: filepath.Join(t.TempDir(), id), RaftBind: "127.0.0.1:0", HTTPAdvertise: "127.0.0.1:1", SnapshotRetain: 1,
		HeartbeatTimeout: testcluster.HeartbeatTimeout, ElectionTimeout: testcluster.ElectionTimeout,
		LeaderLeaseTimeout: testcluster.LeaderLeaseTimeout, RaftTLS: tc, Logger: logger,
	})
	if err != nil {
		t.Fatalf("open %s: %v", id, err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n, hook
}

// TestRaftTLSRefusesPeers: on a cluster with mutual TLS on Raft, a node
// whose certificate comes from another CA, or that speaks plain TCP, is
// refused by /join (409 joiner_unreachable): the leader contacts it over
// the Raft transport first and the handshake fails, so it never enters the
// configuration. The same steps with a certificate from the cluster CA
// join, replicate and count toward the quorum, so the test can tell the
// two apart.
func TestRaftTLSRefusesPeers(t *testing.T) {
	tests := []struct {
		name       string
		material   func(t *testing.T, c *testcluster.Cluster) *tlsconfig.Material
		replicates bool
	}{
		{"certificate from the cluster CA (control)", func(t *testing.T, c *testcluster.Cluster) *tlsconfig.Material {
			return loadLeaf(t, c.CA(), c.CA().Issue(t, "n4"))
		}, true},
		{"certificate from a rogue CA", func(t *testing.T, c *testcluster.Cluster) *tlsconfig.Material {
			rogue := testpki.NewCA(t, "rogue CA")
			return loadLeaf(t, rogue, rogue.Issue(t, "n4"))
		}, false},
		{"no certificate: plain TCP", func(*testing.T, *testcluster.Cluster) *tlsconfig.Material { return nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testcluster.Start(t, 3, testcluster.WithTLS(), testcluster.WithRequestTimeout(time.Second))
			mat := tt.material(t, c)
			peer, peerLog := openPeer(t, "n4", mat)
			l := c.Leader(t)
			join := "/join?" + url.Values{"nodeId": {"n4"}, "raftAddr": {peer.RaftAddr()}}.Encode()
			if !tt.replicates {
				// The leader contacts the joiner over the Raft transport
				// first, and the handshake fails: the join is refused and
				// nothing changes.
				if r := c.Get(t, l, join); r.Status != http.StatusConflict || r.Code() != "joiner_unreachable" {
					t.Fatalf("join n4: %s, want 409 joiner_unreachable", r.Summary())
				}
				if found, _ := hasMember(members(t, c, l), "n4"); found {
					t.Fatal("a refused join added n4")
				}
				if mat != nil {
					// n4's side of the failed handshake is logged on its own
					// goroutine, possibly after the leader gave up.
					testwait.For(t, catchUp, "n4 to log the refused connection", func() error {
						if peerLog.n.Load() == 0 {
							return fmt.Errorf("none yet")
						}
						return nil
					})
				}
				c.MustSet(t, l, "after-refused-join", "v")
				return
			}
			if r := c.Get(t, l, join); r.Status != http.StatusOK || r.String("change") != "added" {
				t.Fatalf("join n4: %s", r.Summary())
			}
			index := c.MustSet(t, l, "after-join", "v")

			ctx, cancel := context.WithTimeout(context.Background(), catchUp)
			defer cancel()
			if err := peer.FSM().WaitApplied(ctx, index); err != nil {
				t.Fatalf("n4 with a valid certificate did not apply index %d: %v", index, err)
			}

			// Take one real follower down: 2 of the 3 real voters remain, and
			// a quorum of the 4 voters needs n4, which counts.
			down := c.Followers(t)[0]
			c.Kill(t, down)
			up := others(c, down)
			testwait.For(t, catchUp, "a write to commit with n4 valid and one follower down", func() error {
				var last testcluster.Response
				for _, i := range up {
					if last = c.Set(t, i, "one-down", "v"); last.Status == http.StatusOK {
						return nil
					}
				}
				return fmt.Errorf("last %s", last.Summary())
			})

			// With the real follower back the cluster commits again.
			c.Restart(t, down)
			testwait.For(t, catchUp, "a write once the follower is back", func() error {
				var last testcluster.Response
				for _, i := range c.Running() {
					if last = c.Set(t, i, "recovered", "v"); last.Status == http.StatusOK {
						return nil
					}
				}
				return fmt.Errorf("last %s", last.Summary())
			})
		})
	}
}

func loadLeaf(t *testing.T, ca *testpki.CA, leaf *testpki.Leaf) *tlsconfig.Material {
	t.Helper()
	f := leaf.Write(t, t.TempDir(), "peer", ca)
	m, err := tlsconfig.Load(f.Cert, f.Key, f.CA)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRaftTLSHandshake: the Raft port completes a handshake only with a
// certificate from the cluster CA. Without one, TLS 1.3 lets the client
// finish its side, but the server's refusal arrives as an alert before any
// Raft byte; plain TCP gets the connection closed.
func TestRaftTLSHandshake(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.WithTLS())
	addr := c.RaftAddr(0)
	rogue := testpki.NewCA(t, "rogue CA")
	// The server verifies no host name, so ServerName is irrelevant here;
	// the client side still checks the node's chain against the CA.
	tests := []struct {
		name    string
		cfg     *tls.Config
		wantErr string // "" means the connection stays open (control)
	}{
		{"cluster certificate (control)", testpki.ClientConfig(c.CA(), c.CA().Issue(t, "peer")), ""},
		{"no certificate", testpki.ClientConfig(c.CA(), nil), "certificate required"},
		{"rogue CA certificate", testpki.ClientConfig(c.CA(), rogue.Issue(t, "mallory")), "unknown certificate authority"},
		{"TLS 1.1", &tls.Config{RootCAs: c.CA().Pool(), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11, Certificates: []tls.Certificate{c.CA().Issue(t, "old").TLS}}, "protocol version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := dialAndRead(addr, tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("handshake with a valid certificate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.wantErr)
			}
		})
	}
	t.Run("plain TCP", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		// The start of a raft RPC (msgpack rpcAppendEntries type byte), then
		// padding: not a TLS record.
		if _, err := conn.Write(append([]byte{0}, make([]byte, 64)...)); err != nil {
			t.Fatal(err)
		}
		n, err := conn.Read(make([]byte, 512))
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("read %d bytes, err %v: want the connection closed", n, err)
		}
	})
}

// dialAndRead handshakes with addr and waits briefly for data: a refused
// certificate shows as an alert here. Raft never speaks first, so the
// control times out on its read, which is success.
func dialAndRead(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}
