package main

// Keys: get, put, del, ls.

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

// clientCommand marks cmd as one that talks to a cluster (its help lists
// the global flags) and returns it.
func clientCommand(cmd *cobra.Command, group string) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[annotationClient] = "yes"
	cmd.GroupID = group
	return cmd
}

func (a *app) getCommand() *cobra.Command {
	var consistency string
	var minIndex uint64
	cmd := &cobra.Command{
		Use:               "get KEY",
		ValidArgsFunction: a.completeKeys,
		Short:             "print a key's value (exit 3 if there is none)",
		Long: `Prints the value of KEY exactly as stored (raw bytes; a newline is added only
when standard output is a terminal). With -o json prints the key as the API's
/get does: {"key","value" (or "value_base64"),"create_index","mod_index","ttl"
(ms left),"lease"}. A missing key prints an error and exits 3.`,
		Example: `  raftkv get color
  raftkv get color --consistency stale -o json
  if raftkv get jobs/42 >/dev/null 2>&1; then echo exists; fi`,
		Args: exactArgs("KEY"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			var opts []client.ReadOption
			switch c := client.Consistency(consistency); c {
			case client.Linearizable, client.Leader, client.Stale:
				opts = append(opts, client.WithConsistency(c))
			default:
				return usageError("--consistency %q: want linearizable, leader or stale", consistency)
			}
			if minIndex > 0 {
				opts = append(opts, client.WithMinIndex(minIndex))
			}
			return a.withClient(cmd, func(c *client.Client, ctx context.Context) error {
				kv, err := c.Get(ctx, args[0], opts...)
				if err != nil {
					return err
				}
				if a.g.json() {
					return printJSON(a.stdout, toKVJSON(*kv, true))
				}
				if _, err := a.stdout.Write(kv.Value); err != nil {
					return err
				}
				if isTerminal(a.stdout) && (len(kv.Value) == 0 || kv.Value[len(kv.Value)-1] != '\n') {
					fmt.Fprintln(a.stdout)
				}
				return nil
			})
		}),
	}
	cmd.Flags().StringVar(&consistency, "consistency", string(client.Linearizable), "linearizable, leader or stale (docs/api.md, Read consistency)")
	cmd.Flags().Uint64Var(&minIndex, "min-index", 0, "with stale: wait until the node has applied this index (read your own writes)")
	_ = cmd.RegisterFlagCompletionFunc("consistency", cobra.FixedCompletions([]cobra.Completion{"linearizable", "leader", "stale"}, cobra.ShellCompDirectiveNoFileComp))
	return clientCommand(cmd, groupKV)
}

// writeOptions turns --cas, --ttl and --lease into the client's options.
func writeOptions(cmd *cobra.Command, cas uint64, ttl time.Duration, lease uint64) ([]client.WriteOption, error) {
	var opts []client.WriteOption
	if isSet(cmd, "cas") {
		opts = append(opts, client.WithCAS(cas))
	}
	if isSet(cmd, "ttl") && isSet(cmd, "lease") {
		return nil, usageError("--ttl and --lease exclude each other (a key with a TTL has a lease of its own)")
	}
	if isSet(cmd, "ttl") {
		if ttl <= 0 {
			return nil, usageError("--ttl %v: want a positive duration", ttl)
		}
		opts = append(opts, client.WithTTL(ttl))
	}
	if isSet(cmd, "lease") {
		opts = append(opts, client.WithLease(lease))
	}
	return opts, nil
}

// indexJSON is a write's answer under -o json.
type indexJSON struct {
	Key   string `json:"key"`
	Index uint64 `json:"index"`
}

