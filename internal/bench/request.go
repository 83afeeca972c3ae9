package bench

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

type opKind int

// The request kinds. A worker measures reads and writes (of the run's
// workload: a get or put, a list or count, a transaction); opBatch is the
// preload's transaction of PreloadBatch puts, never measured.
const (
	opRead opKind = iota
	opWrite
	opBatch
)

func (o opKind) String() string {
	switch o {
	case opWrite:
		return "write"
	case opBatch:
		return "batch"
	}
	return "read"
}

// keyName is key i of n: prefix plus i zero-padded to the width of n-1, so
// every key of a run has the same length.
func keyName(prefix string, i, n int) string {
	width := len(strconv.Itoa(max(n-1, 0)))
	s := strconv.Itoa(i)
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return prefix + s
}

// benchValue is the value every write sends: n printable bytes drawn from
// seed, so a run's bytes are reproducible (and UTF-8, as a real text value).
func benchValue(n int, seed uint64) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	r := rand.New(rand.NewPCG(seed, 0x76616c7565)) // "value"
	v := make([]byte, n)
	for i := range v {
		v[i] = alphabet[r.IntN(len(alphabet))]
	}
	return v
}

// builder turns (target, op, key) into an HTTP request. It is built once
// per run and shared read-only by the workers: every per-key string is
// computed here, so building a request costs one url.URL and, for etcd,
// appending into the worker's own body buffer.
type builder struct {
	kind Kind

	workload string
	keys     int // key space
	batch    int // keys per opBatch request

	// raftkv: "/kv/<key>" per key, the query of reads, the value; for
	// transactions the JSON string of each key and of the value.
	paths     []string
	readQuery string
	value     []byte
	keysJSON  []string
	valueJSON string

	// list and count, both systems: the one path, query and body.
	prefixPath  string
	prefixQuery string
	prefixBody  []byte

	// etcd: base64 key per key, JSON fragments around them.
	keysB64   []string
	putTail   []byte // `","value":"<base64 value>"}`
	rangeTail []byte // `"}` or `","serializable":true}`
	putPath   string
	rangePath string
	txnPath   string // both systems
	valueB64  string

	// Shared read-only: a RoundTripper must not modify the request.
	jsonHeader  http.Header
	octetHeader http.Header
	emptyHeader http.Header
}

func newBuilder(cfg *Config) *builder {
	b := &builder{
		kind:        cfg.Kind,
		workload:    cfg.workload(),
		keys:        cfg.Keys,
		batch:       cfg.preloadBatch(),
		jsonHeader:  http.Header{"Content-Type": {"application/json"}},
		octetHeader: http.Header{"Content-Type": {"application/octet-stream"}},
		emptyHeader: http.Header{},
	}
	value := benchValue(cfg.ValueSize, cfg.Seed)
	switch cfg.Kind {
	case KindEtcd:
		b.keysB64 = make([]string, cfg.Keys)
		for i := range b.keysB64 {
			b.keysB64[i] = base64.StdEncoding.EncodeToString([]byte(keyName(cfg.Prefix, i, cfg.Keys)))
		}
		b.putTail = append([]byte(`","value":"`), base64.StdEncoding.EncodeToString(value)...)
		b.putTail = append(b.putTail, `"}`...)
		if cfg.Consistency == Stale {
			b.rangeTail = []byte(`","serializable":true}`)
		} else {
			b.rangeTail = []byte(`"}`)
		}
		b.putPath, b.rangePath, b.txnPath = "/v3/kv/put", "/v3/kv/range", "/v3/kv/txn"
		b.valueB64 = base64.StdEncoding.EncodeToString(value)
		// A range over the prefix: key = prefix, range_end = the prefix's
		// end (etcd's "all keys with this prefix").
		rng := map[string]any{
			"key":       base64.StdEncoding.EncodeToString([]byte(cfg.Prefix)),
			"range_end": base64.StdEncoding.EncodeToString(prefixEnd([]byte(cfg.Prefix))),
		}
		if cfg.workload() == WorkloadCount {
			rng["count_only"] = true
		} else {
			rng["limit"] = strconv.Itoa(cfg.listLimit()) // int64: a JSON string in the gateway's mapping
		}
		if cfg.Consistency == Stale {
			rng["serializable"] = true
		}
		b.prefixPath, b.prefixBody = b.rangePath, mustJSON(rng)
	default:
		b.paths = make([]string, cfg.Keys)
		for i := range b.paths {
			b.paths[i] = "/kv/" + keyName(cfg.Prefix, i, cfg.Keys)
		}
		b.readQuery = "consistency=" + url.QueryEscape(cfg.Consistency)
		b.value = value
		b.txnPath = "/txn"
		if cfg.workload() == WorkloadTxn || b.batch > 1 {
			b.keysJSON = make([]string, cfg.Keys)
			for i := range b.keysJSON {
				b.keysJSON[i] = string(mustJSON(keyName(cfg.Prefix, i, cfg.Keys)))
			}
			b.valueJSON = string(mustJSON(string(value)))
		}
		b.prefixPath = "/kv/" + cfg.Prefix
		if cfg.workload() == WorkloadCount {
			b.prefixQuery = "recurse&count&" + b.readQuery
		} else {
			b.prefixQuery = "recurse&limit=" + strconv.Itoa(cfg.listLimit()) + "&" + b.readQuery
		}
	}
	return b
}

