package deploy

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/proc"
)

// composeFile is the part of the Compose specification the checks read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Build           any               `yaml:"build"`
	Image           string            `yaml:"image"`
	Hostname        string            `yaml:"hostname"`
	Environment     map[string]string `yaml:"environment"`
	Ports           []string          `yaml:"ports"`
	Volumes         []string          `yaml:"volumes"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	Healthcheck     *struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Timeout  string   `yaml:"timeout"`
	} `yaml:"healthcheck"`
}

// configVariables collects the quoted upper-case names in internal/config's
// non-test sources: every variable the configuration reads is named there.
func configVariables(t *testing.T, root string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "internal", "config", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"`)
	known := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			known[string(m[1])] = true
		}
	}
	if len(known) < 10 {
		t.Fatalf("found only %d variable names in internal/config: %v", len(known), known)
	}
	return known
}

func TestDockerCompose(t *testing.T) {
	root, err := proc.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	configDoc, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	stages, err := parseDockerfile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	imgEnv, _, err := stages[len(stages)-1].env()
	if err != nil {
		t.Fatal(err)
	}
	known := configVariables(t, root)

	if len(cf.Services) != 3 {
		t.Fatalf("%d services, want a 3-node cluster", len(cf.Services))
	}
	names := make([]string, 0, len(cf.Services))
	for name := range cf.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	ids, hostPorts := map[string]string{}, map[string]string{}
	for _, name := range names {
		svc := cf.Services[name]
		t.Run(name, func(t *testing.T) {
			if svc.Build == nil && svc.Image == "" {
				t.Error("neither build nor image")
			}
			// Every variable is one the node reads, and is documented.
			for k := range svc.Environment {
				switch {
				case known[k]:
				default:
					t.Errorf("environment %s is not a configuration variable (internal/config)", k)
				}
				if !strings.Contains(string(configDoc), "| `"+k+"` |") {
					t.Errorf("environment %s has no row in the configuration table (docs/configuration.md)", k)
				}
			}
			// The image's ENV plus the service's must load as a node would.
			env := map[string]string{}
			for k, v := range imgEnv {
				env[k] = v
			}
			for k, v := range svc.Environment {
				env[k] = v
			}
			cfg, err := config.Load(lookupIn(env))
			if err != nil {
				t.Fatalf("the service's configuration does not load: %v", err)
			}
			if other, dup := ids[cfg.NodeID]; dup {
				t.Errorf("RAFT_NODE_ID %s is also %s's", cfg.NodeID, other)
			}
			ids[cfg.NodeID] = name
			if env["ADVERTISE_ADDR"] == "" && svc.Hostname != name {
				t.Errorf("hostname %q: with the image's default advertise address (the host name) the host must be named after the service %q, which the other containers resolve", svc.Hostname, name)
			}

			// Each RAFT_JOIN entry is a service's API inside the network.
			if len(cfg.Join) == 0 {
				t.Error("no RAFT_JOIN: the node would not find the others")
			}
			for _, addr := range cfg.Join {
				host, port, err := net.SplitHostPort(addr)
				target, ok := cf.Services[host]
				if err != nil || !ok {
					t.Errorf("RAFT_JOIN entry %q does not name a service", addr)
					continue
				}
				want := strconv.Itoa(config.DefaultHTTPPort)
				if p := firstNonEmpty(target.Environment["HTTP_SERVER_PORT"], imgEnv["HTTP_SERVER_PORT"]); p != "" {
					want = p
				}
				if port != want {
					t.Errorf("RAFT_JOIN entry %q: %s serves HTTP on %s", addr, host, want)
				}
			}
			if n, err := strconv.Atoi(env["RAFT_BOOTSTRAP_EXPECT"]); err != nil || n != len(cf.Services) {
				t.Errorf("RAFT_BOOTSTRAP_EXPECT=%q, want %d (the number of nodes)", env["RAFT_BOOTSTRAP_EXPECT"], len(cf.Services))
			}

			// State in a named volume at the image's data directory.
			var mounted bool
			for _, v := range svc.Volumes {
				src, dst, _ := strings.Cut(v, ":")
				if dst == cfg.VolumeDir {
					mounted = true
					if _, ok := cf.Volumes[src]; !ok {
						t.Errorf("volume %q is not a named volume declared under volumes:", src)
					}
				}
			}
			if !mounted {
				t.Errorf("nothing is mounted at RAFT_VOLUME_DIR %s: data would die with the container", cfg.VolumeDir)
			}

			// Published API ports: distinct on the host, mapped to the node's.
			for _, p := range svc.Ports {
				parts := strings.Split(p, ":")
				if len(parts) < 2 || parts[len(parts)-1] != strconv.Itoa(cfg.HTTPPort) {
					t.Errorf("port %q does not publish the HTTP port %d", p, cfg.HTTPPort)
					continue
				}
				hp := strings.Join(parts[:len(parts)-1], ":")
				if other, dup := hostPorts[hp]; dup {
					t.Errorf("host port %s is also published by %s", hp, other)
				}
				hostPorts[hp] = name
			}

			if hc := svc.Healthcheck; hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" || !slices.Contains(hc.Test, "healthcheck") {
				t.Errorf("healthcheck %+v: want test: [\"CMD\", \"/raftkv\", \"healthcheck\"] (exec form; the image has no shell)", svc.Healthcheck)
			}
			grace, err := time.ParseDuration(svc.StopGracePeriod)
			if err != nil {
				t.Errorf("stop_grace_period %q: %v (Docker's default 10s may cut a graceful stop short)", svc.StopGracePeriod, err)
			} else if st, ok := env["SHUTDOWN_TIMEOUT"]; ok {
				if d, err := time.ParseDuration(st); err != nil || d >= grace {
					t.Errorf("SHUTDOWN_TIMEOUT=%s is not shorter than stop_grace_period %v: SIGKILL would cut the graceful stop", st, grace)
				}
			}
		})
	}
	t.Logf("%d services %v; node ids %v; host ports %v", len(names), names, mapKeys(ids), mapKeys(hostPorts))
}

func mapKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestConfigVariablesFinder guards the grep the compose check relies on.
func TestConfigVariablesFinder(t *testing.T) {
	root, err := proc.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	known := configVariables(t, root)
	for _, k := range []string{"RAFT_NODE_ID", "HTTP_SERVER_PORT", "RAFT_JOIN", "BIND_ADDR", "RAFT_VOLUME_DIR"} {
		if !known[k] {
			t.Errorf("%s not found in internal/config", k)
		}
	}
	if known["NOT_A_VARIABLE"] {
		t.Error("found a name that is not there")
	}
}