func (a *app) putCommand() *cobra.Command {
	var (
		cas, lease uint64
		ttl        time.Duration
	)
	cmd := &cobra.Command{
		Use:               "put KEY [VALUE|-]",
		ValidArgsFunction: a.completeKeys,
		Short:             "write a key (the value from standard input when omitted or -)",
		Long: `Writes VALUE to KEY, or the bytes of standard input when VALUE is omitted or
"-" (binary safe). Prints the write's log index ({"key","index"} with -o json).
--cas N writes only if the key's mod_index is N (0: only if absent); otherwise
nothing is written and the exit status is 4.`,
		Example: `  raftkv put color blue
  raftkv put users/7/photo < photo.jpg
  raftkv put workers/3 up --ttl 10s
  raftkv put config/limit 20 --cas 12 || echo "changed meanwhile"`,
		Args: rangeArgs(1, 2, "KEY [VALUE|-]"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			opts, err := writeOptions(cmd, cas, ttl, lease)
			if err != nil {
				return err
			}
			var value []byte
			if len(args) == 2 && args[1] != "-" {
				value = []byte(args[1])
			} else {
				if isTerminal(a.stdin) {
					fmt.Fprintln(a.stderr, "raftkv put: reading the value from standard input; end it with Ctrl-D")
				}
				if value, err = io.ReadAll(a.stdin); err != nil {
					return fmt.Errorf("reading the value from standard input: %w", err)
				}
			}
			return a.withClient(cmd, func(c *client.Client, ctx context.Context) error {
				index, err := c.Put(ctx, args[0], value, opts...)
				if err != nil {
					return err
				}
				return a.printResult(a.stdout, indexJSON{Key: args[0], Index: index}, "OK index %d", index)
			})
		}),
	}
	cmd.Flags().Uint64Var(&cas, "cas", 0, "write only if the key's mod_index is this (0: only if absent)")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "the key expires this long after its last write (1s..24h)")
	cmd.Flags().Uint64Var(&lease, "lease", 0, "attach the key to this lease (raftkv lease grant)")
	return clientCommand(cmd, groupKV)
}

// deletedJSON is `del --prefix -o json`'s answer.
type deletedJSON struct {
	Prefix  string `json:"prefix"`
	Deleted int64  `json:"deleted"`
	Index   uint64 `json:"index"`
}

func (a *app) delCommand() *cobra.Command {
	var (
		prefix bool
		cas    uint64
	)
	cmd := &cobra.Command{
		Use:               "del [--prefix] [--cas N] KEY|PREFIX",
		ValidArgsFunction: a.completeKeys,
		Aliases:           []string{"delete", "rm"},
		Short:             "delete a key (exit 3 if there is none), or every key under a prefix",
		Long: `Deletes KEY and prints the delete's log index ({"key","index"} with -o json);
a missing key exits 3. With --prefix deletes every key under PREFIX in one log
entry and prints how many ({"prefix","deleted","index"}); none is not an error.
--cas N deletes KEY only if its mod_index is N (else exit 4).`,
		Example: `  raftkv del color
  raftkv del --prefix users/7/`,
		DisableFlagsInUseLine: true,
		Args:                  exactArgs("KEY"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if prefix && isSet(cmd, "cas") {
				return usageError("--cas applies to one key, not --prefix")
			}
			if prefix && args[0] == "" {
				return usageError("--prefix needs a non-empty prefix")
			}
			return a.withClient(cmd, func(c *client.Client, ctx context.Context) error {
				if prefix {
					n, index, err := c.DeletePrefix(ctx, args[0])
					if err != nil {
						return err
					}
					return a.printResult(a.stdout, deletedJSON{Prefix: args[0], Deleted: n, Index: index}, "deleted %d keys, index %d", n, index)
				}
				var opts []client.WriteOption
				if isSet(cmd, "cas") {
					opts = append(opts, client.WithCAS(cas))
				}
				index, err := c.Delete(ctx, args[0], opts...)
				if err != nil {
					return err
				}
				return a.printResult(a.stdout, indexJSON{Key: args[0], Index: index}, "deleted, index %d", index)
			})
		}),
	}
	cmd.Flags().BoolVar(&prefix, "prefix", false, "delete every key under the argument, in one log entry")
	cmd.Flags().Uint64Var(&cas, "cas", 0, "delete only if the key's mod_index is this")
	return clientCommand(cmd, groupKV)
}

// listJSON is `ls -o json`'s answer.
type listJSON struct {
	Items    []kvJSON `json:"items"`
	Prefixes []string `json:"prefixes,omitempty"`
	Index    uint64   `json:"index"`
}

// lsValueWidth bounds a value in ls's table (runes).
const lsValueWidth = 48