// prefixEnd is the smallest key greater than every key starting with p
// (etcd's range_end for a prefix): p with its last byte below 0xff
// incremented and what follows dropped; "\x00" (every key) if there is
// none.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // strings, bools and maps of them
	}
	return b
}

// pairKey is the second key of the transaction on key i: half the key
// space away, so never i itself (etcd refuses two puts of one key in a
// transaction).
func (b *builder) pairKey(i int) int { return (i + max(b.keys/2, 1)) % b.keys }

// txnBody is the body of the txn workload's transaction on key i.
func (b *builder) txnBody(i int) []byte {
	j := b.pairKey(i)
	var body []byte
	if b.kind == KindEtcd {
		ki, kj := b.keysB64[i], b.keysB64[j]
		body = make([]byte, 0, 200+2*len(ki)+len(kj)+2*len(b.valueB64))
		body = append(body, `{"compare":[{"key":"`...)
		body = append(body, ki...)
		body = append(body, `","target":"MOD","result":"GREATER","mod_revision":"0"}],"success":[`...)
		for n, k := range []string{ki, kj} {
			if n > 0 {
				body = append(body, ',')
			}
			body = append(body, `{"request_put":{"key":"`...)
			body = append(body, k...)
			body = append(body, `","value":"`...)
			body = append(body, b.valueB64...)
			body = append(body, `"}}`...)
		}
		return append(body, "]}"...)
	}
	ki, kj := b.keysJSON[i], b.keysJSON[j]
	body = make([]byte, 0, 200+2*len(ki)+len(kj)+2*len(b.valueJSON))
	body = append(body, `{"compare":[{"key":`...)
	body = append(body, ki...)
	body = append(body, `,"target":"mod_index","op":">","mod_index":0}],"success":[`...)
	for n, k := range []string{ki, kj} {
		if n > 0 {
			body = append(body, ',')
		}
		body = append(body, `{"op":"put","key":`...)
		body = append(body, k...)
		body = append(body, `,"value":`...)
		body = append(body, b.valueJSON...)
		body = append(body, '}')
	}
	return append(body, "]}"...)
}

// batchBody is the preload transaction writing keys [first, first+batch)
// (cut at the key space): puts only, no compare.
func (b *builder) batchBody(first int) []byte {
	last := min(first+b.batch, b.keys)
	var body []byte
	body = append(body, `{"success":[`...)
	for i := first; i < last; i++ {
		if i > first {
			body = append(body, ',')
		}
		if b.kind == KindEtcd {
			body = append(body, `{"request_put":{"key":"`...)
			body = append(body, b.keysB64[i]...)
			body = append(body, `","value":"`...)
			body = append(body, b.valueB64...)
			body = append(body, `"}}`...)
		} else {
			body = append(body, `{"op":"put","key":`...)
			body = append(body, b.keysJSON[i]...)
			body = append(body, `,"value":`...)
			body = append(body, b.valueJSON...)
			body = append(body, '}')
		}
	}
	return append(body, "]}"...)
}

