package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/proc"
)

// readEnvFile reads a systemd EnvironmentFile: VAR=value lines, "#"
// comments.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			t.Fatalf("%s:%d: %q is not VAR=value", path, n, line)
		}
		env[k] = v
	}
	return env
}

// unitValues returns every value of key in the unit file's lines.
func unitValues(unit, key string) []string {
	var out []string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

func TestSystemdUnit(t *testing.T) {
	root, err := proc.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	unitPath := filepath.Join(root, "deploy", "raftkv.service")
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	envPath := filepath.Join(root, "deploy", "raftkv.env")
	env := readEnvFile(t, envPath)

	one := func(key string) string {
		t.Helper()
		v := unitValues(unit, key)
		if len(v) != 1 {
			t.Fatalf("%s: want exactly one %s=, got %q", unitPath, key, v)
		}
		return v[0]
	}
	if got := one("EnvironmentFile"); got != "/etc/raftkv/raftkv.env" {
		t.Errorf("EnvironmentFile=%s, want /etc/raftkv/raftkv.env (what docs/operations.md and the env example say)", got)
	}
	if got := one("ExecReload"); !strings.Contains(got, "kill -HUP $MAINPID") {
		t.Errorf("ExecReload=%s: want kill -HUP $MAINPID (token reload)", got)
	}
	if got := one("KillSignal"); got != "SIGTERM" {
		t.Errorf("KillSignal=%s, want SIGTERM (graceful stop)", got)
	}
	if got := one("Restart"); got != "on-failure" {
		t.Errorf("Restart=%s, want on-failure", got)
	}
	// raftkv exits 1 on failures a restart may cure (a storage fault, a
	// damaged volume found while running) and 2 on configuration errors:
	// the unit must restart the first and not the second
	// (docs/operations.md, "Exit status").
	if got := strings.Fields(one("RestartPreventExitStatus")); len(got) != 1 || got[0] != "2" {
		t.Errorf("RestartPreventExitStatus=%v, want exactly 2 (exit status 1 must restart)", got)
	}
	if user := one("User"); user == "" || user == "root" {
		t.Errorf("User=%q: run as a dedicated user", user)
	}
	if got, want := env["RAFT_VOLUME_DIR"], "/var/lib/"+one("StateDirectory"); got != want {
		t.Errorf("raftkv.env RAFT_VOLUME_DIR=%s, want the unit's StateDirectory %s", got, want)
	}
	stop, err := time.ParseDuration(one("TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if d, err := time.ParseDuration(env["SHUTDOWN_TIMEOUT"]); err != nil || d >= stop {
		t.Errorf("raftkv.env SHUTDOWN_TIMEOUT=%q must be a duration below TimeoutStopSec %v", env["SHUTDOWN_TIMEOUT"], stop)
	}

	known := configVariables(t, root)
	// Commented-out variables in the example are documentation too.
	raw, _ := os.ReadFile(envPath)
	for _, line := range strings.Split(string(raw), "\n") {
		k, _, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "#"), "=")
		if !ok || strings.ContainsAny(k, " \t") || k == "" {
			continue
		}
		switch {
		case known[k]:
		default:
			t.Errorf("raftkv.env names %s, which is not a configuration variable", k)
		}
	}
	// The example must load as a node's configuration. Variables naming
	// files that exist only on a server are left out.
	loadEnv := map[string]string{}
	for k, v := range env {
		if !slices.Contains(fileVariables, k) {
			loadEnv[k] = v
		}
	}
	if _, err := config.Load(lookupIn(loadEnv)); err != nil {
		t.Errorf("raftkv.env does not load: %v", err)
	}

	// systemd's own check, where systemd is installed: unknown keys and bad
	// values are printed (exit status 0), so any output fails.
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: the unit's syntax is not checked by systemd here")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The binary and env file at their install paths do not exist here.
	copyUnit := strings.ReplaceAll(unit, "/usr/local/bin/raftkv", self)
	copyUnit = strings.ReplaceAll(copyUnit, "/etc/raftkv/raftkv.env", envPath)
	verify := filepath.Join(t.TempDir(), "raftkv.service")
	if err := os.WriteFile(verify, []byte(copyUnit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", verify).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// fileVariables name files (tokens, certificates) that config.Load opens
// and checks; they exist only on a server, so the example is loaded
// without them.
var fileVariables = []string{
	"AUTH_TOKENS_FILE",
	"TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE",
	"RAFT_TLS_CERT_FILE", "RAFT_TLS_KEY_FILE", "RAFT_TLS_CA_FILE",
}
