package main

import (
	"context"
	"errors"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

// eventJSON is one line of `watch -o json`: the API's event data with its
// type and position.
type eventJSON struct {
	Type         string  `json:"type"`
	ID           string  `json:"id"`
	Index        uint64  `json:"index"`
	Key          string  `json:"key"`
	Value        *string `json:"value,omitempty"`
	ValueBase64  *string `json:"value_base64,omitempty"`
	CreateIndex  uint64  `json:"create_index,omitempty"`
	ModIndex     uint64  `json:"mod_index,omitempty"`
	PrevModIndex uint64  `json:"prev_mod_index,omitempty"`
}

// signalContext is cmd's context ended also by SIGINT or SIGTERM: how a
// long-running command (watch, lease keepalive) is stopped, with status 0.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
}

func (a *app) watchCommand() *cobra.Command {
	var (
		index string
		count int
	)
	cmd := &cobra.Command{
		Use:               "watch [PREFIX]",
		ValidArgsFunction: a.completeKeys,
		Short:             "print the changes under a prefix, one line each, until interrupted",
		Long: `Prints every change under PREFIX (all keys when omitted) as it is applied, one
line per event: its position (N.S), its type (put, delete, expire), the key
and, for a put, the value (quoted when not plain text). It follows the cluster
across node failures: when its node goes away it resumes on another endpoint
from the last event it printed, so nothing is lost or repeated. It runs until
SIGINT or SIGTERM (status 0) or, with --count, until it printed that many
events. --timeout does not apply.

--index N (or N.S) starts strictly after that position, e.g. the index of a
listing, so a list followed by a watch misses nothing. If the nodes no longer
keep the history from there, it prints an error and exits 1: list again and
watch from the listing's index.

-o json prints one JSON object a line: {"type","id","index","key","value"
(or "value_base64"),"create_index","mod_index","prev_mod_index"}.`,
		Example: `  raftkv watch users/
  raftkv watch config/ --index 1200 -o json
  raftkv watch jobs/ --count 1     # wait for the next change`,
		Args: rangeArgs(0, 1, "at most one PREFIX"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if count < 0 {
				return usageError("--count %d: want 0 (no limit) or more", count)
			}
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			var opts []client.WatchOption
			if index != "" {
				opts = append(opts, client.WithStartIndex(index))
			}
			return a.withClientIn(cmd, signalContext, func(c *client.Client, ctx context.Context) error {
				events := c.Watch(ctx, prefix, opts...)
				printed := 0
				for ev := range events {
					if ev.Type == client.EventReset || ev.Err != nil {
						err := ev.Err
						if err == nil {
							err = errors.New("the watch was reset")
						}
						return fmt.Errorf("%s; list again, then watch from the listing's index", describe(err))
					}
					if ev.Type == client.EventProgress {
						continue
					}
					if err := a.printEvent(ev); err != nil {
						return err
					}
					if printed++; count > 0 && printed >= count {
						return nil
					}
				}
				if ctx.Err() != nil {
					return nil // interrupted: the normal end
				}
				return errors.New("the watch ended")
			})
		}),
	}
	cmd.Flags().StringVar(&index, "index", "", "start strictly after this position (N or N.S)")
	cmd.Flags().IntVar(&count, "count", 0, "exit 0 after this many events (0: run until interrupted)")
	return clientCommand(cmd, groupKV)
}

func (a *app) printEvent(ev client.Event) error {
	if a.g.json() {
		out := eventJSON{Type: string(ev.Type), ID: ev.ID, Index: ev.Index, Key: ev.Key,
			CreateIndex: ev.CreateIndex, ModIndex: ev.ModIndex, PrevModIndex: ev.PrevModIndex}
		if ev.Type == client.EventPut {
			out.Value, out.ValueBase64 = jsonValue(ev.Value)
		}
		return printJSON(a.stdout, out)
	}
	line := fmt.Sprintf("%s %s %s", ev.ID, ev.Type, printable([]byte(ev.Key), 0))
	if ev.Type == client.EventPut {
		line += " " + printable(ev.Value, 0)
	}
	_, err := fmt.Fprintln(a.stdout, line)
	return err
}
