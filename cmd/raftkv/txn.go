package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

// maxTxnFile bounds what txn reads: the server refuses a /txn body over
// 4 MiB (docs/api.md, Status codes), so a bigger file cannot succeed.
const maxTxnFile = 4 << 20

func (a *app) txnCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "txn [-f FILE|-]",
		Short: "run a transaction given as the JSON of POST /txn (exit 4 if its compares failed)",
		Long: `Runs one transaction: compares, then the success operations if every compare
holds, else the failure operations, all or none (docs/api.md, Transactions).
It reads the transaction from FILE, or standard input when -f is omitted or
"-", as the JSON body of POST /txn: {"compare":[...],"success":[...],
"failure":[...]}. An unknown field, a second JSON value or a file over 4 MiB is
refused (exit 2) before anything is sent.

Prints SUCCEEDED or FAILED with the index and one line per result; -o json
prints the server's answer as is ({"succeeded","index","results":[...]}). Exit
status 4 when the compares failed (the failure branch ran), so a script can
tell; 0 when they held.`,
		Example: `  raftkv txn -f move.json
  echo '{"compare":[{"key":"lock","target":"create_index","op":"=","create_index":0}],
        "success":[{"op":"put","key":"lock","value":"me"}]}' | raftkv txn`,
		Args: noArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			in, err := a.stdinOr(file)
			if err != nil {
				return err
			}
			body, err := io.ReadAll(io.LimitReader(in, maxTxnFile+1))
			in.Close()
			if err != nil {
				return err
			}
			txn, err := decodeTxn(body)
			if err != nil {
				return &exitErr{code: exitUsage, err: err} // bad input, not a bad command line
			}
			return a.withClient(cmd, func(c *client.Client, ctx context.Context) error {
				res, err := c.Txn(ctx, txn)
				if err != nil {
					return err
				}
				if a.g.json() {
					raw := bytes.TrimSpace(res.Raw)
					if _, err := fmt.Fprintf(a.stdout, "%s\n", raw); err != nil {
						return err
					}
				} else {
					printTxn(a.stdout, res)
				}
				if !res.Succeeded {
					return exitCode(exitCompareFailed)
				}
				return nil
			})
		}),
	}
	cmd.Flags().StringVarP(&file, "file", "f", "-", "the transaction's JSON (-: standard input)")
	return clientCommand(cmd, groupKV)
}

// decodeTxn reads one transaction strictly: unknown fields and trailing
// data are errors, so a typo ("sucess") is not silently an empty branch.
func decodeTxn(body []byte) (client.Txn, error) {
	var txn client.Txn
	if len(body) > maxTxnFile {
		return txn, fmt.Errorf("the transaction is over %d bytes, the server's limit", maxTxnFile)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&txn); err != nil {
		if errors.Is(err, io.EOF) {
			return txn, errors.New("no transaction: the input is empty")
		}
		return txn, fmt.Errorf("the transaction is not valid JSON of POST /txn: %w", err)
	}
	if dec.More() {
		return txn, errors.New("the transaction is followed by more data: give one JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return txn, errors.New("the transaction is followed by more data: give one JSON object")
	}
	return txn, nil
}

// printTxn writes a transaction's outcome for people: SUCCEEDED or FAILED
// and the index, then one line per result.
func printTxn(w io.Writer, res *client.TxnResponse) {
	outcome := "SUCCEEDED"
	if !res.Succeeded {
		outcome = "FAILED"
	}
	fmt.Fprintf(w, "%s index %d\n", outcome, res.Index)
	for _, r := range res.Results {
		fmt.Fprintln(w, txnResultLine(r))
	}
}

// txnResultLine is one result of a transaction for people.
func txnResultLine(r client.OpResult) string {
	switch r.Op {
	case "put":
		return fmt.Sprintf("put %s index %d", printable([]byte(r.Key), 0), r.Index)
	case "delete":
		return fmt.Sprintf("delete %s deleted %d", printable([]byte(r.Key), 0), r.Deleted)
	case "delete_prefix":
		return fmt.Sprintf("delete_prefix %s deleted %d", printable([]byte(r.Prefix), 0), r.Deleted)
	case "get":
		if !r.Found {
			return fmt.Sprintf("get %s not found", printable([]byte(r.Key), 0))
		}
		return fmt.Sprintf("get %s = %s (mod %d)", printable([]byte(r.Key), 0), printable(r.Value, 0), r.ModIndex)
	case "list":
		var b strings.Builder
		fmt.Fprintf(&b, "list %s: %d keys", printable([]byte(r.Prefix), 0), len(r.Items))
		if r.More {
			b.WriteString(" (more)")
		}
		for _, kv := range r.Items {
			fmt.Fprintf(&b, "\n  %s = %s (mod %d)", printable([]byte(kv.Key), 0), printable(kv.Value, 0), kv.ModIndex)
		}
		return b.String()
	}
	return r.Op
}