func (a *app) lsCommand() *cobra.Command {
	var (
		keysOnly  bool
		separator string
	)
	cmd := &cobra.Command{
		Use:               "ls [PREFIX]",
		ValidArgsFunction: a.completeKeys,
		Aliases:           []string{"list"},
		Short:             "list the keys under a prefix, as a table",
		Long: `Lists the keys under PREFIX (all keys when omitted) in key order, every page
read at one index. The table has KEY, VALUE (cut to 48 characters; quoted when
not plain text), MOD (mod_index), TTL and LEASE; --keys prints only the keys.
--separator / shows one level: the keys directly under PREFIX, and the deeper
prefixes as rows ending in the separator. -o json prints {"items":[...],
"prefixes":[...],"index"}, each item as get -o json prints a key.`,
		Example: `  raftkv ls users/
  raftkv ls users/ --separator /
  raftkv ls --keys -o json`,
		Args: rangeArgs(0, 1, "at most one PREFIX"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			var opts []client.ListOption
			if keysOnly {
				opts = append(opts, client.WithKeysOnly())
			}
			if separator != "" {
				opts = append(opts, client.WithSeparator(separator))
			}
			return a.withClient(cmd, func(c *client.Client, ctx context.Context) error {
				res, err := c.List(ctx, prefix, opts...)
				if err != nil {
					return err
				}
				if a.g.json() {
					out := listJSON{Items: []kvJSON{}, Prefixes: res.Prefixes, Index: res.Index}
					for _, kv := range res.Items {
						out.Items = append(out.Items, toKVJSON(kv, !keysOnly))
					}
					return printJSON(a.stdout, out)
				}
				return printList(a.stdout, res, keysOnly)
			})
		}),
	}
	cmd.Flags().BoolVar(&keysOnly, "keys", false, "keys only, no values")
	cmd.Flags().StringVar(&separator, "separator", "", "one level: group the keys below the next separator into prefixes")
	return clientCommand(cmd, groupKV)
}

// printList writes a listing's table: keys and prefixes merged in key
// order; a prefix's other cells are empty.
func printList(w io.Writer, res *client.ListResult, keysOnly bool) error {
	type row struct {
		key string
		kv  *client.KeyValue
	}
	rows := make([]row, 0, len(res.Items)+len(res.Prefixes))
	for i := range res.Items {
		rows = append(rows, row{key: res.Items[i].Key, kv: &res.Items[i]})
	}
	for _, p := range res.Prefixes {
		rows = append(rows, row{key: p})
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].key < rows[j].key })
	if keysOnly {
		for _, r := range rows {
			fmt.Fprintln(w, printable([]byte(r.key), 0))
		}
		return nil
	}
	if len(rows) == 0 {
		return nil // nothing under the prefix: no table, as ls of an empty directory
	}
	t := newTable(w, "KEY", "VALUE", "MOD", "TTL", "LEASE")
	for _, r := range rows {
		if r.kv == nil {
			t.row(printable([]byte(r.key), 0), "", "", "", "")
			continue
		}
		t.row(printable([]byte(r.key), 0), printable(r.kv.Value, lsValueWidth), strconv.FormatUint(r.kv.ModIndex, 10), ms(r.kv.TTL), num(r.kv.Lease))
	}
	return t.flush()
}

// completionTimeout bounds the listing a key completion makes: a shell
// waits on it.
const completionTimeout = 2 * time.Second

// completeKeys completes a command's first argument with the keys and the
// next-level prefixes (to "/") under what was typed so far, from the
// cluster of the command's flags and environment; nothing when it does
// not answer within completionTimeout.
func (a *app) completeKeys(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := a.client(cmd)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
	defer cancel()
	res, err := c.List(ctx, toComplete, client.WithKeysOnly(), client.WithSeparator("/"))
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	out := make([]cobra.Completion, 0, len(res.Items)+len(res.Prefixes))
	for _, kv := range res.Items {
		out = append(out, kv.Key)
	}
	directive := cobra.ShellCompDirectiveNoFileComp
	if len(res.Prefixes) > 0 {
		out = append(out, res.Prefixes...)
		directive |= cobra.ShellCompDirectiveNoSpace // a prefix is typed on
	}
	return out, directive
}
