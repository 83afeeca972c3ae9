package httpapi

// A listing page is the one answer that holds thousands of values, and
// encoding/json (reflection, an allocation per value) was most of its
// cost: BenchmarkPageJSON compares the two.
// appendPageJSON writes the same bytes writeJSON would, directly;
// FuzzPageJSON holds it to that.

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"

	"github.com/raftkv/raftkv/internal/fsm"
)

const hexDigits = "0123456789abcdef"

// jsonPlain marks the ASCII bytes a JSON string carries as they are: not
// control bytes, '"', '\\', or the HTML characters '<', '>', '&'.
var jsonPlain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it by default: '"' and '\\' by a backslash; \b \f \n \r \t by
// their short forms; other control bytes and '<', '>', '&' as \u00XX;
// U+2028 and U+2029 as \u2028 and \u2029; each byte that is not part of
// valid UTF-8 as \ufffd.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	from := 0 // s[from:i] is still to be copied as it is
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonPlain[c] {
				i++
				continue
			}
			dst = append(dst, s[from:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			from = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[from:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[from:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		from = i
	}
	dst = append(dst, s[from:]...)
	return append(dst, '"')
}

// appendPageJSON appends a listing's answer: the bytes writeJSON would
// write for listResponse (list_test.go) built from page, without
// building it: {"index", "items": [{"key", "value" | "value_base64",
// "create_index", "mod_index"}], "prefixes" (withPrefixes), "more",
// "next" (when not "")}, and a newline. A value that is valid UTF-8 is a
// JSON string, any other the standard base64 of its bytes (valueOf's
// rule); keysOnly leaves values out.
//
// With ttl, an item whose key has a TTL or a lease also has "ttl" (ms
// left) and "lease" after its indexes.
func appendPageJSON(dst []byte, page *fsm.ListPage, keysOnly, withPrefixes bool, next string, ttl keyTTLFunc) []byte {
	dst = append(dst, `{"index":`...)
	dst = strconv.AppendUint(dst, page.Index, 10)
	dst = append(dst, `,"items":[`...)
	for i := range page.Items {
		if i > 0 {
			dst = append(dst, ',')
		}
		e := &page.Items[i]
		dst = append(dst, `{"key":`...)
		dst = appendJSONString(dst, e.Key)
		if !keysOnly {
			dst = appendValueJSON(dst, e.Value)
		}
		dst = append(dst, `,"create_index":`...)
		dst = strconv.AppendUint(dst, e.CreateIndex, 10)
		dst = append(dst, `,"mod_index":`...)
		dst = strconv.AppendUint(dst, e.ModIndex, 10)
		if ttl != nil {
			if ms, lease, ok := ttl(e.Key); ok {
				dst = append(dst, `,"ttl":`...)
				dst = strconv.AppendInt(dst, ms, 10)
				dst = append(dst, `,"lease":`...)
				dst = strconv.AppendUint(dst, lease, 10)
			}
		}
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	if withPrefixes {
		dst = append(dst, `,"prefixes":[`...)
		for i, p := range page.Prefixes {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, p)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"more":`...)
	dst = strconv.AppendBool(dst, page.More)
	if next != "" {
		dst = append(dst, `,"next":`...)
		dst = appendJSONString(dst, next)
	}
	return append(dst, '}', '\n')
}

// pageSize estimates a page's JSON, to allocate its buffer once.
func pageSize(page *fsm.ListPage) int {
	n := 128
	for i := range page.Items {
		n += 64 + len(page.Items[i].Key) + len(page.Items[i].Value)*4/3
	}
	for _, p := range page.Prefixes {
		n += 3 + len(p)
	}
	return n
}

// appendValueJSON appends a value's field the way every answer carries
// one: `,"value":"…"` when it is valid UTF-8, else `,"value_base64":"…"`,
// so no JSON answer alters a value.
func appendValueJSON(dst []byte, v string) []byte {
	if utf8.ValidString(v) {
		dst = append(dst, `,"value":`...)
		return appendJSONString(dst, v)
	}
	// Base64's alphabet needs no escaping in JSON.
	dst = append(dst, `,"value_base64":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, []byte(v))
	return append(dst, '"')
}
