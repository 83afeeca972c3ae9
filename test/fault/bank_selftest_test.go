package fault

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
)

// These tests prove the bank checks can fail: synthetic histories with a
// read whose total differs, a torn read, a lost transfer and a transfer
// applied but answered "compare failed" must be rejected, and a valid
// history with an unknown transfer must pass. They need no cluster.

// bankCreate is the creating transaction, acknowledged at index 5: a0 holds
// 300, a1..a4 hold 50 each.
func bankCreate() *op {
	o := &op{Client: bankClientBase, Kind: opTxn, Key: bankPrefix, Value: bankCreateTag, Call: 0, Return: 10 * ms,
		Outcome: outcomeOK, Succeeded: true, Index: 5}
	for i, k := range bankKeys() {
		bal := int64(50)
		if i == 0 {
			bal = 300
		}
		o.Bank = append(o.Bank, bankPart{Key: k, Value: bankValue(bal, bankCreateTag)})
	}
	return o
}

// bankScan is a range read over [call, ret] ms; accounts maps a key to
// "value@index" (absent: not listed).
func bankScan(client int, call, ret int64, accounts map[string]bankPart) *op {
	o := &op{Client: client, Kind: opScan, Key: bankPrefix, Call: call * ms, Return: ret * ms, Outcome: outcomeOK}
	for _, k := range bankKeys() {
		p, ok := accounts[k]
		if !ok {
			p = bankPart{Key: k}
		} else {
			p.Key, p.Present = k, true
		}
		o.Bank = append(o.Bank, p)
	}
	return o
}

// initial is every account as bankCreate left it.
func initial() map[string]bankPart {
	m := map[string]bankPart{}
	for _, p := range bankCreate().Bank {
		m[p.Key] = bankPart{Value: p.Value, Index: 5}
	}
	return m
}

func with(m map[string]bankPart, key, value string, index uint64) map[string]bankPart {
	out := map[string]bankPart{}
	for k, v := range m {
		out[k] = v
	}
	out[key] = bankPart{Value: value, Index: index}
	return out
}

// transfer moves 100 from a0 (at index 5) to a1 (at index 5) with tag t.
func transfer(client int, tag string, call, ret int64, outcome outcome, succeeded bool, index uint64) *op {
	return &op{Client: client, Kind: opTxn, Key: bankPrefix, Value: tag, Call: call * ms, Return: ret * ms, Outcome: outcome,
		Succeeded: succeeded, Index: index, RID: "r-" + tag,
		Bank: []bankPart{{Key: "bank/a0", Value: bankValue(200, tag), CAS: 5}, {Key: "bank/a1", Value: bankValue(150, tag), CAS: 5}}}
}

// afterTransfer is every account after transfer(…, tag, …) applied at index.
func afterTransfer(tag string, index uint64) map[string]bankPart {
	return with(with(initial(), "bank/a0", bankValue(200, tag), index), "bank/a1", bankValue(150, tag), index)
}

func TestBankCheckerAcceptsValidHistory(t *testing.T) {
	applied := transfer(1001, "t1", 30, 40, outcomeOK, true, 9)
	// A transfer on the same stale indexes: its compares fail, and its
	// failure gets read what t1 wrote.
	stale := transfer(1002, "t2", 45, 50, outcomeOK, false, 10)
	stale.Reads = []bankPart{{Key: "bank/a0", Present: true, Value: bankValue(200, "t1"), Index: 9},
		{Key: "bank/a1", Present: true, Value: bankValue(150, "t1"), Index: 9}}
	// Unknown outcomes: one never applies, the other shows up later.
	lostInFlight := transfer(1000, "t3", 52, 0, outcomeUnknown, false, 0)
	lostInFlight.Bank[0].CAS, lostInFlight.Bank[1].CAS = 1, 1 // could not have applied anyway
	shows := transfer(1000, "t4", 55, 0, outcomeUnknown, false, 0)
	shows.Bank[0].CAS, shows.Bank[1].CAS = 9, 9
	shows.Bank[0].Value, shows.Bank[1].Value = bankValue(190, "t4"), bankValue(160, "t4")
	failed := transfer(1001, "t5", 56, 58, outcomeFail, false, 0)
	ops := []*op{
		bankCreate(),
		bankScan(1000, 12, 20, initial()),
		applied,
		bankScan(1000, 41, 44, afterTransfer("t1", 9)),
		stale, lostInFlight, shows, failed,
		bankScan(1002, 70, 80, with(with(initial(), "bank/a0", bankValue(190, "t4"), 12), "bank/a1", bankValue(160, "t4"), 12)),
	}
	if p, st := checkBank(ops); len(p) != 0 || st.reads != 3 || st.transfers != 5 || st.succeeded != 1 || st.failedCompare != 1 || st.unknown != 2 {
		t.Fatalf("checkBank: problems %q, stats %+v", p, st)
	}
	if res := lin(t, ops...); res != porcupine.Ok {
		t.Fatalf("valid bank history judged %s", res)
	}
}

