package fault

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/internal/proc"
)

// config is read from the environment once (see doc.go).
var config struct {
	seed  int64
	scale float64
	soak  bool
	cas   string
	bank  bool
}

func TestMain(m *testing.M) {
	config.seed = time.Now().UnixNano()
	if v := os.Getenv("FAULT_SEED"); v != "" {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "FAULT_SEED=%q: %v\n", v, err)
			os.Exit(2)
		}
		config.seed = s
	}
	config.scale = 1
	if v := os.Getenv("FAULT_DURATION"); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s <= 0 {
			fmt.Fprintf(os.Stderr, "FAULT_DURATION=%q: want a positive factor\n", v)
			os.Exit(2)
		}
		config.scale = s
	}
	config.soak = os.Getenv("FAULT_SOAK") == "1"
	config.cas = os.Getenv("FAULT_CAS")
	config.bank = os.Getenv("FAULT_BANK") != "0"
	fmt.Printf("fault suite: seed %d (replay with FAULT_SEED=%d), duration factor %g, soak %v\n",
		config.seed, config.seed, config.scale, config.soak)

	code := m.Run()
	builder.Remove()
	if len(results) > 0 {
		table := summary()
		fmt.Print("\n" + table)
		if dir, err := artifactRoot(); err == nil {
			if err := os.MkdirAll(dir, 0o755); err == nil {
				path := filepath.Join(dir, "summary.md")
				if os.WriteFile(path, []byte(table), 0o644) == nil {
					fmt.Printf("summary written to %s\n", path)
				}
			}
		}
	}
	os.Exit(code)
}

// result is one scenario's line in the summary.
type result struct {
	id, title    string
	status       string
	topology     string
	features     string
	ops          int
	counts       counts
	sets         string // acked/failed/unknown
	counter      uint64 // acknowledged counter increments
	faults       []string
	recovery     time.Duration
	maxGap       time.Duration
	linearizable string
	checkTime    time.Duration
	wall         time.Duration
	notes        []string
}

var results []*result

func summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Fault suite summary (seed %d)\n\n", config.seed)
	b.WriteString("| scenario | result | wall | ops | ok / fail / unknown | set keys ack/fail/unk | counter incs | faults | recovery | max write gap | linearizable | notes |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		if r.status == "skip" {
			fmt.Fprintf(&b, "| %s %s | skip | | | | | | | | | | |\n", r.id, r.title)
			continue
		}
		recovery := "-"
		if len(r.faults) > 0 && r.recovery > 0 {
			recovery = r.recovery.Round(time.Millisecond).String()
		}
		lin := r.linearizable
		if lin != "" {
			lin += fmt.Sprintf(" (%v)", r.checkTime.Round(time.Millisecond))
		}
		fmt.Fprintf(&b, "| %s %s | %s | %v | %d | %d / %d / %d | %s | %d | %s | %s | %v | %s | %s |\n",
			r.id, r.title, r.status, r.wall.Round(100*time.Millisecond), r.ops, r.counts.ok, r.counts.fail, r.counts.unknown,
			r.sets, r.counter, strings.Join(r.faults, "; "), recovery, r.maxGap.Round(time.Millisecond),
			lin, strings.Join(append([]string{r.topology, r.features}, r.notes...), "; "))
	}
	return b.String()
}

// artifactRoot is $FAULT_ARTIFACTS, or test-artifacts/fault in the repo.
func artifactRoot() (string, error) {
	if d := os.Getenv("FAULT_ARTIFACTS"); d != "" {
		return d, nil
	}
	root, err := proc.ModuleRoot(".")
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "test-artifacts", "fault"), nil
}

// saveArtifacts keeps what a failed run needs for diagnosis: the history
// as JSON, porcupine's visualization with the fault timeline, the fault
// timeline itself and every node's log.
func (r *run) saveArtifacts() {
	t := r.t
	root, err := artifactRoot()
	if err != nil {
		t.Logf("artifacts: %v", err)
		return
	}
	dir := filepath.Join(root, fmt.Sprintf("%s-%s", r.sc.id, time.Now().Format("20060102-150405")))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("artifacts: %v", err)
		return
	}
	var ops []*op
	if r.h != nil {
		ops = r.h.snapshot()
		sortOps(ops)
		if b, err := json.MarshalIndent(ops, "", " "); err == nil {
			_ = os.WriteFile(filepath.Join(dir, "history.json"), b, 0o644)
		}
		if r.info == nil {
			_, info, _ := checkLinearizable(ops, 10*time.Second)
			r.info = &info
		}
		var notes []porcupine.Annotation
		for _, e := range r.events {
			end := e.end
			if end == 0 {
				end = time.Since(r.h.t0)
			}
			notes = append(notes, porcupine.Annotation{Tag: "faults", Start: e.start.Nanoseconds(), End: end.Nanoseconds(),
				Description: e.what, BackgroundColor: "#f8d0d0"})
		}
		r.info.AddAnnotations(notes)
		if err := porcupine.VisualizePath(kvModel, *r.info, filepath.Join(dir, "porcupine.html")); err != nil {
			t.Logf("artifacts: visualization: %v", err)
		}
	}
	var timeline strings.Builder
	fmt.Fprintf(&timeline, "seed %d (FAULT_SEED=%d), scenario seed %d\n", config.seed, config.seed, r.seed)
	for _, e := range r.events {
		fmt.Fprintf(&timeline, "%10v .. %10v  %s\n", e.start.Round(time.Millisecond), e.end.Round(time.Millisecond), e.what)
	}
	for _, w := range r.wins {
		fmt.Fprintf(&timeline, "%10v .. %10v  no quorum for %v\n", w.start.Round(time.Millisecond), w.end.Round(time.Millisecond), w.minority)
	}
	_ = os.WriteFile(filepath.Join(dir, "timeline.txt"), []byte(timeline.String()), 0o644)
	if r.c != nil {
		for _, n := range r.c.Nodes {
			copyFile(n.LogPath, filepath.Join(dir, n.Name+".log"))
		}
	}
	t.Logf("artifacts: %s", dir)
}

func copyFile(from, to string) {
	in, err := os.Open(from)
	if err != nil {
		return
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return
	}
	defer out.Close()
	_, _ = io.Copy(out, in)
}
