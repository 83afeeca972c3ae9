package fsm

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// decodeNoPanic turns a panic in DecodeCommand into a test failure that
// names the input, instead of a crash of the whole test binary.
func decodeNoPanic(t testing.TB, b []byte) (c Command, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("DecodeCommand(%x) panicked: %v", b, r)
		}
	}()
	return DecodeCommand(b)
}

func TestCommandRoundTrip(t *testing.T) {
	long := strings.Repeat("v", 300) // length needs a two-byte uvarint
	tests := []struct {
		name string
		cmd  Command
	}{
		{"set", Command{Op: OpSet, Key: "k", Value: "v"}},
		{"set empty value", Command{Op: OpSet, Key: "k", Value: ""}},
		{"set long value", Command{Op: OpSet, Key: "key", Value: long}},
		{"set binary key and value", Command{Op: OpSet, Key: "\x00\xff/\n", Value: "\x00\x01\x02"}},
		{"delete", Command{Op: OpDelete, Key: "gone"}},
		{"register node", Command{Op: OpRegisterNode, NodeID: "n1", HTTPAddr: "10.0.0.1:8000"}},
		{"forget node", Command{Op: OpForgetNode, NodeID: "n2"}},
		{"mark promotion", Command{Op: OpMarkPromotion, NodeID: "n3"}},
		{"drop promotion", Command{Op: OpDropPromotion, NodeID: "n3"}},
		{"all fields", Command{Op: OpSet, Key: "k", Value: "v", NodeID: "n", HTTPAddr: "a:1"}},
		{"set with ttl", Command{Op: OpSet, Key: "k", Value: "v", TTLMillis: 30_000}},
		{"set with lease", Command{Op: OpSet, Key: "k", Value: "v", Lease: 1 << 40, HasCAS: true}},
		{"lease grant", Command{Op: OpLeaseGrant, TTLMillis: 10_000, RequestID: "r"}},
		{"lease keepalive", Command{Op: OpLeaseKeepAlive, Lease: 7}},
		{"lease revoke", Command{Op: OpLeaseRevoke, Lease: 7}},
		{"touch", Command{Op: OpTouch, Key: "k"}},
		{"checkpoint", Command{Op: OpLeaseCheckpoint, Leases: []LeaseRef{{ID: 3, Refreshed: 3, RemainingMillis: 900}, {ID: 1 << 50, Refreshed: 9}}}},
		{"expire", Command{Op: OpLeaseExpire, Leases: []LeaseRef{{ID: 3, Refreshed: 3}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := tt.cmd.Encode(nil)
			if enc[0] != CommandVersion || Op(enc[1]) != tt.cmd.Op {
				t.Fatalf("header = %x, want version %d op %d", enc[:2], CommandVersion, tt.cmd.Op)
			}
			if n := tt.cmd.EncodedSize(); len(enc) > n {
				t.Errorf("len(Encode) = %d > EncodedSize %d", len(enc), n)
			}
			got, err := decodeNoPanic(t, enc)
			if err != nil {
				t.Fatalf("DecodeCommand: %v", err)
			}
			if !reflect.DeepEqual(got, tt.cmd) {
				t.Fatalf("round trip = %+v, want %+v", got, tt.cmd)
			}

			// Encode appends: an existing prefix is kept intact.
			prefix := []byte("prefix")
			appended := tt.cmd.Encode(append([]byte(nil), prefix...))
			if !bytes.HasPrefix(appended, prefix) || !bytes.Equal(appended[len(prefix):], enc) {
				t.Fatalf("Encode(prefix) = %x, want %x + %x", appended, prefix, enc)
			}
		})
	}
}

func TestCommandEmptyFieldsOmitted(t *testing.T) {
	// An empty value is legal for set and costs no bytes on the wire.
	got := (&Command{Op: OpSet, Key: "k"}).Encode(nil)
	want := []byte{CommandVersion, byte(OpSet), tagKey, 1, 'k'}
	if !bytes.Equal(got, want) {
		t.Fatalf("Encode = %x, want %x", got, want)
	}
	// An explicitly present zero-length value decodes the same as absent.
	c, err := DecodeCommand([]byte{CommandVersion, byte(OpSet), tagKey, 1, 'k', tagValue, 0})
	if err != nil || !reflect.DeepEqual(c, Command{Op: OpSet, Key: "k"}) {
		t.Fatalf("DecodeCommand(zero-length value) = %+v, %v", c, err)
	}
}

func TestDecodeCommandRejects(t *testing.T) {
	const v, set, del, reg, forget = CommandVersion, byte(OpSet), byte(OpDelete), byte(OpRegisterNode), byte(OpForgetNode)
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"version only", []byte{v}},
		{"version 0", []byte{0, set, tagKey, 1, 'k'}},
		{"version 2", []byte{2, set, tagKey, 1, 'k'}},
		{"version 255", []byte{255, set, tagKey, 1, 'k'}},
		{"op 0", []byte{v, 0, tagKey, 1, 'k'}},
		{"op 7", []byte{v, 7, tagNodeID, 1, 'n'}},
		{"op 255", []byte{v, 255, tagKey, 1, 'k'}},
		{"unknown tag 9", []byte{v, set, tagKey, 1, 'k', 9, 1, 'x'}},
		{"quota not a uvarint", []byte{v, set, tagKey, 1, 'k', tagQuota, 2, 0x80, 0x80}},
		{"quota of two uvarints", []byte{v, set, tagKey, 1, 'k', tagQuota, 2, 1, 1}},
		{"unknown tag 255", []byte{v, set, tagKey, 1, 'k', 255, 0}},
		{"tag 0", []byte{v, set, 0, 1, 'x', tagKey, 1, 'k'}},
		{"out of order", []byte{v, set, tagValue, 1, 'v', tagKey, 1, 'k'}},
		{"out of order node fields", []byte{v, reg, tagHTTPAddr, 1, 'a', tagNodeID, 1, 'n'}},
		{"duplicate key", []byte{v, set, tagKey, 1, 'k', tagKey, 1, 'j'}},
		{"duplicate empty value", []byte{v, set, tagKey, 1, 'k', tagValue, 0, tagValue, 0}},
		{"tag without length", []byte{v, set, tagKey}},
		{"truncated length varint", []byte{v, set, tagKey, 0x80}},
		{"truncated length after field", []byte{v, set, tagKey, 1, 'k', tagValue, 0x81}},
		{"overlong length varint", []byte{v, set, tagKey, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"length past end", []byte{v, set, tagKey, 5, 'k'}},
		{"length one past end", []byte{v, set, tagKey, 2, 'k'}},
		{"huge length", []byte{v, set, tagKey, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 'k'}},
		{"set without key", []byte{v, set, tagValue, 1, 'v'}},
		{"set with empty key", []byte{v, set, tagKey, 0, tagValue, 1, 'v'}},
		{"set no fields", []byte{v, set}},
		{"delete without key", []byte{v, del}},
		{"delete with only value", []byte{v, del, tagValue, 1, 'v'}},
		{"register without address", []byte{v, reg, tagNodeID, 2, 'n', '1'}},
		{"register without node id", []byte{v, reg, tagHTTPAddr, 3, 'a', ':', '1'}},
		{"forget without node id", []byte{v, forget}},
		{"mark without node id", []byte{v, byte(OpMarkPromotion)}},
		{"mark with a key", []byte{v, byte(OpMarkPromotion), tagKey, 1, 'k', tagNodeID, 1, 'n'}},
		{"mark with an address", []byte{v, byte(OpMarkPromotion), tagNodeID, 1, 'n', tagHTTPAddr, 1, 'a'}},
		{"drop without node id", []byte{v, byte(OpDropPromotion)}},
		{"drop with a request id", []byte{v, byte(OpDropPromotion), tagNodeID, 1, 'n', tagRequestID, 1, 'r'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeNoPanic(t, tt.in)
			if !errors.Is(err, ErrMalformedCommand) {
				t.Fatalf("DecodeCommand(%x) error = %v, want ErrMalformedCommand", tt.in, err)
			}
		})
	}
}

