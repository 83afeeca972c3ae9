package deploy

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proc"
)

// image is what the Dockerfile describes, plus the binary its build stage
// produced here.
type image struct {
	root      string   // module root (the build context)
	final     stage    // the final stage
	buildArgv []string // the build stage's go build command, as written
	buildEnv  []string // its VAR=value prefix
	outPath   string   // the -o path in the build stage (e.g. /out/raftkv)
	imagePath string   // where the final stage puts the binary (e.g. /raftkv)
	context   string   // the copied build context the binary was built in
	bin       string   // the binary built here
	took      time.Duration
}

var (
	imageOnce sync.Once
	built     image
	builtErr  error
	buildDir  string // removed by TestMain
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// dockerImage parses the Dockerfile and runs its build stage's go build once
// per test binary, in a copy of the build context made with .dockerignore's
// rules (so a file the build needs but the context leaves out fails here).
func dockerImage(t *testing.T) image {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the raftkv binary as the Dockerfile does; skipped with -short")
	}
	imageOnce.Do(func() { built, builtErr = buildImage() })
	if builtErr != nil {
		t.Fatal(builtErr)
	}
	return built
}

func buildImage() (image, error) {
	var img image
	root, err := proc.ModuleRoot(".")
	if err != nil {
		return img, err
	}
	img.root = root
	stages, err := parseDockerfile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return img, err
	}
	img.final = stages[len(stages)-1]
	argv, err := img.final.command()
	if err != nil {
		return img, fmt.Errorf("Dockerfile final stage: %w", err)
	}
	img.imagePath = argv[0]

	// The final stage copies the binary from the build stage to where its
	// ENTRYPOINT runs it.
	var from, src string
	for _, in := range img.final.all("COPY") {
		words, err := shellWords(in.args)
		if err != nil {
			return img, fmt.Errorf("Dockerfile line %d: %w", in.line, err)
		}
		var flags, paths []string
		for _, w := range words {
			if strings.HasPrefix(w, "--") {
				flags = append(flags, w)
			} else {
				paths = append(paths, w)
			}
		}
		for _, f := range flags {
			if v, ok := strings.CutPrefix(f, "--from="); ok && len(paths) == 2 && paths[1] == img.imagePath {
				from, src = strings.ToLower(v), paths[0]
			}
		}
	}
	if from == "" {
		return img, fmt.Errorf("Dockerfile: no COPY --from=<stage> puts the ENTRYPOINT %s into the final stage", img.imagePath)
	}
	var build *stage
	for i := range stages {
		if stages[i].name == from {
			build = &stages[i]
		}
	}
	if build == nil {
		return img, fmt.Errorf("Dockerfile: COPY --from=%s names no stage", from)
	}
	for _, in := range build.all("RUN") {
		words, err := shellWords(in.args)
		if err != nil {
			continue // not a simple command; the go build line must be one
		}
		i := 0
		for i < len(words) && strings.Contains(words[i], "=") && !strings.HasPrefix(words[i], "-") {
			i++
		}
		if len(words) > i+1 && words[i] == "go" && words[i+1] == "build" {
			img.buildEnv, img.buildArgv = words[:i], words[i:]
		}
	}
	if img.buildArgv == nil {
		return img, fmt.Errorf("Dockerfile stage %q: no RUN with a plain `go build` command", from)
	}
	for i, w := range img.buildArgv {
		if w == "-o" && i+1 < len(img.buildArgv) {
			img.outPath = img.buildArgv[i+1]
		}
	}
	if img.outPath != src {
		return img, fmt.Errorf("Dockerfile: go build writes %q but the final stage copies %q", img.outPath, src)
	}

	// A directory others can enter: the run test executes the binary as
	// the image's non-root user.
	if buildDir, err = os.MkdirTemp("", "raftkv-deploy-"); err != nil {
		return img, err
	}
	if err := os.Chmod(buildDir, 0o755); err != nil {
		return img, err
	}
	img.context = filepath.Join(buildDir, "context")
	if err := copyContext(root, img.context); err != nil {
		return img, fmt.Errorf("copy the build context: %w", err)
	}
	img.bin = filepath.Join(buildDir, "out", filepath.Base(img.outPath))
	argv = append([]string(nil), img.buildArgv...)
	for i := range argv {
		if i > 0 && argv[i-1] == "-o" {
			argv[i] = img.bin
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = img.context
	// The Dockerfile's assignments come last, so they win over ours.
	cmd.Env = append(os.Environ(), img.buildEnv...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	img.took = time.Since(start)
	if err != nil {
		return img, fmt.Errorf("%s %s (in the build context copy): %v\n%s", strings.Join(img.buildEnv, " "), strings.Join(img.buildArgv, " "), err, out)
	}
	return img, os.Chmod(img.bin, 0o755)
}

// copyContext copies the build context at root to dst, leaving out what
// .dockerignore excludes.
func copyContext(root, dst string) error {
	patterns, err := readDockerignore(filepath.Join(root, ".dockerignore"))
	if err != nil {
		return err
	}
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, rel); ok {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			return copyFile(path, target)
		default:
			return nil // sockets, symlinks: nothing the build reads
		}
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// readDockerignore reads the subset of .dockerignore syntax the project
// uses: one pattern a line, anchored at the context root, "#" comments. A
// rule this reader would get wrong ("!", "**") is an error, not a guess.
func readDockerignore(path string) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var patterns []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if strings.HasPrefix(p, "!") || strings.Contains(p, "**") {
			return nil, fmt.Errorf("%s: %q: test/deploy's reader supports neither \"!\" nor \"**\"", path, p)
		}
		p = filepath.Clean(strings.Trim(p, "/"))
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", path, p, err)
		}
		patterns = append(patterns, p)
	}
	return patterns, sc.Err()
}

