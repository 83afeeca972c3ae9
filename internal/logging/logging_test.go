package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/sirupsen/logrus"
)

func TestNewLevel(t *testing.T) {
	tests := []struct {
		in      string
		want    logrus.Level
		wantErr bool
	}{
		{in: "trace", want: logrus.TraceLevel},
		{in: "debug", want: logrus.DebugLevel},
		{in: "info", want: logrus.InfoLevel},
		{in: "warn", want: logrus.WarnLevel},
		{in: "warning", want: logrus.WarnLevel},
		{in: "error", want: logrus.ErrorLevel},
		{in: " DEBUG ", want: logrus.DebugLevel},
		{in: "", want: logrus.InfoLevel},
		{in: "fatal", wantErr: true},
		{in: "panic", wantErr: true},
		{in: "verbose", wantErr: true},
		{in: "3", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			l, err := New(tt.in, "text", &bytes.Buffer{})
			if tt.wantErr {
				if err == nil {
					t.Fatalf("New(%q) succeeded, want error", tt.in)
				}
				if !strings.Contains(err.Error(), "trace, debug, info, warn, error") {
					t.Errorf("error %q does not list the allowed levels", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q): %v", tt.in, err)
			}
			if l.GetLevel() != tt.want {
				t.Errorf("level = %v, want %v", l.GetLevel(), tt.want)
			}
		})
	}
}

func TestNewFormat(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
		check   func(t *testing.T, out string)
	}{
		{in: "json", check: func(t *testing.T, out string) {
			m := decodeJSON(t, out)
			if m["msg"] != "hello" || m["level"] != "info" {
				t.Errorf("unexpected entry %v", m)
			}
			if ts, _ := m["time"].(string); !jsonTime.MatchString(ts) {
				t.Errorf("time %q lacks millisecond precision", ts)
			}
		}},
		{in: "JSON", check: func(t *testing.T, out string) { decodeJSON(t, out) }},
		{in: "text", check: checkText},
		{in: "", check: checkText},
		{in: "logfmt", wantErr: true},
		{in: "yaml", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var buf bytes.Buffer
			l, err := New("info", tt.in, &buf)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("New with format %q succeeded, want error", tt.in)
				}
				if !strings.Contains(err.Error(), `"text"`) || !strings.Contains(err.Error(), `"json"`) {
					t.Errorf("error %q does not name the allowed formats", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l.Info("hello")
			tt.check(t, buf.String())
		})
	}
}

var jsonTime = regexp.MustCompile(`T\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$`)

var textTime = regexp.MustCompile(`^time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)" level=info msg=hello\n$`)

func checkText(t *testing.T, out string) {
	t.Helper()
	if !textTime.MatchString(out) {
		t.Errorf("text output %q does not match %v", out, textTime)
	}
}

// decodeJSON parses the single JSON line in out.
func decodeJSON(t *testing.T, out string) map[string]any {
	t.Helper()
	lines := nonEmptyLines(out)
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1: %q", len(lines), out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("output %q is not JSON: %v", lines[0], err)
	}
	return m
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// newJSON returns an hclog adapter named name over a JSON logger at level,
// and the buffer it writes to.
func newJSON(t *testing.T, level, name string) (hclog.Logger, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	l, err := New(level, "json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	return HCLog(l, name), &buf
}

func TestHCLogFields(t *testing.T) {
	tests := []struct {
		name string
		args []any
		want map[string]any
	}{
		{
			name: "pairs",
			args: []any{"term", 3, "leader", "n1"},
			want: map[string]any{"term": 3.0, "leader": "n1"},
		},
		{
			name: "odd trailing value",
			args: []any{"a", 1, "orphan"},
			want: map[string]any{"a": 1.0, ExtraValueKey: "orphan"},
		},
		{
			name: "non-string key",
			args: []any{42, "x", true, "y"},
			want: map[string]any{"42": "x", "true": "y"},
		},
		{
			name: "error value",
			args: []any{"error", errors.New("boom")},
			want: map[string]any{"error": "boom"},
		},
		{
			name: "hclog helper types",
			args: []any{
				"f", hclog.Fmt("%d-%s", 7, "x"),
				"hex", hclog.Hex(255),
				"oct", hclog.Octal(8),
				"bin", hclog.Binary(5),
				"q", hclog.Quote("a\nb"),
			},
			want: map[string]any{"f": "7-x", "hex": "0xff", "oct": "010", "bin": "0b101", "q": `"a\nb"`},
		},
		{
			name: "duplicate key last wins",
			args: []any{"k", 1, "k", 2},
			want: map[string]any{"k": 2.0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, buf := newJSON(t, "info", "raft")
			log.Info("msg here", tt.args...)
			m := decodeJSON(t, buf.String())
			if m["msg"] != "msg here" || m["level"] != "info" || m[ComponentKey] != "raft" {
				t.Errorf("bad base fields: %v", m)
			}
			for k, v := range tt.want {
				if m[k] != v {
					t.Errorf("field %q = %#v, want %#v (entry %v)", k, m[k], v, m)
				}
			}
		})
	}
}

func TestHCLogLevels(t *testing.T) {
	tests := []struct {
		level string
		log   func(l hclog.Logger)
		want  string // logrus level name in output, "" for nothing
	}{
		{"info", func(l hclog.Logger) { l.Trace("m") }, ""},
		{"info", func(l hclog.Logger) { l.Debug("m") }, ""},
		{"info", func(l hclog.Logger) { l.Info("m") }, "info"},
		{"info", func(l hclog.Logger) { l.Warn("m") }, "warning"},
		{"info", func(l hclog.Logger) { l.Error("m") }, "error"},
		{"debug", func(l hclog.Logger) { l.Debug("m") }, "debug"},
		{"debug", func(l hclog.Logger) { l.Trace("m") }, ""},
		{"trace", func(l hclog.Logger) { l.Trace("m") }, "trace"},
		{"error", func(l hclog.Logger) { l.Warn("m") }, ""},
		{"error", func(l hclog.Logger) { l.Error("m") }, "error"},
		{"trace", func(l hclog.Logger) { l.Log(hclog.NoLevel, "m") }, "info"},
		{"trace", func(l hclog.Logger) { l.Log(hclog.Off, "m") }, ""},
		{"trace", func(l hclog.Logger) { l.Log(hclog.Warn, "m") }, "warning"},
		// Raft's transport on a connection the node closed itself (its stop).
		{"debug", func(l hclog.Logger) {
			l.Error("failed to decode incoming command", "error", fmt.Errorf("read: %w", net.ErrClosed))
		}, "debug"},
		{"info", func(l hclog.Logger) { l.Error("failed to decode incoming command", "error", net.ErrClosed) }, ""},
		{"info", func(l hclog.Logger) { l.Error("failed to decode incoming command", "error", io.ErrUnexpectedEOF) }, "error"},
	}
	for i, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			log, buf := newJSON(t, tt.level, "raft")
			tt.log(log)
			if tt.want == "" {
				if buf.Len() != 0 {
					t.Errorf("case %d: expected no output at %s, got %q", i, tt.level, buf)
				}
				return
			}
			if m := decodeJSON(t, buf.String()); m["level"] != tt.want {
				t.Errorf("case %d: level = %v, want %s", i, m["level"], tt.want)
			}
		})
	}
}

