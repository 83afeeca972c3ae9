package fault

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// The porcupine model: a key-value store partitioned by key. The state of
// one key is whether it exists, its value, and its mod_index (the Raft
// index of its last write, 0 when absent). Indexes are global Raft indexes
// assigned by the server, so the model never predicts them; it only checks
// them against what the server itself reported:
//   - a write answered 200 sets the index to the one it returned;
//   - a get answered 200 must show the current value and index;
//   - a cas succeeds iff its expected index equals the current one (0:
//     absent), and a 409 must carry the current index;
//   - a write with an unknown outcome (Return = MaxInt64: it may take effect
//     at any point after its call, or never) leaves the index unknown; the
//     first later answer that shows the index fixes it, and until then a
//     cas against that key may or may not match (so the model is
//     nondeterministic).
//
// Failed writes (definitely not applied) and failed or unknown reads are
// left out: if a "not applied" write did apply, a later read returns a
// value no write in the history produced, which the model rejects.

type kvInput struct {
	Op     string // "get", "put" or "del"
	Key    string
	Value  string
	HasCAS bool
	CAS    uint64
}

type kvOutput struct {
	Unknown   bool
	Present   bool   // get: found; del: existed
	Value     string // get
	Index     uint64 // write: its index; get: mod_index; cas failure: current mod_index
	CASFailed bool
}

type kvState struct {
	Present    bool
	Value      string
	Index      uint64
	IndexKnown bool
}

var absent = kvState{IndexKnown: true}

type cmpResult int

const (
	cmpNo cmpResult = iota
	cmpYes
	cmpMaybe
)

// compare evaluates the cas condition "mod_index == expect" on s.
func compare(s kvState, expect uint64) cmpResult {
	switch {
	case expect == 0 && s.Present, expect != 0 && !s.Present:
		return cmpNo
	case expect == 0 || s.IndexKnown && s.Index == expect:
		return cmpYes
	case s.IndexKnown:
		return cmpNo
	}
	return cmpMaybe
}

// withIndex checks an observed mod_index against s, or learns it.
func withIndex(s kvState, index uint64) []any {
	if s.IndexKnown {
		if s.Index != index {
			return nil
		}
		return []any{s}
	}
	s.Index, s.IndexKnown = index, true
	return []any{s}
}

func kvStep(state, input, output any) []any {
	s, in, out := state.(kvState), input.(kvInput), output.(kvOutput)
	if in.Op == "get" {
		switch {
		case !out.Present && !s.Present:
			return []any{s}
		case out.Present && s.Present && out.Value == s.Value:
			return withIndex(s, out.Index)
		}
		return nil
	}
	c := cmpYes
	if in.HasCAS {
		c = compare(s, in.CAS)
	}
	effect := func(index uint64, known bool) kvState {
		if in.Op == "del" {
			return absent
		}
		return kvState{Present: true, Value: in.Value, Index: index, IndexKnown: known}
	}
	switch {
	case out.Unknown:
		var next []any
		if c != cmpNo {
			next = append(next, effect(0, false))
		}
		if c != cmpYes {
			next = append(next, s)
		}
		return next
	case out.CASFailed:
		if c == cmpYes {
			return nil
		}
		if !s.Present {
			if out.Index != 0 {
				return nil
			}
			return []any{s}
		}
		if !s.IndexKnown && out.Index == in.CAS {
			return nil
		}
		return withIndex(s, out.Index)
	case c == cmpNo:
		return nil
	case in.Op == "del" && !out.Present: // 404: nothing to delete
		if s.Present {
			return nil
		}
		return []any{s}
	case in.Op == "del" && !s.Present:
		return nil
	}
	return []any{effect(out.Index, true)}
}