func TestBankCheckRejectsBadReads(t *testing.T) {
	cases := map[string]map[string]bankPart{
		"total off by one":               with(initial(), "bank/a2", bankValue(49, bankCreateTag), 5),
		"negative balance":               with(with(initial(), "bank/a0", bankValue(350, "t"), 7), "bank/a1", bankValue(-50, "t"), 7),
		"missing account":                func() map[string]bankPart { m := initial(); delete(m, "bank/a3"); return m }(),
		"unreadable balance":             with(initial(), "bank/a4", "fifty", 5),
		"torn read (half of a transfer)": with(initial(), "bank/a0", bankValue(200, "t1"), 9),
	}
	for name, accounts := range cases {
		p, _ := checkBank([]*op{bankCreate(), bankScan(1000, 20, 30, accounts)})
		if len(p) != 1 {
			t.Errorf("%s: checkBank problems %q, want one", name, p)
		}
	}
	// A failed read is not checked.
	bad := bankScan(1000, 20, 30, with(initial(), "bank/a2", bankValue(1, bankCreateTag), 5))
	bad.Outcome = outcomeFail
	if p, _ := checkBank([]*op{bad}); len(p) != 0 {
		t.Errorf("a failed read was checked: %q", p)
	}
}

func TestBankCheckerRejectsLostTransfer(t *testing.T) {
	// t1 is acknowledged as applied at 40; a later read shows the old
	// balances: the total is right, so only the per-key check catches it.
	ops := []*op{bankCreate(), transfer(1001, "t1", 30, 40, outcomeOK, true, 9), bankScan(1000, 50, 60, initial())}
	if p, _ := checkBank(ops); len(p) != 0 {
		t.Fatalf("checkBank: %q (the total is intact)", p)
	}
	if res := lin(t, ops...); res != porcupine.Illegal {
		t.Fatalf("lost transfer judged %s, want Illegal", res)
	}
}

func TestBankCheckerRejectsReexecutedTransfer(t *testing.T) {
	// t1's first attempt applied; its resend was executed again instead of
	// replayed, so the compares failed and the answer says "not applied",
	// with failure gets showing t1's own values.
	t1 := transfer(1001, "t1", 30, 60, outcomeOK, false, 11)
	t1.Attempts = 2
	t1.Reads = []bankPart{{Key: "bank/a0", Present: true, Value: bankValue(200, "t1"), Index: 9},
		{Key: "bank/a1", Present: true, Value: bankValue(150, "t1"), Index: 9}}
	// No later read is needed: the failure gets alone show values no
	// write in the history produced.
	ops := []*op{bankCreate(), t1}
	if res := lin(t, ops...); res != porcupine.Illegal {
		t.Fatalf("re-executed transfer judged %s, want Illegal", res)
	}
}

func TestBankCheckerRejectsStaleRangeRead(t *testing.T) {
	// A range read that starts after t1 was acknowledged shows a state from
	// before it on one key only: torn and stale.
	ops := []*op{bankCreate(), transfer(1001, "t1", 30, 40, outcomeOK, true, 9),
		bankScan(1000, 50, 60, with(afterTransfer("t1", 9), "bank/a1", bankValue(50, bankCreateTag), 5))}
	if res := lin(t, ops...); res != porcupine.Illegal {
		t.Fatalf("stale range read judged %s, want Illegal", res)
	}
}