// reqState is one worker's reusable request parts.
//
// Request bodies are NOT recycled, on purpose. A reader the worker could
// reuse needs to know when the transport is done with it (a RoundTripper
// may read and close the body after RoundTrip returns), i.e. a Close hook
// on a type of our own. net/http only coalesces the headers and body of a
// request into one write when the body is a *bytes.Reader (or
// io.NopCloser of one): any other type makes it flush the headers first,
// one extra write syscall per request. Measured against an in-process
// server, that cost ~20% more CPU per request than allocating a fresh
// 40-byte reader. So: raftkv writes send the one shared, never-modified
// value through a fresh bytes.Reader; etcd requests build their small JSON
// body in a fresh, exactly-sized slice that nothing modifies afterwards.
type reqState struct {
	tmpl    http.Request // filled per request; the sent copy comes from WithContext
	cur     []byte       // the current request's body (immutable once sent)
	getBody func() (io.ReadCloser, error)
}

func newReqState() *reqState {
	st := &reqState{}
	// The transport calls GetBody only inside RoundTrip, to resend on a
	// fresh connection after a stale keep-alive one failed before anything
	// was written, so one closure per worker reading cur serves every
	// request.
	st.getBody = func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(st.cur)), nil
	}
	return st
}

// fill prepares st.tmpl for op on key at target and returns it.
func (b *builder) fill(st *reqState, target *url.URL, op opKind, key int) *http.Request {
	u := &url.URL{Scheme: target.Scheme, Host: target.Host}
	r := &st.tmpl
	*r = http.Request{
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		URL:        u,
		Host:       target.Host,
	}
	var body []byte
	switch {
	case op == opBatch:
		r.Method, r.Header, u.Path = http.MethodPost, b.jsonHeader, b.txnPath
		body = b.batchBody(key)
	case b.workload == WorkloadTxn:
		r.Method, r.Header, u.Path = http.MethodPost, b.jsonHeader, b.txnPath
		body = b.txnBody(key)
	case (b.workload == WorkloadList || b.workload == WorkloadCount) && b.kind == KindEtcd:
		r.Method, r.Header, u.Path = http.MethodPost, b.jsonHeader, b.prefixPath
		body = b.prefixBody // shared, never modified
	case b.workload == WorkloadList || b.workload == WorkloadCount:
		r.Method, r.Header, u.Path, u.RawQuery = http.MethodGet, b.emptyHeader, b.prefixPath, b.prefixQuery
	case b.kind == KindEtcd:
		r.Method = http.MethodPost
		r.Header = b.jsonHeader
		k := b.keysB64[key]
		if op == opWrite {
			u.Path = b.putPath
			body = make([]byte, 0, len(etcdKeyOpen)+len(k)+len(b.putTail))
			body = append(append(append(body, etcdKeyOpen...), k...), b.putTail...)
		} else {
			u.Path = b.rangePath
			body = make([]byte, 0, len(etcdKeyOpen)+len(k)+len(b.rangeTail))
			body = append(append(append(body, etcdKeyOpen...), k...), b.rangeTail...)
		}
	case op == opWrite:
		r.Method = http.MethodPut
		r.Header = b.octetHeader
		u.Path = b.paths[key]
		body = b.value
	default:
		r.Method = http.MethodGet
		r.Header = b.emptyHeader
		u.Path = b.paths[key]
		u.RawQuery = b.readQuery
	}
	switch {
	case body == nil && r.Method == http.MethodGet:
		r.Body = nil
	case len(body) == 0:
		r.Body = http.NoBody
	default:
		st.cur = body
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = st.getBody
		r.ContentLength = int64(len(body))
	}
	return r
}

const etcdKeyOpen = `{"key":"`