var kvModel = (&porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, o := range history {
			k := o.Input.(kvInput).Key
			byKey[k] = append(byKey[k], o)
		}
		var out [][]porcupine.Operation
		for _, k := range keysOf(byKey) {
			out = append(out, byKey[k])
		}
		return out
	},
	Init:  func() []any { return []any{absent} },
	Step:  kvStep,
	Equal: func(a, b any) bool { return a.(kvState) == b.(kvState) },
	Hash: func(s any) uint64 {
		st := s.(kvState)
		h := fnv.New64a()
		fmt.Fprintf(h, "%v|%s|%d|%v", st.Present, st.Value, st.Index, st.IndexKnown)
		return h.Sum64()
	},
	DescribeOperation: describeOp,
	DescribeState: func(s any) string {
		st := s.(kvState)
		switch {
		case !st.Present:
			return "absent"
		case st.IndexKnown:
			return fmt.Sprintf("%q@%d", st.Value, st.Index)
		}
		return fmt.Sprintf("%q@?", st.Value)
	},
}).ToModel()

func describeOp(input, output any) string {
	in, out := input.(kvInput), output.(kvOutput)
	var call string
	switch {
	case in.Op == "get":
		call = fmt.Sprintf("get(%s)", in.Key)
	case in.Op == "del":
		call = fmt.Sprintf("del(%s)", in.Key)
	default:
		call = fmt.Sprintf("put(%s, %q)", in.Key, in.Value)
	}
	if in.HasCAS {
		call += fmt.Sprintf(" if@%d", in.CAS)
	}
	switch {
	case out.Unknown:
		return call + " -> unknown"
	case out.CASFailed:
		return call + fmt.Sprintf(" -> cas_failed@%d", out.Index)
	case !out.Present && in.Op != "put":
		return call + " -> not found"
	case in.Op == "get":
		return call + fmt.Sprintf(" -> %q@%d", out.Value, out.Index)
	}
	return call + fmt.Sprintf(" -> ok@%d", out.Index)
}

// porcupineOps converts the recorded ops (set-keyspace writes are plain
// puts, each key its own small partition; bank ops become per-key ops, see
// bankOps).
func porcupineOps(ops []*op) []porcupine.Operation {
	var out []porcupine.Operation
	for _, o := range ops {
		if o.Outcome == outcomeFail || o.Outcome == outcomeUnknown && !o.isWrite() {
			continue
		}
		if o.Kind == opTxn || o.Kind == opScan {
			out = append(out, bankOps(o)...)
			continue
		}
		in := kvInput{Op: "put", Key: o.Key, Value: o.Value, HasCAS: o.HasCAS, CAS: o.CAS}
		switch o.Kind {
		case opGet:
			in.Op = "get"
		case opDel:
			in.Op = "del"
		}
		ret := o.Return
		output := kvOutput{Present: o.Present, Value: o.Out, Index: o.Index, CASFailed: o.CASFailed}
		if o.Outcome == outcomeUnknown {
			ret, output = math.MaxInt64, kvOutput{Unknown: true}
		}
		out = append(out, porcupine.Operation{ClientId: o.Client, Input: in, Call: o.Call, Output: output, Return: ret, Metadata: o.Node})
	}
	return out
}

