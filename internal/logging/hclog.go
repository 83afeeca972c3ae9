package logging

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/sirupsen/logrus"
)

const (
	// ComponentKey is the logrus field carrying the hclog logger name
	// ("raft", "raft.net", ...).
	ComponentKey = "component"

	// ExtraValueKey holds a trailing argument that has no key; the name
	// matches what hclog itself uses so the output looks familiar.
	ExtraValueKey = "EXTRA_VALUE_AT_END"
)

// HCLog adapts l to the hclog.Logger interface under the given name (which
// may be empty). Output goes through l, so its level, formatter and writer
// apply unchanged.
//
// Levels map one to one (Trace→Trace ... Error→Error). hclog.NoLevel is
// logged as Info and hclog.Off is dropped.
//
// SetLevel does not replace l's level; it sets an additional minimum shared
// by this adapter and every logger derived from it via Named, ResetNamed or
// With. It can therefore only make raft quieter than LOG_LEVEL, never
// louder, so the single LOG_LEVEL stays authoritative. SetLevel(hclog.Off)
// silences the adapter; SetLevel(hclog.NoLevel) removes the extra minimum.
func HCLog(l *logrus.Logger, name string) hclog.Logger {
	return &hcAdapter{log: l, name: name, min: new(atomic.Int32)}
}

type hcAdapter struct {
	log  *logrus.Logger
	name string
	// implied always holds an even number of elements, so it can be
	// prepended to call-site args without shifting their key/value pairing.
	implied []interface{}
	// min is shared with derived loggers, as the hclog contract asks of
	// SetLevel.
	min *atomic.Int32
}

var _ hclog.Logger = (*hcAdapter)(nil)

func (a *hcAdapter) Log(level hclog.Level, msg string, args ...interface{}) {
	a.emit(level, msg, args)
}

func (a *hcAdapter) Trace(msg string, args ...interface{}) { a.emit(hclog.Trace, msg, args) }
func (a *hcAdapter) Debug(msg string, args ...interface{}) { a.emit(hclog.Debug, msg, args) }
func (a *hcAdapter) Info(msg string, args ...interface{})  { a.emit(hclog.Info, msg, args) }
func (a *hcAdapter) Warn(msg string, args ...interface{})  { a.emit(hclog.Warn, msg, args) }
func (a *hcAdapter) Error(msg string, args ...interface{}) { a.emit(hclog.Error, msg, args) }

func (a *hcAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hcAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hcAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hcAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hcAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hcAdapter) ImpliedArgs() []interface{} {
	return append([]interface{}(nil), a.implied...)
}

func (a *hcAdapter) With(args ...interface{}) hclog.Logger {
	if len(args) == 0 {
		return a
	}
	implied := make([]interface{}, 0, len(a.implied)+len(args)+1)
	implied = append(implied, a.implied...)
	if len(args)%2 != 0 {
		last := args[len(args)-1]
		implied = append(implied, args[:len(args)-1]...)
		implied = append(implied, ExtraValueKey, last)
	} else {
		implied = append(implied, args...)
	}
	c := *a
	c.implied = implied
	return &c
}

func (a *hcAdapter) Name() string { return a.name }

func (a *hcAdapter) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return a.ResetNamed(name)
}

func (a *hcAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

func (a *hcAdapter) SetLevel(level hclog.Level) { a.min.Store(int32(level)) }

// GetLevel reports the effective level: the stricter of logrus's level and
// the adapter minimum.
func (a *hcAdapter) GetLevel() hclog.Level {
	return max(fromLogrus(a.log.GetLevel()), hclog.Level(a.min.Load()))
}

func (a *hcAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	// No prefix or flags: logrus adds its own timestamp.
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hcAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	w := &stdWriter{log: a}
	if opts != nil {
		w.opts = *opts
	}
	return w
}

func (a *hcAdapter) enabled(level hclog.Level) bool {
	lvl, ok := toLogrus(level)
	return ok && level >= hclog.Level(a.min.Load()) && a.log.IsLevelEnabled(lvl)
}

func (a *hcAdapter) emit(level hclog.Level, msg string, args []interface{}) {
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	if level > hclog.Debug && closedConn(args) {
		level = hclog.Debug
	}
	// Checking first avoids building fields for the many trace/debug lines
	// raft produces that are filtered out anyway.
	if !a.enabled(level) {
		return
	}
	lvl, _ := toLogrus(level)

	fields := make(logrus.Fields, (len(a.implied)+len(args))/2+2)
	addFields(fields, a.implied)
	addFields(fields, args)
	if a.name != "" {
		fields[ComponentKey] = a.name
	}
	a.log.WithFields(fields).Log(lvl, msg)
}

// closedConn reports whether args carry an error from a connection this
// process closed itself (net.ErrClosed: "use of closed network
// connection"). hashicorp/raft's transport logs such reads and writes at
// error level, but they happen only when the node cuts its own Raft
// connections on the way down (or drops a pooled one): never a fault to
// alert on, so they are logged at debug.
func closedConn(args []interface{}) bool {
	for _, v := range args {
		if err, ok := v.(error); ok && errors.Is(err, net.ErrClosed) {
			return true
		}
	}
	return false
}

// addFields turns hclog's alternating key/value args into logrus fields.
// Later keys win, matching hclog's treatment of duplicates.
func addFields(dst logrus.Fields, args []interface{}) {
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			dst[ExtraValueKey] = fieldValue(args[i])
			return
		}
		key, ok := args[i].(string)
		if !ok {
			key = fmt.Sprint(args[i])
		}
		dst[key] = fieldValue(args[i+1])
	}
}