func TestHCLogIsLevel(t *testing.T) {
	log, _ := newJSON(t, "info", "")
	if log.IsTrace() || log.IsDebug() {
		t.Error("trace/debug reported enabled at info")
	}
	if !log.IsInfo() || !log.IsWarn() || !log.IsError() {
		t.Error("info/warn/error reported disabled at info")
	}
	if got := log.GetLevel(); got != hclog.Info {
		t.Errorf("GetLevel = %v, want info", got)
	}
}

func TestHCLogSetLevelOnlyRestricts(t *testing.T) {
	log, buf := newJSON(t, "info", "raft")
	child := log.Named("net")

	log.SetLevel(hclog.Trace) // must not override LOG_LEVEL
	child.Debug("hidden")
	if buf.Len() != 0 || child.IsDebug() {
		t.Fatalf("SetLevel(Trace) made debug visible: %q", buf)
	}

	log.SetLevel(hclog.Error) // shared with derived loggers
	child.Warn("hidden")
	if buf.Len() != 0 || child.IsWarn() || child.GetLevel() != hclog.Error {
		t.Fatalf("SetLevel(Error) on parent did not restrict child: %q", buf)
	}

	log.SetLevel(hclog.Off)
	child.Error("hidden")
	if buf.Len() != 0 {
		t.Fatalf("SetLevel(Off) still logs: %q", buf)
	}

	log.SetLevel(hclog.NoLevel)
	child.Info("shown")
	if buf.Len() == 0 {
		t.Fatal("SetLevel(NoLevel) did not restore logrus level")
	}
}

