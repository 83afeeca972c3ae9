package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction: its keyword (upper case) and
// the rest of the line.
type instruction struct {
	line int
	cmd  string
	args string
}

// stage is one FROM ... section of a Dockerfile.
type stage struct {
	name   string // the AS name, lower case; "" when unnamed
	base   string
	instrs []instruction
}

// parseDockerfile reads the instructions of path into stages. It handles
// comments, blank lines and "\" continuations; parser directives are
// comments to it.
func parseDockerfile(path string) ([]stage, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var stages []stage
	var pending strings.Builder
	pendingLine := 0
	for i, raw := range strings.Split(string(b), "\n") {
		line := strings.TrimSpace(raw)
		if pending.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if pending.Len() == 0 {
			pendingLine = i + 1
		}
		if strings.HasSuffix(line, "\\") {
			pending.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		pending.WriteString(line)
		text := pending.String()
		pending.Reset()
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{line: pendingLine, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := stage{base: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = strings.ToLower(f[2])
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			return nil, fmt.Errorf("%s:%d: %s before FROM", path, in.line, in.cmd)
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
	}
	if pending.Len() != 0 {
		return nil, fmt.Errorf("%s: ends inside a continued line", path)
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM", path)
	}
	return stages, nil
}

// all returns the stage's instructions with keyword cmd.
func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// last returns the stage's last instruction with keyword cmd (the one that
// takes effect for CMD, ENTRYPOINT, USER, HEALTHCHECK).
func (s stage) last(cmd string) (instruction, bool) {
	all := s.all(cmd)
	if len(all) == 0 {
		return instruction{}, false
	}
	return all[len(all)-1], true
}

// env returns the stage's ENV as a map and in declaration order (later
// declarations override earlier ones). Both "ENV k=v k2=v2" and the legacy
// "ENV k v" are understood; values may be quoted.
func (s stage) env() (map[string]string, []string, error) {
	m := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := m[k]; !ok {
			order = append(order, k)
		}
		m[k] = v
	}
	for _, in := range s.all("ENV") {
		words, err := shellWords(in.args)
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: ENV: %w", in.line, err)
		}
		if len(words) == 0 {
			return nil, nil, fmt.Errorf("line %d: empty ENV", in.line)
		}
		if !strings.Contains(words[0], "=") {
			k, v, _ := strings.Cut(in.args, " ")
			set(k, strings.TrimSpace(v))
			continue
		}
		for _, w := range words {
			k, v, ok := strings.Cut(w, "=")
			if !ok || k == "" {
				return nil, nil, fmt.Errorf("line %d: ENV word %q is not key=value", in.line, w)
			}
			set(k, v)
		}
	}
	return m, order, nil
}

// execForm parses the JSON (exec) form of CMD, ENTRYPOINT or HEALTHCHECK
// CMD. The shell form is refused: the distroless image has no /bin/sh to
// run it.
func execForm(args string) ([]string, error) {
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil {
		return nil, fmt.Errorf("%q is not in exec form [\"prog\", \"arg\"...] (the image has no shell): %v", args, err)
	}
	return argv, nil
}

// command is what the final stage runs: ENTRYPOINT followed by CMD.
func (s stage) command() ([]string, error) {
	var argv []string
	if in, ok := s.last("ENTRYPOINT"); ok {
		ep, err := execForm(in.args)
		if err != nil {
			return nil, fmt.Errorf("line %d: ENTRYPOINT: %w", in.line, err)
		}
		argv = append(argv, ep...)
	}
	if in, ok := s.last("CMD"); ok {
		c, err := execForm(in.args)
		if err != nil {
			return nil, fmt.Errorf("line %d: CMD: %w", in.line, err)
		}
		argv = append(argv, c...)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("the stage has neither ENTRYPOINT nor CMD")
	}
	return argv, nil
}

// healthcheck is the HEALTHCHECK's command, its options skipped.
func (s stage) healthcheck() ([]string, error) {
	in, ok := s.last("HEALTHCHECK")
	if !ok {
		return nil, fmt.Errorf("no HEALTHCHECK")
	}
	rest := in.args
	for strings.HasPrefix(rest, "--") {
		_, rest, _ = strings.Cut(rest, " ")
		rest = strings.TrimSpace(rest)
	}
	kw, argv, _ := strings.Cut(rest, " ")
	if !strings.EqualFold(kw, "CMD") {
		return nil, fmt.Errorf("line %d: HEALTHCHECK %q has no CMD", in.line, in.args)
	}
	return execForm(strings.TrimSpace(argv))
}

// shellWords splits s like a POSIX shell would for a simple command:
// whitespace separates words; single quotes, double quotes and backslash
// escapes are honoured. Expansions ($x, globs) are refused rather than
// guessed at, so the test never runs something other than what the
// Dockerfile says.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				} else if s[i] == '$' || s[i] == '`' {
					return nil, fmt.Errorf("expansion in %q is not supported", s)
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated \" in %q", s)
			}
			inWord = true
		case c == '\\':
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			}
			inWord = true
		case strings.IndexByte("$`*?[;&|<>(){}", c) >= 0:
			return nil, fmt.Errorf("shell syntax %q in %q is not supported", c, s)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func TestShellWords(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: `CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/raftkv ./cmd/raftkv`,
			want: []string{"CGO_ENABLED=0", "go", "build", "-trimpath", "-ldflags=-s -w", "-o", "/out/raftkv", "./cmd/raftkv"}},
		{in: `a 'b c' "d\"e" f\ g`, want: []string{"a", "b c", `d"e`, "f g"}},
		{in: `k=`, want: []string{"k="}},
		{in: `go build $FLAGS`, wantErr: true},
		{in: `go build && echo`, wantErr: true},
		{in: `"open`, wantErr: true},
	}
	for _, tc := range tests {
		got, err := shellWords(tc.in)
		if (err != nil) != tc.wantErr || !tc.wantErr && strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("shellWords(%q) = %q, %v; want %q (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParseDockerfile(t *testing.T) {
	path := writeTemp(t, "Dockerfile", `# syntax=docker/dockerfile:1
FROM golang AS Build
RUN CGO_ENABLED=0 \
    go build -o /out/x .
FROM scratch
ENV A=1 B="two words"
ENV C 3 4
ENV A=5
ENTRYPOINT ["/x"]
CMD ["serve"]
HEALTHCHECK --interval=5s --retries=2 CMD ["/x", "healthcheck"]
`)
	stages, err := parseDockerfile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) != 2 || stages[0].name != "build" || stages[1].base != "scratch" {
		t.Fatalf("stages: %+v", stages)
	}
	if run := stages[0].all("RUN"); len(run) != 1 || run[0].args != "CGO_ENABLED=0  go build -o /out/x ." || run[0].line != 3 {
		t.Errorf("RUN: %+v", run)
	}
	env, order, err := stages[1].env()
	if err != nil || env["A"] != "5" || env["B"] != "two words" || env["C"] != "3 4" || strings.Join(order, ",") != "A,B,C" {
		t.Errorf("env %v %v %v", env, order, err)
	}
	if argv, err := stages[1].command(); err != nil || strings.Join(argv, " ") != "/x serve" {
		t.Errorf("command %q %v", argv, err)
	}
	if argv, err := stages[1].healthcheck(); err != nil || strings.Join(argv, " ") != "/x healthcheck" {
		t.Errorf("healthcheck %q %v", argv, err)
	}
	shell := writeTemp(t, "Dockerfile.shell", "FROM scratch\nHEALTHCHECK CMD curl -f http://localhost/ || exit 1\n")
	if st, err := parseDockerfile(shell); err != nil {
		t.Fatal(err)
	} else if _, err := st[0].healthcheck(); err == nil {
		t.Error("a shell-form HEALTHCHECK was accepted; the distroless image cannot run it")
	}
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	path := t.TempDir() + "/" + name
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