func TestTransferBody(t *testing.T) {
	o := transfer(1001, "t1", 0, 0, outcomeOK, false, 0)
	got := string(transferBody(o))
	want := `{"compare":[{"key":"bank/a0","target":"mod_index","op":"=","mod_index":5},{"key":"bank/a1","target":"mod_index","op":"=","mod_index":5}],` +
		`"success":[{"op":"put","key":"bank/a0","value":"200 t1"},{"op":"put","key":"bank/a1","value":"150 t1"}],` +
		`"failure":[{"op":"get","key":"bank/a0"},{"op":"get","key":"bank/a1"}]}`
	if got != want {
		t.Errorf("transfer body\n got %s\nwant %s", got, want)
	}
	var req txnRequest
	if err := json.Unmarshal(transferBody(bankCreate()), &req); err != nil {
		t.Fatal(err)
	}
	for _, c := range req.Compare {
		if c.Target != "create_index" || c.CreateIndex == nil || *c.CreateIndex != 0 || c.ModIndex != nil {
			t.Errorf("creating compare %+v, want create_index = 0", c)
		}
	}
}

func TestFillScanAndTxn(t *testing.T) {
	keys := bankKeys()
	o := &op{}
	body := `{"index":30,"items":[{"key":"bank/a0","value":"300 init","create_index":5,"mod_index":5},` +
		`{"key":"bank/a2","value":"50 init","create_index":5,"mod_index":7}],"more":false}`
	if err := fillScan(o, []byte(body), keys); err != nil {
		t.Fatal(err)
	}
	if len(o.Bank) != bankAccounts || !o.Bank[0].Present || o.Bank[0].Value != "300 init" || o.Bank[1].Present ||
		o.Bank[2].Index != 7 || o.Index != 30 {
		t.Errorf("fillScan: %+v", o.Bank)
	}
	for name, bad := range map[string]string{
		"a key that is no account": `{"items":[{"key":"bank/zz","value":"1","mod_index":3}],"more":false}`,
		"a second page":            `{"items":[],"more":true,"next":"x"}`,
		"out of order":             `{"items":[{"key":"bank/a1","value":"1","mod_index":3},{"key":"bank/a0","value":"1","mod_index":3}]}`,
		"binary value":             `{"items":[{"key":"bank/a1","value_base64":"//4=","mod_index":3}]}`,
		"not JSON":                 `nope`,
	} {
		if err := fillScan(&op{}, []byte(bad), keys); err == nil {
			t.Errorf("fillScan accepted %s", name)
		}
	}

	tx := transfer(1001, "t1", 0, 0, outcomeOK, false, 0)
	ans := `{"succeeded":false,"index":12,"results":[{"op":"get","key":"bank/a0","found":true,"value":"200 x","mod_index":9,"create_index":5},` +
		`{"op":"get","key":"bank/a1","found":false}]}`
	if err := fillTxn(tx, []byte(ans)); err != nil {
		t.Fatal(err)
	}
	if tx.Succeeded || tx.Index != 12 || len(tx.Reads) != 2 || tx.Reads[0] != (bankPart{Key: "bank/a0", Present: true, Value: "200 x", Index: 9}) ||
		tx.Reads[1].Present {
		t.Errorf("fillTxn: %+v", tx)
	}
	// A replay does not keep what the gets read: no reads, no error.
	replay := `{"succeeded":false,"index":12,"results":[{"op":"get","key":"bank/a0","not_kept":true},{"op":"get","key":"bank/a1","not_kept":true}]}`
	if err := fillTxn(tx, []byte(replay)); err != nil || tx.Reads != nil || tx.Succeeded || tx.Index != 12 {
		t.Errorf("fillTxn of a replayed failure: %v %+v", err, tx)
	}
	if err := fillTxn(tx, []byte(`{"succeeded":false,"index":12,"results":[{"op":"get","key":"bank/a0"},{"op":"get","key":"bank/a1"}]}`)); err == nil {
		t.Errorf("fillTxn accepted gets that say neither found nor not_kept")
	}
	if err := fillTxn(tx, []byte(`{"succeeded":false,"index":12,"results":[]}`)); err == nil || !strings.Contains(err.Error(), "0 results") {
		t.Errorf("fillTxn of a failure without results: %v", err)
	}
	if err := fillTxn(tx, []byte(`{"succeeded":true,"index":14,"results":[{},{}]}`)); err != nil || !tx.Succeeded || tx.Index != 14 {
		t.Errorf("fillTxn of a success: %v %+v", err, tx)
	}
}