func TestHCLogNamedWith(t *testing.T) {
	root, buf := newJSON(t, "info", "raft")
	tests := []struct {
		name       string
		log        hclog.Logger
		args       []any
		wantName   string
		wantFields map[string]any
		absent     []string
	}{
		{name: "root", log: root, wantName: "raft", absent: []string{"id"}},
		{name: "named", log: root.Named("net"), wantName: "raft.net"},
		{name: "named twice", log: root.Named("net").Named("pool"), wantName: "raft.net.pool"},
		{name: "reset", log: root.Named("net").ResetNamed("fsm"), wantName: "fsm"},
		{name: "with", log: root.With("id", "n1"), wantName: "raft", wantFields: map[string]any{"id": "n1"}},
		{
			name:       "with chain",
			log:        root.With("id", "n1").Named("snap").With("path", "/tmp", "id", "n2"),
			wantName:   "raft.snap",
			wantFields: map[string]any{"id": "n2", "path": "/tmp"},
		},
		{
			name:       "with odd",
			log:        root.With("id", "n1", "x"),
			args:       []any{"k", "v"},
			wantName:   "raft",
			wantFields: map[string]any{"id": "n1", ExtraValueKey: "x", "k": "v"},
		},
		{
			name:       "call args override implied",
			log:        root.With("id", "n1"),
			args:       []any{"id", "n3"},
			wantName:   "raft",
			wantFields: map[string]any{"id": "n3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf.Reset()
			if tt.log.Name() != tt.wantName {
				t.Errorf("Name() = %q, want %q", tt.log.Name(), tt.wantName)
			}
			tt.log.Info("m", tt.args...)
			m := decodeJSON(t, buf.String())
			if m[ComponentKey] != tt.wantName {
				t.Errorf("component = %v, want %q", m[ComponentKey], tt.wantName)
			}
			for k, v := range tt.wantFields {
				if m[k] != v {
					t.Errorf("field %q = %v, want %v", k, m[k], v)
				}
			}
			for _, k := range tt.absent {
				if _, ok := m[k]; ok {
					t.Errorf("field %q leaked from a derived logger: %v", k, m)
				}
			}
		})
	}

	if got := root.With("a", 1, "orphan").ImpliedArgs(); len(got) != 4 || got[2] != ExtraValueKey {
		t.Errorf("ImpliedArgs = %v, want pairs with %s", got, ExtraValueKey)
	}
	if len(root.ImpliedArgs()) != 0 {
		t.Errorf("root ImpliedArgs = %v, want none", root.ImpliedArgs())
	}
}

func TestHCLogNoComponentWhenUnnamed(t *testing.T) {
	log, buf := newJSON(t, "info", "")
	log.Info("m")
	if _, ok := decodeJSON(t, buf.String())[ComponentKey]; ok {
		t.Errorf("unnamed logger set %q: %s", ComponentKey, buf)
	}
}

func TestStandardLogger(t *testing.T) {
	tests := []struct {
		name      string
		opts      *hclog.StandardLoggerOptions
		line      string
		wantLevel string // "" means nothing logged
		wantMsg   string
	}{
		{"no inference", nil, "[ERR] raft-net: failed", "info", "[ERR] raft-net: failed"},
		{"infer ERR", &hclog.StandardLoggerOptions{InferLevels: true}, "[ERR] raft-net: failed to accept", "error", "raft-net: failed to accept"},
		{"infer ERROR", &hclog.StandardLoggerOptions{InferLevels: true}, "[ERROR] x", "error", "x"},
		{"infer WARN", &hclog.StandardLoggerOptions{InferLevels: true}, "[WARN] slow", "warning", "slow"},
		{"infer INFO", &hclog.StandardLoggerOptions{InferLevels: true}, "[INFO] up", "info", "up"},
		{"infer DEBUG filtered", &hclog.StandardLoggerOptions{InferLevels: true}, "[DEBUG] noisy", "", ""},
		{"infer untagged", &hclog.StandardLoggerOptions{InferLevels: true}, "plain line", "info", "plain line"},
		{
			"timestamp stripped",
			&hclog.StandardLoggerOptions{InferLevels: true, InferLevelsWithTimestamp: true},
			"2024/01/02 15:04:05.000001 [WARN] late", "warning", "late",
		},
		{
			"timestamp kept without tag",
			&hclog.StandardLoggerOptions{InferLevels: true, InferLevelsWithTimestamp: true},
			"2024 Tokens issued", "info", "2024 Tokens issued",
		},
		{"force level", &hclog.StandardLoggerOptions{ForceLevel: hclog.Error, InferLevels: true}, "[INFO] boom", "error", "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, buf := newJSON(t, "info", "raft")
			log.Named("net").StandardLogger(tt.opts).Println(tt.line)
			if tt.wantLevel == "" {
				if buf.Len() != 0 {
					t.Fatalf("expected no output, got %q", buf)
				}
				return
			}
			m := decodeJSON(t, buf.String())
			if m["level"] != tt.wantLevel || m["msg"] != tt.wantMsg || m[ComponentKey] != "raft.net" {
				t.Errorf("got level=%v msg=%q component=%v, want %s %q raft.net", m["level"], m["msg"], m[ComponentKey], tt.wantLevel, tt.wantMsg)
			}
		})
	}
}

func TestStandardWriter(t *testing.T) {
	log, buf := newJSON(t, "info", "raft")
	w := log.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	n, err := w.Write([]byte("[WARN] via writer\n"))
	if err != nil || n != len("[WARN] via writer\n") {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if m := decodeJSON(t, buf.String()); m["level"] != "warning" || m["msg"] != "via writer" {
		t.Errorf("unexpected entry %v", m)
	}
}

func TestHCLogTextFormat(t *testing.T) {
	var buf bytes.Buffer
	l, err := New("debug", "text", &buf)
	if err != nil {
		t.Fatal(err)
	}
	HCLog(l, "raft").Named("net").Debug("dialing", "addr", "127.0.0.1:9001")
	out := buf.String()
	for _, want := range []string{"level=debug", "msg=dialing", "component=raft.net", "addr=\"127.0.0.1:9001\""} {
		if !strings.Contains(out, want) {
			t.Errorf("text output %q lacks %q", out, want)
		}
	}
}
