package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// env makes a lookup function from name/value pairs.
func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestLoadDefaults(t *testing.T) {
	want := Config{
		NodeID:            "n1",
		HTTPPort:          8000,
		RaftPort:          9000,
		VolumeDir:         "data/n1",
		BindAddr:          "127.0.0.1",
		AdvertiseAddr:     "127.0.0.1",
		Bootstrap:         true,
		Join:              nil,
		LogStore:          "boltdb",
		SnapshotThreshold: 8192,
		SnapshotInterval:  30 * time.Second,
		CommitTimeout:     10 * time.Millisecond,
		SnapshotRetain:    2,
		MaxKeyBytes:       1024,
		MaxValueBytes:     1 << 20,
		RequestTimeout:    5 * time.Second,
		LogLevel:          "info",
		LogFormat:         "text",
		ShutdownTimeout:   10 * time.Second,
		MaxRestoreBytes:   1 << 30,
		MaxDataBytes:      2 << 30,

		WatchHistoryEvents: 100_000,
		WatchHistoryBytes:  64 << 20,
		WatchMaxWatchers:   4096,
		WatchBuffer:        256,
	}
	for name, lookup := range map[string]func(string) (string, bool){
		"no variables":    env(),
		"all empty":       func(string) (string, bool) { return "", true },
		"all white space": func(string) (string, bool) { return " \t ", true },
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Load(lookup)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Load =\n  %+v\nwant\n  %+v", got, want)
			}
			addrs := map[string][2]string{
				"HTTPBind":      {got.HTTPBind(), "127.0.0.1:8000"},
				"RaftBind":      {got.RaftBind(), "127.0.0.1:9000"},
				"HTTPAdvertise": {got.HTTPAdvertise(), "127.0.0.1:8000"},
				"RaftAdvertise": {got.RaftAdvertise(), "127.0.0.1:9000"},
			}
			for name, a := range addrs {
				if a[0] != a[1] {
					t.Errorf("%s = %q, want %q", name, a[0], a[1])
				}
			}
		})
	}
}