// bankOps projects a bank op (ok or unknown) onto its keys, each part an
// op of the per-key model with the bank op's call and return:
//   - a range read: a get of every account (absent if not listed) showing
//     the listed value and mod_index;
//   - a transfer whose compares held: per key, a cas put of the new
//     balance on the mod_index the compare named (0: absent), applied at
//     the transaction's index;
//   - a transfer whose compares failed: the failure branch's gets;
//   - a transfer with an unknown outcome: per key, a cas put with an
//     unknown outcome (it may apply at any point after its call, or never).
//
// Soundness: the transaction is one log entry applied at one point, and a
// range read answers from one applied state, so in a linearizable run each
// key's projection is linearizable with every part at the op's point;
// hence a per-key history porcupine rejects is a real violation. The
// projection forgets that a transaction's parts apply together (an unknown
// transfer may apply on one key and not the other, in the model), which
// only makes the check accept more; the all-or-nothing property is what
// checkBank's total checks. Retried attempts of a transfer share an
// idempotency key, so the server applies the transfer at most once within
// the whole chain's span, which is the span recorded. A transfer applied
// but answered "compare failed" (e.g. a resend re-executed instead of
// replayed) is caught: its failure gets read the transfer's own tagged
// values, which no write in the history produced.
func bankOps(o *op) []porcupine.Operation {
	var out []porcupine.Operation
	add := func(in kvInput, output kvOutput, ret int64) {
		out = append(out, porcupine.Operation{ClientId: o.Client, Input: in, Call: o.Call, Output: output, Return: ret, Metadata: o.Node})
	}
	switch {
	case o.Kind == opScan:
		for _, p := range o.Bank {
			add(kvInput{Op: "get", Key: p.Key}, kvOutput{Present: p.Present, Value: p.Value, Index: p.Index}, o.Return)
		}
	case o.Outcome == outcomeUnknown:
		for _, p := range o.Bank {
			add(kvInput{Op: "put", Key: p.Key, Value: p.Value, HasCAS: true, CAS: p.CAS}, kvOutput{Unknown: true}, math.MaxInt64)
		}
	case o.Succeeded:
		for _, p := range o.Bank {
			add(kvInput{Op: "put", Key: p.Key, Value: p.Value, HasCAS: true, CAS: p.CAS}, kvOutput{Present: true, Index: o.Index}, o.Return)
		}
	default:
		for _, p := range o.Reads {
			add(kvInput{Op: "get", Key: p.Key}, kvOutput{Present: p.Present, Value: p.Value, Index: p.Index}, o.Return)
		}
	}
	return out
}

// checkLinearizable (C1) runs porcupine; anything but Ok is a failure.
func checkLinearizable(ops []*op, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo, time.Duration) {
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(kvModel, porcupineOps(ops), timeout)
	return res, info, time.Since(start)
}

// setCheck (C2) compares the set keyspace with the final reads: every
// acknowledged key must be present and every key whose write definitely
// failed absent; unknown writes may be either.
type setCheck struct {
	acked, failed, unknown int
	lost, phantom          []string
	unreadable             []string
}

func (s setCheck) problems() []string {
	var out []string
	if len(s.lost) > 0 {
		out = append(out, fmt.Sprintf("C2: %d acknowledged writes lost: %s", len(s.lost), strings.Join(first(s.lost, 10), ", ")))
	}
	if len(s.phantom) > 0 {
		out = append(out, fmt.Sprintf("C2: %d writes answered as not applied are present: %s", len(s.phantom), strings.Join(first(s.phantom, 10), ", ")))
	}
	if len(s.unreadable) > 0 {
		out = append(out, fmt.Sprintf("C2: %d keys could not be read: %s", len(s.unreadable), strings.Join(first(s.unreadable, 10), ", ")))
	}
	return out
}

func (w *workload) checkSet(timeout time.Duration) setCheck {
	var sc setCheck
	deadline := time.Now().Add(timeout)
	for _, o := range w.h.snapshot() {
		if o.Kind != opSet || o.Client == w.checker.id {
			continue
		}
		switch o.Outcome {
		case outcomeOK:
			sc.acked++
		case outcomeFail:
			sc.failed++
		default:
			sc.unknown++
		}
		r := w.finalRead(o.Key, deadline)
		switch {
		case r == nil:
			sc.unreadable = append(sc.unreadable, o.Key)
		case o.Outcome == outcomeOK && !r.Present:
			sc.lost = append(sc.lost, fmt.Sprintf("%s (acknowledged by %s at index %d)", o.Key, o.Node, o.Index))
		case o.Outcome == outcomeFail && r.Present:
			sc.phantom = append(sc.phantom, fmt.Sprintf("%s (%d %s %s via %s)", o.Key, o.Status, o.Code, o.Err, o.Node))
		}
	}
	return sc
}

// window is a stretch of the history in which some nodes had no quorum.
type window struct {
	start, end time.Duration // since the history began
	minority   []string      // node ids
}