// TestDockerfileBuildIsStatic runs the build stage's go build exactly as
// written and checks the result can run in a distroless/static image: no
// dynamic loader, no dynamic section, stripped (-s -w), and no build paths
// in it (-trimpath).
func TestDockerfileBuildIsStatic(t *testing.T) {
	img := dockerImage(t)
	t.Logf("%s %s: built in %v", strings.Join(img.buildEnv, " "), strings.Join(img.buildArgv, " "), img.took.Round(time.Millisecond))

	// The flags the image depends on are in the command (a Dockerfile edit
	// that drops one fails here, not in production).
	cmdline := strings.Join(append(append([]string(nil), img.buildEnv...), img.buildArgv...), " ")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-ldflags=-s -w"} {
		if !strings.Contains(cmdline, want) {
			t.Errorf("the build command %q lacks %q", cmdline, want)
		}
	}

	f, err := elf.Open(img.bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			t.Errorf("the binary has a PT_INTERP program header: it needs a dynamic loader the static image lacks")
		case elf.PT_DYNAMIC:
			t.Errorf("the binary has a PT_DYNAMIC program header: it is dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) != 0 {
		t.Errorf("imported libraries %v (%v), want none", libs, err)
	}
	for _, s := range f.Sections {
		if s.Name == ".dynamic" || s.Name == ".interp" || s.Name == ".symtab" ||
			strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			t.Errorf("the binary has section %s (want static and stripped by -ldflags=\"-s -w\")", s.Name)
		}
	}
	data, err := os.ReadFile(img.bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{img.context, img.root} {
		if bytes.Contains(data, []byte(dir)) {
			t.Errorf("the binary contains the build path %s (want -trimpath)", dir)
		}
	}
	st, _ := os.Stat(img.bin)
	t.Logf("%s: static ELF %s, %.1f MiB", img.outPath, f.Machine, float64(st.Size())/(1<<20))
}

func TestReadDockerignore(t *testing.T) {
	ok := writeTemp(t, ".dockerignore", "# c\n.git\nbin/\n/data/\n*.test\n")
	got, err := readDockerignore(ok)
	if err != nil || strings.Join(got, ",") != ".git,bin,data,*.test" {
		t.Fatalf("got %q, %v", got, err)
	}
	for _, bad := range []string{"!keep\n", "**/x\n"} {
		if _, err := readDockerignore(writeTemp(t, ".dockerignore", bad)); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}