func TestLoadValid(t *testing.T) {
	hostname, _ := os.Hostname()
	tests := []struct {
		name  string
		env   []string
		check func(Config) (got, want any)
	}{
		{"join disables bootstrap", []string{"RAFT_JOIN", "10.0.0.1:8000"},
			func(c Config) (any, any) { return c.Bootstrap, false }},
		{"join list is split and trimmed", []string{"RAFT_JOIN", " a:1 , b:2,,c:3 "},
			func(c Config) (any, any) { return c.Join, []string{"a:1", "b:2", "c:3"} }},
		{"join with explicit bootstrap false", []string{"RAFT_JOIN", "a:1", "RAFT_BOOTSTRAP", "false"},
			func(c Config) (any, any) { return c.Bootstrap, false }},
		{"bootstrap false without join", []string{"RAFT_BOOTSTRAP", "0"},
			func(c Config) (any, any) { return c.Bootstrap, false }},
		{"join of only commas is no join", []string{"RAFT_JOIN", " , "},
			func(c Config) (any, any) { return [2]any{c.Bootstrap, len(c.Join)}, [2]any{true, 0} }},
		{"node id names the volume", []string{"RAFT_NODE_ID", "node-2.a_b"},
			func(c Config) (any, any) { return c.VolumeDir, "data/node-2.a_b" }},
		{"explicit volume", []string{"RAFT_VOLUME_DIR", "/var/lib/raftkv"},
			func(c Config) (any, any) { return c.VolumeDir, "/var/lib/raftkv" }},
		{"value is trimmed", []string{"HTTP_SERVER_PORT", " 8080 "},
			func(c Config) (any, any) { return c.HTTPPort, 8080 }},
		{"ports at the limits", []string{"HTTP_SERVER_PORT", "1", "RAFT_SERVER_PORT", "65535"},
			func(c Config) (any, any) { return [2]int{c.HTTPPort, c.RaftPort}, [2]int{1, 65535} }},
		{"advertise defaults to bind", []string{"BIND_ADDR", "10.1.2.3"},
			func(c Config) (any, any) { return c.AdvertiseAddr, "10.1.2.3" }},
		{"wildcard bind advertises host name", []string{"BIND_ADDR", "0.0.0.0"},
			func(c Config) (any, any) { return c.AdvertiseAddr, hostname }},
		{"advertise host name", []string{"ADVERTISE_ADDR", "raftkv-1.svc"},
			func(c Config) (any, any) { return c.HTTPAdvertise(), "raftkv-1.svc:8000" }},
		{"ipv6 advertise", []string{"BIND_ADDR", "::1", "ADVERTISE_ADDR", "::1"},
			func(c Config) (any, any) {
				return [2]string{c.RaftBind(), c.RaftAdvertise()}, [2]string{"[::1]:9000", "[::1]:9000"}
			}},
		{"snapshot settings", []string{"RAFT_SNAPSHOT_THRESHOLD", "10", "RAFT_SNAPSHOT_INTERVAL", "100ms", "RAFT_SNAPSHOT_RETAIN", "100"},
			func(c Config) (any, any) {
				return [3]any{c.SnapshotThreshold, c.SnapshotInterval, c.SnapshotRetain}, [3]any{uint64(10), 100 * time.Millisecond, 100}
			}},
		{"commit timeout", []string{"RAFT_COMMIT_TIMEOUT", "50ms"},
			func(c Config) (any, any) { return c.CommitTimeout, 50 * time.Millisecond }},
		{"zero max value is allowed", []string{"MAX_VALUE_BYTES", "0"},
			func(c Config) (any, any) { return c.MaxValueBytes, 0 }},
		{"log settings are case insensitive", []string{"LOG_LEVEL", "DEBUG", "LOG_FORMAT", "Json"},
			func(c Config) (any, any) { return [2]string{c.LogLevel, c.LogFormat}, [2]string{"debug", "json"} }},
		{"log store defaults to boltdb", nil,
			func(c Config) (any, any) { return c.LogStore, "boltdb" }},
		{"wal log store", []string{"RAFT_LOG_STORE", "WAL"},
			func(c Config) (any, any) { return c.LogStore, "wal" }},
		{"request timeout", []string{"REQUEST_TIMEOUT", "2s"},
			func(c Config) (any, any) { return c.RequestTimeout, 2 * time.Second }},
		{"bootstrap expect with join turns off the single-node bootstrap", []string{"RAFT_BOOTSTRAP_EXPECT", "3", "RAFT_JOIN", "a:1,b:2"},
			func(c Config) (any, any) { return [2]any{c.BootstrapExpect, c.Bootstrap}, [2]any{3, false} }},
		{"bootstrap expect may count a join list that names this node", []string{"RAFT_BOOTSTRAP_EXPECT", "3", "RAFT_JOIN", "a:1,b:2,c:3"},
			func(c Config) (any, any) { return c.BootstrapExpect, 3 }},
		{"bootstrap expect 1 needs no join", []string{"RAFT_BOOTSTRAP_EXPECT", "1"},
			func(c Config) (any, any) { return [2]any{c.BootstrapExpect, c.Bootstrap}, [2]any{1, false} }},
		{"bootstrap expect with explicit bootstrap false", []string{"RAFT_BOOTSTRAP_EXPECT", "2", "RAFT_JOIN", "a:1", "RAFT_BOOTSTRAP", "false"},
			func(c Config) (any, any) { return [2]any{c.BootstrapExpect, c.Bootstrap}, [2]any{2, false} }},
		{"leave on terminate", []string{"LEAVE_ON_TERMINATE", "true"},
			func(c Config) (any, any) { return c.LeaveOnTerminate, true }},
		{"shutdown timeout", []string{"SHUTDOWN_TIMEOUT", "30s"},
			func(c Config) (any, any) { return c.ShutdownTimeout, 30 * time.Second }},
		{"max data bytes 0 is off", []string{"MAX_DATA_BYTES", "0"},
			func(c Config) (any, any) { return c.MaxDataBytes, int64(0) }},
		{"max data bytes", []string{"MAX_DATA_BYTES", "1048576"},
			func(c Config) (any, any) { return c.MaxDataBytes, int64(1 << 20) }},
		{"max restore bytes", []string{"MAX_RESTORE_BYTES", "1099511627776"},
			func(c Config) (any, any) { return c.MaxRestoreBytes, int64(1 << 40) }},
		{"watch defaults", nil,
			func(c Config) (any, any) {
				return [4]any{c.WatchHistoryEvents, c.WatchHistoryBytes, c.WatchMaxWatchers, c.WatchBuffer}, [4]any{100_000, int64(64 << 20), 4096, 256}
			}},
		{"watch settings", []string{"WATCH_HISTORY_EVENTS", "5", "WATCH_HISTORY_BYTES", "2097152", "WATCH_MAX_WATCHERS", "7", "WATCH_BUFFER", "4096"},
			func(c Config) (any, any) {
				return [4]any{c.WatchHistoryEvents, c.WatchHistoryBytes, c.WatchMaxWatchers, c.WatchBuffer}, [4]any{5, int64(2 << 20), 7, 4096}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(env(tt.env...))
			if err != nil {
				t.Fatalf("Load(%q): %v", tt.env, err)
			}
			if got, want := tt.check(c); !reflect.DeepEqual(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		wantVar string
	}{
		{"http port 0", []string{"HTTP_SERVER_PORT", "0"}, "HTTP_SERVER_PORT"},
		{"http port 70000", []string{"HTTP_SERVER_PORT", "70000"}, "HTTP_SERVER_PORT"},
		{"http port abc", []string{"HTTP_SERVER_PORT", "abc"}, "HTTP_SERVER_PORT"},
		{"http port negative", []string{"HTTP_SERVER_PORT", "-1"}, "HTTP_SERVER_PORT"},
		{"raft port abc", []string{"RAFT_SERVER_PORT", "abc"}, "RAFT_SERVER_PORT"},
		{"raft port equals http port", []string{"RAFT_SERVER_PORT", "8000"}, "RAFT_SERVER_PORT"},
		{"raft port equals explicit http port", []string{"HTTP_SERVER_PORT", "7000", "RAFT_SERVER_PORT", "7000"}, "RAFT_SERVER_PORT"},
		{"node id with a space", []string{"RAFT_NODE_ID", "node 1"}, "RAFT_NODE_ID"},
		{"node id of 65 chars", []string{"RAFT_NODE_ID", strings.Repeat("a", 65)}, "RAFT_NODE_ID"},
		{"node id with a slash", []string{"RAFT_NODE_ID", "../n1"}, "RAFT_NODE_ID"},
		{"bind not an ip", []string{"BIND_ADDR", "notanip"}, "BIND_ADDR"},
		{"bind host name", []string{"BIND_ADDR", "localhost"}, "BIND_ADDR"},
		{"advertise with a port", []string{"ADVERTISE_ADDR", "10.0.0.1:8000"}, "ADVERTISE_ADDR"},
		{"advertise host with a port", []string{"ADVERTISE_ADDR", "example.com:80"}, "ADVERTISE_ADDR"},
		{"advertise bracketed ipv6 with a port", []string{"ADVERTISE_ADDR", "[::1]:80"}, "ADVERTISE_ADDR"},
		{"advertise url", []string{"ADVERTISE_ADDR", "http://x"}, "ADVERTISE_ADDR"},
		{"advertise 0.0.0.0", []string{"ADVERTISE_ADDR", "0.0.0.0"}, "ADVERTISE_ADDR"},
		{"advertise ::", []string{"ADVERTISE_ADDR", "::"}, "ADVERTISE_ADDR"},
		{"snapshot interval xyz", []string{"RAFT_SNAPSHOT_INTERVAL", "xyz"}, "RAFT_SNAPSHOT_INTERVAL"},
		{"commit timeout 500us", []string{"RAFT_COMMIT_TIMEOUT", "500us"}, "RAFT_COMMIT_TIMEOUT"},
		{"commit timeout 2s", []string{"RAFT_COMMIT_TIMEOUT", "2s"}, "RAFT_COMMIT_TIMEOUT"},
		{"snapshot interval 1ms", []string{"RAFT_SNAPSHOT_INTERVAL", "1ms"}, "RAFT_SNAPSHOT_INTERVAL"},
		{"snapshot interval without unit", []string{"RAFT_SNAPSHOT_INTERVAL", "30"}, "RAFT_SNAPSHOT_INTERVAL"},
		{"snapshot threshold 0", []string{"RAFT_SNAPSHOT_THRESHOLD", "0"}, "RAFT_SNAPSHOT_THRESHOLD"},
		{"snapshot retain 0", []string{"RAFT_SNAPSHOT_RETAIN", "0"}, "RAFT_SNAPSHOT_RETAIN"},
		{"snapshot retain 101", []string{"RAFT_SNAPSHOT_RETAIN", "101"}, "RAFT_SNAPSHOT_RETAIN"},
		{"max key bytes 0", []string{"MAX_KEY_BYTES", "0"}, "MAX_KEY_BYTES"},
		{"max value bytes negative", []string{"MAX_VALUE_BYTES", "-1"}, "MAX_VALUE_BYTES"},
		{"request timeout 0", []string{"REQUEST_TIMEOUT", "0s"}, "REQUEST_TIMEOUT"},
		{"max restore bytes 1000", []string{"MAX_RESTORE_BYTES", "1000"}, "MAX_RESTORE_BYTES"},
		{"max data bytes negative", []string{"MAX_DATA_BYTES", "-1"}, "MAX_DATA_BYTES"},
		{"max data bytes with a unit", []string{"MAX_DATA_BYTES", "2GiB"}, "MAX_DATA_BYTES"},
		{"max restore bytes with a unit", []string{"MAX_RESTORE_BYTES", "1GiB"}, "MAX_RESTORE_BYTES"},
		{"max restore bytes above 1 TiB", []string{"MAX_RESTORE_BYTES", "1099511627777"}, "MAX_RESTORE_BYTES"},
		{"log level loud", []string{"LOG_LEVEL", "loud"}, "LOG_LEVEL"},
		{"watch history 0 events", []string{"WATCH_HISTORY_EVENTS", "0"}, "WATCH_HISTORY_EVENTS"},
		{"watch history under 1 MiB", []string{"WATCH_HISTORY_BYTES", "1000"}, "WATCH_HISTORY_BYTES"},
		{"watch max watchers 0", []string{"WATCH_MAX_WATCHERS", "0"}, "WATCH_MAX_WATCHERS"},
		{"watch buffer above a batch", []string{"WATCH_BUFFER", "4097"}, "WATCH_BUFFER"},
		{"log store sqlite", []string{"RAFT_LOG_STORE", "sqlite"}, "RAFT_LOG_STORE"},
		{"log format xml", []string{"LOG_FORMAT", "xml"}, "LOG_FORMAT"},
		{"join without port", []string{"RAFT_JOIN", "nocolon"}, "RAFT_JOIN"},
		{"join with empty host", []string{"RAFT_JOIN", ":8000"}, "RAFT_JOIN"},
		{"join with bad port", []string{"RAFT_JOIN", "a:1,b:99999"}, "RAFT_JOIN"},
		{"bootstrap maybe", []string{"RAFT_BOOTSTRAP", "maybe"}, "RAFT_BOOTSTRAP"},
		{"bootstrap with join", []string{"RAFT_BOOTSTRAP", "true", "RAFT_JOIN", "10.0.0.1:8000"}, "RAFT_BOOTSTRAP"},
		{"bootstrap expect 0", []string{"RAFT_BOOTSTRAP_EXPECT", "0"}, "RAFT_BOOTSTRAP_EXPECT"},
		{"bootstrap expect negative", []string{"RAFT_BOOTSTRAP_EXPECT", "-3"}, "RAFT_BOOTSTRAP_EXPECT"},
		{"bootstrap expect abc", []string{"RAFT_BOOTSTRAP_EXPECT", "three"}, "RAFT_BOOTSTRAP_EXPECT"},
		{"bootstrap expect with bootstrap true", []string{"RAFT_BOOTSTRAP_EXPECT", "3", "RAFT_JOIN", "a:1,b:2", "RAFT_BOOTSTRAP", "true"}, "RAFT_BOOTSTRAP_EXPECT"},
		{"bootstrap expect 1 with bootstrap true", []string{"RAFT_BOOTSTRAP_EXPECT", "1", "RAFT_BOOTSTRAP", "true"}, "RAFT_BOOTSTRAP_EXPECT"},
		{"bootstrap expect 3 without join", []string{"RAFT_BOOTSTRAP_EXPECT", "3"}, "RAFT_BOOTSTRAP_EXPECT"},
		{"bootstrap expect more than listed", []string{"RAFT_BOOTSTRAP_EXPECT", "4", "RAFT_JOIN", "a:1,b:2"}, "RAFT_BOOTSTRAP_EXPECT"},
		{"leave on terminate maybe", []string{"LEAVE_ON_TERMINATE", "maybe"}, "LEAVE_ON_TERMINATE"},
		{"shutdown timeout 0", []string{"SHUTDOWN_TIMEOUT", "0s"}, "SHUTDOWN_TIMEOUT"},
		{"shutdown timeout without unit", []string{"SHUTDOWN_TIMEOUT", "10"}, "SHUTDOWN_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(env(tt.env...))
			if err == nil {
				t.Fatalf("Load(%q) = %+v, want an error", tt.env, c)
			}
			if !strings.HasPrefix(err.Error(), tt.wantVar+":") {
				t.Fatalf("error %q does not start with %q", err, tt.wantVar+":")
			}
			if !reflect.DeepEqual(c, Config{}) {
				t.Fatalf("Load returned %+v with its error, want the zero Config", c)
			}
		})
	}
}
