package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/raftkv/raftkv/client"
)

// The JSON shapes of -o json (docs/cli.md) follow the API's own: the same
// field names, times in milliseconds, a value as "value" when it is UTF-8
// and as "value_base64" (standard base64, padded) otherwise.

// kvJSON is a key as `get -o json` and `ls -o json` print it: the shape of
// the API's /get answer without "index".
type kvJSON struct {
	Key         string  `json:"key"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 *string `json:"value_base64,omitempty"`
	CreateIndex uint64  `json:"create_index,omitempty"`
	ModIndex    uint64  `json:"mod_index,omitempty"`
	TTL         int64   `json:"ttl,omitempty"`   // milliseconds left; absent: none
	Lease       uint64  `json:"lease,omitempty"` // absent: none
}

func toKVJSON(kv client.KeyValue, withValue bool) kvJSON {
	out := kvJSON{Key: kv.Key, CreateIndex: kv.CreateIndex, ModIndex: kv.ModIndex, TTL: kv.TTL.Milliseconds(), Lease: kv.Lease}
	if withValue {
		out.Value, out.ValueBase64 = jsonValue(kv.Value)
	}
	return out
}

// jsonValue is b as the API puts a value in JSON: as text when valid
// UTF-8, else as base64.
func jsonValue(b []byte) (value, valueBase64 *string) {
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	s := base64.StdEncoding.EncodeToString(b)
	return nil, &s
}

// printJSON writes v as one line of JSON (HTML characters not escaped).
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// printResult writes a command's answer to w: v as one line of JSON under
// -o json, else the line format and args make (a newline added). Only
// the JSON's write error is returned: the line's is ignored, as the
// commands always did.
func (a *app) printResult(w io.Writer, v any, format string, args ...any) error {
	if a.g.json() {
		return printJSON(w, v)
	}
	fmt.Fprintf(w, format+"\n", args...)
	return nil
}

// printable is b for a table cell or an event line: as is when it is
// UTF-8 without control characters, else Go-quoted (so one line stays one
// line and binary shows as escapes); cut to max runes with "…" (max 0: no
// cut).
func printable(b []byte, max int) string {
	s := string(b)
	plain := utf8.Valid(b)
	if plain {
		for _, r := range s {
			if unicode.IsControl(r) {
				plain = false
				break
			}
		}
	}
	if !plain {
		s = strconv.Quote(s)
	}
	if max > 0 && utf8.RuneCountInString(s) > max {
		r := []rune(s)
		s = string(r[:max-1]) + "…"
	}
	return s
}

// table writes rows under a header, columns aligned by two spaces, with
// no trailing blanks.
type table struct {
	w   io.Writer
	buf bytes.Buffer
	tw  *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{w: w}
	t.tw = tabwriter.NewWriter(&t.buf, 0, 0, 2, ' ', 0)
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error {
	if err := t.tw.Flush(); err != nil {
		return err
	}
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(t.buf.String(), "\n") {
		if line != "" {
			out.WriteString(strings.TrimRight(line, " \n") + "\n")
		}
	}
	_, err := t.w.Write(out.Bytes())
	return err
}

// ms formats a duration in a table: "-" for none, else rounded to ms.
func ms(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.Round(time.Millisecond).String()
}

// num formats an index or id in a table: "-" for 0.
func num(n uint64) string {
	if n == 0 {
		return "-"
	}
	return strconv.FormatUint(n, 10)
}

// isTerminal reports whether f, standard input or output, is an
// *os.File open on a terminal (a character device): a value read from it
// until end of file needs a word on how to end it, a raw value written to
// it a newline after it for the prompt's sake.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	st, err := file.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
