package bench

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// The watch benchmark's parsers: what a watcher reads from each system's
// stream, and what a write's answer says its index is. They scan for the
// few fields the benchmark needs instead of decoding JSON, so the load
// generator, which shares the machine with the servers, spends as little
// CPU per event as it can, and the same little for both systems.

// sseParser reads raftkv's GET /watch/{prefix} stream (Server-Sent
// Events) one line at a time (without its line end).
type sseParser struct {
	start    uint64 // from the opening comment ": raftkv watch P after N"
	started  bool
	index    uint64 // the current event's id, its log index
	hasID    bool
	typ      []byte // the current event's type
	data     []byte // the current event's data (kept for a reset's message)
	scratchT [16]byte
}

var (
	sseOpen     = []byte(": raftkv watch ")
	sseAfter    = []byte(" after ")
	sseID       = []byte("id: ")
	sseEvent    = []byte("event: ")
	sseData     = []byte("data: ")
	ssePut      = []byte("put")
	sseProgress = []byte("progress")
)

// line takes one line of the stream. It returns the log index of a put
// event the line completes (0 for any other line) and an error for what
// the benchmark cannot accept: a reset (the watcher fell behind the
// history: events lost to it), a delete or expiry (the benchmark only
// puts), a malformed id.
func (p *sseParser) line(l []byte) (uint64, error) {
	switch {
	case len(l) == 0: // the end of an event
		defer p.clear()
		switch {
		case p.typ == nil && !p.hasID:
			return 0, nil // the blank line after a comment
		case bytes.Equal(p.typ, ssePut):
			if !p.hasID {
				return 0, errors.New("a put event without an id")
			}
			return p.index, nil
		case bytes.Equal(p.typ, sseProgress):
			return 0, nil
		}
		return 0, fmt.Errorf("unexpected %q event: %s", p.typ, truncate(string(p.data)))
	case l[0] == ':':
		if !p.started && bytes.HasPrefix(l, sseOpen) {
			i := bytes.LastIndex(l, sseAfter)
			if i < 0 {
				return 0, fmt.Errorf("opening comment without a position: %q", l)
			}
			n, err := posIndex(l[i+len(sseAfter):])
			if err != nil {
				return 0, fmt.Errorf("opening comment %q: %v", l, err)
			}
			p.start, p.started = n, true
		}
		return 0, nil
	case bytes.HasPrefix(l, sseID):
		n, err := posIndex(l[len(sseID):])
		if err != nil {
			return 0, fmt.Errorf("event id %q: %v", l, err)
		}
		p.index, p.hasID = n, true
	case bytes.HasPrefix(l, sseEvent):
		p.typ = append(p.scratchT[:0], l[len(sseEvent):]...)
	case bytes.HasPrefix(l, sseData):
		if !bytes.Equal(p.typ, ssePut) { // a put's data is not needed: its id is its index
			p.data = append(p.data[:0], l[len(sseData):]...)
		}
	}
	return 0, nil
}

func (p *sseParser) clear() {
	p.hasID, p.typ, p.data = false, nil, p.data[:0]
}

// posIndex is the log index of a feed position "N" or "N.S".
func posIndex(b []byte) (uint64, error) {
	if i := bytes.IndexByte(b, '.'); i >= 0 {
		b = b[:i]
	}
	return parseUint(b)
}

// parseUint parses a non-empty run of decimal digits, nothing else.
func parseUint(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 19 {
		return 0, fmt.Errorf("%q is not an index", b)
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not an index", b)
		}
		n = n*10 + uint64(c-'0')
	}
	return n, nil
}

var (
	etcdCreated   = []byte(`"created":true`)
	etcdCanceled  = []byte(`"canceled":true`)
	etcdDelete    = []byte(`"type":"DELETE"`)
	etcdModRev    = []byte(`"mod_revision":"`)
	etcdRevision  = []byte(`"revision":"`)
	etcdErrorOpen = []byte(`{"error"`)
)

// etcdWatchLine reads one message (one line) of etcd's gateway stream
// (POST /v3/watch: {"result":{"header":{…,"revision":"R"},"events":[{"kv":
// {…,"mod_revision":"M",…}},…]}}). It appends each event's mod_revision
// to dst; created is set, with the header's revision as start, for the
// message that confirms the watch. A canceled watch, an error, a delete
// event or an event without a readable mod_revision is an error.
func etcdWatchLine(l []byte, dst []uint64) (revs []uint64, created bool, start uint64, err error) {
	switch {
	case bytes.HasPrefix(l, etcdErrorOpen), bytes.Contains(l, etcdCanceled):
		return dst, false, 0, fmt.Errorf("etcd ended the watch: %s", truncate(string(l)))
	case bytes.Contains(l, etcdDelete):
		return dst, false, 0, fmt.Errorf("unexpected delete event: %s", truncate(string(l)))
	case bytes.Contains(l, etcdCreated):
		n, ok := quotedUintAfter(l, etcdRevision)
		if !ok {
			return dst, false, 0, fmt.Errorf("watch created without a header revision: %s", truncate(string(l)))
		}
		return dst, true, n, nil
	}
	rest := l
	for {
		i := bytes.Index(rest, etcdModRev)
		if i < 0 {
			return dst, false, 0, nil
		}
		rest = rest[i+len(etcdModRev):]
		j := bytes.IndexByte(rest, '"')
		if j < 0 {
			return dst, false, 0, fmt.Errorf("unterminated mod_revision: %s", truncate(string(l)))
		}
		n, err := parseUint(rest[:j])
		if err != nil {
			return dst, false, 0, fmt.Errorf("mod_revision: %v", err)
		}
		dst = append(dst, n)
		rest = rest[j:]
	}
}

// quotedUintAfter parses the quoted decimal that follows the first key in
// b (int64 fields are JSON strings in etcd's gateway mapping).
func quotedUintAfter(b, key []byte) (uint64, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return 0, false
	}
	n, err := parseUint(rest[:j])
	return n, err == nil
}

var raftkvIndex = []byte(`"index":`)

// writeIndex is the log index (raftkv: the answer's "index", its last
// field) or revision (etcd: the header's "revision") a write's 2xx answer
// reports: the index its change event carries.
func writeIndex(kind Kind, body []byte) (uint64, bool) {
	if kind == KindEtcd {
		return quotedUintAfter(body, etcdRevision)
	}
	i := bytes.LastIndex(body, raftkvIndex)
	if i < 0 {
		return 0, false
	}
	rest := body[i+len(raftkvIndex):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	n, err := parseUint(rest[:j])
	return n, err == nil
}

var vmRSS = []byte("VmRSS:")

// parseVmRSS reads the VmRSS line of a /proc/PID/status file, in KiB.
func parseVmRSS(status []byte) (int64, error) {
	for _, l := range bytes.Split(status, []byte{'\n'}) {
		if !bytes.HasPrefix(l, vmRSS) {
			continue
		}
		f := bytes.Fields(l[len(vmRSS):])
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", l)
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS line %q: %v", l, err)
		}
		return n, nil
	}
	return 0, errors.New("no VmRSS line (a kernel thread, or the process has exited)")
}

// mix64 spreads an index over 64 bits (splitmix64's finalizer), so that a
// sum of mixed indexes identifies a set of indexes: two watchers with the
// same count and the same sum received the same events, short of a
// collision no benchmark will meet.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