// minorityGrace lets answers already on the wire when the fault began
// land before the window's rules apply.
const minorityGrace = 300 * time.Millisecond

// minorityBound is the longest a request to a live minority node may take
// (C5): the server's deadline plus the documented second for a forward,
// plus scheduling slack for two busy cores.
const minorityBound = requestTimeout + time.Second + 500*time.Millisecond

// checkMinority (C5): requests sent to a minority node within a window
// never get a definite write outcome or a linearizable read answer, and
// come back within minorityBound.
func checkMinority(ops []*op, windows []window) (problems []string, checked int) {
	for _, wdw := range windows {
		from, to := (wdw.start + minorityGrace).Nanoseconds(), wdw.end.Nanoseconds()
		for _, o := range ops {
			if !slices.Contains(wdw.minority, o.Node) || o.Call < from || o.Call > to || o.Attempts != 1 {
				continue
			}
			checked++
			took := time.Duration(o.Return - o.Call)
			if o.Outcome == outcomeOK && o.Return <= to {
				problems = append(problems, fmt.Sprintf("C5: %s %s via minority node %s answered %d (%s) inside the no-quorum window: %s",
					o.Kind, o.Key, o.Node, o.Status, o.Code, opString(o)))
			}
			if took > minorityBound && o.Call+minorityBound.Nanoseconds() < to {
				problems = append(problems, fmt.Sprintf("C5: %s %s via minority node %s took %v (bound %v): %s",
					o.Kind, o.Key, o.Node, took.Round(time.Millisecond), minorityBound, opString(o)))
			}
		}
	}
	return problems, checked
}

// unexpectedStatuses lists ops answered with a status the contract does
// not allow for them (a 400 for a well-formed request, a 500, …).
func unexpectedStatuses(ops []*op) []string {
	var out []string
	for _, o := range ops {
		if o.Unexpected {
			out = append(out, "unexpected status: "+opString(o))
		}
	}
	return first(out, 10)
}

// maxWriteGap is the longest time without an acknowledged write while the
// workload ran (from start to stop, ns since the history began).
func maxWriteGap(ops []*op, start, stop int64) time.Duration {
	rets := []int64{start, stop}
	for _, o := range ops {
		if o.isWrite() && o.Outcome == outcomeOK && o.Return > start && o.Return < stop {
			rets = append(rets, o.Return)
		}
	}
	slices.Sort(rets)
	var gap int64
	for i := 1; i < len(rets); i++ {
		gap = max(gap, rets[i]-rets[i-1])
	}
	return time.Duration(gap)
}

type counts struct{ total, ok, fail, unknown int }

func countOps(ops []*op) counts {
	var c counts
	for _, o := range ops {
		c.total++
		switch o.Outcome {
		case outcomeOK:
			c.ok++
		case outcomeFail:
			c.fail++
		default:
			c.unknown++
		}
	}
	return c
}

func opString(o *op) string {
	s := fmt.Sprintf("[client %d %s %s key=%s", o.Client, o.Node, o.Kind, o.Key)
	if o.Value != "" {
		s += fmt.Sprintf(" value=%q", o.Value)
	}
	if o.HasCAS {
		s += fmt.Sprintf(" cas=%d", o.CAS)
	}
	s += fmt.Sprintf(" call=%v return=%v %s status=%d", time.Duration(o.Call).Round(time.Millisecond),
		time.Duration(o.Return).Round(time.Millisecond), o.Outcome, o.Status)
	if o.Code != "" {
		s += " code=" + o.Code
	}
	if o.Err != "" {
		s += " err=" + o.Err
	}
	return s + "]"
}

func first[T any](s []T, n int) []T { return s[:min(n, len(s))] }

// sortOps orders ops by call time (for artifacts).
func sortOps(ops []*op) {
	slices.SortStableFunc(ops, func(a, b *op) int { return cmp.Compare(a.Call, b.Call) })
}
