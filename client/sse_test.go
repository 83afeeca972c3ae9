package client

import (
	"bufio"
	"io"
	"reflect"
	"strings"
	"testing"
)

// TestSSEParser holds the parser to the standard's rules: CRLF, LF and
// CR line ends, comments, a colon-less field, one space dropped after
// the colon, multi-line data, an id that persists, events without data
// not dispatched, unknown fields ignored, a final event without its
// blank line not dispatched.
func TestSSEParser(t *testing.T) {
	in := ": raftkv watch a/ after 41\n\n" +
		"id: 42.0\nevent: put\ndata: {\"key\":\"a/x\"}\n\n" +
		"id: 43.0\r\nevent: delete\r\ndata:one\r\ndata:  two\r\n\r\n" +
		"retry: 10\rfoo: bar\revent: put\rdata\r\r" +
		"id: 44\nevent: progress\n\n" +
		"event: reset\ndata: {\"code\":\"history_compacted\"}\n\n" +
		"id: 45.0\nevent: put\ndata: cut"
	p := sseParser{r: bufio.NewReader(strings.NewReader(in))}
	var got []sseEvent
	for {
		ev, err := p.next(func() {})
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	want := []sseEvent{
		{comment: "raftkv watch a/ after 41"},
		{id: "42.0", typ: "put", data: `{"key":"a/x"}`},
		{id: "43.0", typ: "delete", data: "one\n two"},
		{id: "43.0", typ: "put", data: ""},
		{id: "44", typ: "reset", data: `{"code":"history_compacted"}`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestParsePosition(t *testing.T) {
	for s, want := range map[string]position{"42": {42, endSeq}, "42.0": {42, 0}, "57.3": {57, 3}} {
		if p, ok := parsePosition(s); !ok || p != want {
			t.Errorf("%s: %v %v", s, p, ok)
		}
	}
	for _, s := range []string{"", "a", "1.", "1.x", "-1"} {
		if _, ok := parsePosition(s); ok {
			t.Errorf("%q parsed", s)
		}
	}
	if !(position{42, endSeq}).after(position{42, 7}) || (position{42, 0}).after(position{42, 0}) {
		t.Fatal("order")
	}
}
