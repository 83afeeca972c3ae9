// Package logging builds the daemon's single logrus logger and adapts it for
// libraries (hashicorp/raft) that expect an hclog.Logger, so that every line
// obeys the same LOG_LEVEL and LOG_FORMAT.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sirupsen/logrus"
)

// TimestampFormat is RFC3339 with millisecond precision: raft elections and
// heartbeats happen at sub-second intervals, so seconds are too coarse to
// correlate events across nodes.
const TimestampFormat = "2006-01-02T15:04:05.000Z07:00"

// Supported values for the format argument of New.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// New returns a logger writing to out (os.Stderr when nil).
//
// level is one of trace, debug, info, warn (or warning), error; format is
// "text" or "json". Both are case-insensitive. Empty values select the
// defaults (info, text) so an unset environment variable is not fatal.
func New(level, format string, out io.Writer) (*logrus.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	formatter, err := newFormatter(format)
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = os.Stderr
	}

	l := logrus.New()
	l.SetOutput(out)
	l.SetLevel(lvl)
	l.SetFormatter(formatter)
	return l, nil
}

func parseLevel(level string) (logrus.Level, error) {
	level = strings.ToLower(strings.TrimSpace(level))
	switch level {
	case "":
		return logrus.InfoLevel, nil
	case "trace", "debug", "info", "warn", "warning", "error":
		lvl, err := logrus.ParseLevel(level)
		if err != nil {
			return 0, fmt.Errorf("parse log level %q: %w", level, err)
		}
		return lvl, nil
	default:
		// panic and fatal are deliberately rejected: they would silence
		// errors, which is never what an operator wants from a daemon.
		return 0, fmt.Errorf("invalid log level %q: want one of trace, debug, info, warn, error", level)
	}
}

func newFormatter(format string) (logrus.Formatter, error) {
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "", FormatText:
		return &logrus.TextFormatter{
			FullTimestamp:   true,
			TimestampFormat: TimestampFormat,
		}, nil
	case FormatJSON:
		return &logrus.JSONFormatter{TimestampFormat: TimestampFormat}, nil
	default:
		return nil, fmt.Errorf("invalid log format %q: want %q or %q", format, FormatText, FormatJSON)
	}
}