// fieldValue renders hclog's formatting helper types the way hclog would;
// logrus would otherwise print a Format as a raw slice and Hex as decimal.
func fieldValue(v interface{}) interface{} {
	switch v := v.(type) {
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		if f, ok := v[0].(string); ok {
			return fmt.Sprintf(f, v[1:]...)
		}
		return fmt.Sprint(v...)
	case hclog.Hex:
		return "0x" + strconv.FormatInt(int64(v), 16)
	case hclog.Octal:
		return "0" + strconv.FormatInt(int64(v), 8)
	case hclog.Binary:
		return "0b" + strconv.FormatInt(int64(v), 2)
	case hclog.Quote:
		return strconv.Quote(string(v))
	default:
		return v
	}
}

// toLogrus reports false for levels that must never be emitted (Off and
// anything out of range).
func toLogrus(level hclog.Level) (logrus.Level, bool) {
	switch level {
	case hclog.Trace:
		return logrus.TraceLevel, true
	case hclog.Debug:
		return logrus.DebugLevel, true
	case hclog.Info, hclog.NoLevel:
		return logrus.InfoLevel, true
	case hclog.Warn:
		return logrus.WarnLevel, true
	case hclog.Error:
		return logrus.ErrorLevel, true
	default:
		return 0, false
	}
}

func fromLogrus(level logrus.Level) hclog.Level {
	switch level {
	case logrus.TraceLevel:
		return hclog.Trace
	case logrus.DebugLevel:
		return hclog.Debug
	case logrus.InfoLevel:
		return hclog.Info
	case logrus.WarnLevel:
		return hclog.Warn
	case logrus.ErrorLevel:
		return hclog.Error
	default:
		// Fatal and panic suppress error lines, and the adapter never logs
		// above Error, so for hclog's purposes logging is off.
		return hclog.Off
	}
}

// stdWriter feeds lines written by a standard library *log.Logger into the
// adapter, one message per Write call.
type stdWriter struct {
	log  *hcAdapter
	opts hclog.StandardLoggerOptions
}

func (w *stdWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimRight(p, " \t\r\n"))

	switch {
	case w.opts.ForceLevel != hclog.NoLevel:
		_, msg := splitLevel(line)
		w.log.emit(w.opts.ForceLevel, msg, nil)
	case w.opts.InferLevels:
		level, msg := splitLevel(line)
		if level == hclog.NoLevel && w.opts.InferLevelsWithTimestamp {
			// Only trust the timestamp strip if a level tag follows it;
			// otherwise a message starting with a digit would be mangled.
			if l, m := splitLevel(trimTimestamp(line)); l != hclog.NoLevel {
				level, msg = l, m
			}
		}
		w.log.emit(level, msg, nil)
	default:
		w.log.emit(hclog.Info, line, nil)
	}
	return len(p), nil
}

// levelTags are the prefixes Go libraries conventionally use with the
// standard logger ("[ERR] raft-net: ...").
var levelTags = []struct {
	tag   string
	level hclog.Level
}{
	{"[TRACE]", hclog.Trace},
	{"[DEBUG]", hclog.Debug},
	{"[INFO]", hclog.Info},
	{"[WARN]", hclog.Warn},
	{"[WARNING]", hclog.Warn},
	{"[ERROR]", hclog.Error},
	{"[ERR]", hclog.Error},
}

// splitLevel returns the level tagged at the start of line, and the line
// without the tag. It returns hclog.NoLevel (logged as Info) and the line
// unchanged when there is no tag.
func splitLevel(line string) (hclog.Level, string) {
	for _, t := range levelTags {
		if rest, ok := strings.CutPrefix(line, t.tag); ok {
			return t.level, strings.TrimSpace(rest)
		}
	}
	return hclog.NoLevel, line
}

// trimTimestamp drops a leading date/time such as "2024/01/02 15:04:05.000000 ".
func trimTimestamp(line string) string {
	return strings.TrimLeft(line, "0123456789 :/.+-TZ")
}