func TestOpString(t *testing.T) {
	tests := []struct {
		op   Op
		want string
	}{
		{OpSet, "set"},
		{OpDelete, "delete"},
		{OpRegisterNode, "register-node"},
		{OpForgetNode, "forget-node"},
		{OpMarkPromotion, "mark-promotion"},
		{OpDropPromotion, "drop-promotion"},
		{Op(0), "op(0)"},
		{Op(200), "op(200)"},
	}
	for _, tt := range tests {
		if got := tt.op.String(); got != tt.want {
			t.Errorf("Op(%d).String() = %q, want %q", uint8(tt.op), got, tt.want)
		}
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range []Command{
		{Op: OpSet, Key: "k", Value: "v"},
		{Op: OpSet, Key: "k"},
		{Op: OpSet, Key: "key", Value: strings.Repeat("x", 200)},
		{Op: OpDelete, Key: "k"},
		{Op: OpRegisterNode, NodeID: "n1", HTTPAddr: "127.0.0.1:8000"},
		{Op: OpForgetNode, NodeID: "n1"},
		{Op: OpSet, Key: "k", Value: "v", NodeID: "n", HTTPAddr: "a"},
	} {
		f.Add(c.Encode(nil))
	}
	f.Add([]byte{})
	f.Add([]byte{CommandVersion, byte(OpSet), tagKey, 0x80})
	f.Add([]byte{CommandVersion, byte(OpSet), tagKey, 1, 'k', tagValue, 0})
	f.Add([]byte{CommandVersion, byte(OpSet), tagKey, 0x81, 0x00, 'k'}) // non-minimal varint

	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeNoPanic(t, b)
		if err != nil {
			if !errors.Is(err, ErrMalformedCommand) {
				t.Fatalf("DecodeCommand(%x) error %v is not ErrMalformedCommand", b, err)
			}
			return
		}
		enc := c.Encode(nil)
		if len(enc) > c.EncodedSize() {
			t.Fatalf("len(Encode) = %d > EncodedSize %d", len(enc), c.EncodedSize())
		}
		c2, err := decodeNoPanic(t, enc)
		if err != nil {
			t.Fatalf("re-encoded %+v as %x does not decode: %v", c, enc, err)
		}
		if !reflect.DeepEqual(c2, c) {
			t.Fatalf("DecodeCommand(Encode(%+v)) = %+v", c, c2)
		}
		if enc2 := c2.Encode(nil); !bytes.Equal(enc2, enc) {
			t.Fatalf("encoding not canonical: %x then %x", enc, enc2)
		}
	})
}
