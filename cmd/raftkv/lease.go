package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

// leaseJSON is a lease under -o json: the API's /leases answers, times in
// milliseconds.
type leaseJSON struct {
	ID         uint64   `json:"id"`
	TTL        int64    `json:"ttl"`                   // ms left (grant, keepalive: the whole TTL)
	GrantedTTL int64    `json:"granted_ttl,omitempty"` // show: the lease's TTL
	Keys       []string `json:"keys,omitempty"`        // show: at most 1,000
	KeyCount   int      `json:"key_count,omitempty"`   // show: all of them
	Index      uint64   `json:"index,omitempty"`
}

func toLeaseJSON(l *client.Lease) leaseJSON {
	return leaseJSON{ID: l.ID, TTL: l.TTL.Milliseconds(), GrantedTTL: l.GrantedTTL.Milliseconds(), Keys: l.Keys, KeyCount: l.KeyCount, Index: l.Index}
}

// leaseID parses a lease id argument (decimal, as the API gives it).
func leaseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usageError("lease id %q: want a positive decimal number (raftkv lease grant prints one)", s)
	}
	return id, nil
}

// withLease runs f with the lease id arg names (leaseID: a usage error
// when it is not one) and the client and context of withClient.
func (a *app) withLease(cmd *cobra.Command, arg string, f func(c *client.Client, ctx context.Context, id uint64) error) error {
	id, err := leaseID(arg)
	if err != nil {
		return err
	}
	return a.withClient(cmd, func(c *client.Client, ctx context.Context) error { return f(c, ctx, id) })
}

func (a *app) leaseCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lease",
		Short: "grant, keep alive, revoke or show a lease",
		Long: `A lease is a TTL shared by a group of keys (put --lease ID): when it expires or
is revoked, its keys are deleted together (docs/api.md, TTLs, leases and locks).`,
		Args: noArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return usageError("lease needs a command: grant, keepalive, revoke or show")
		}),
	}
	cmd.AddCommand(a.leaseGrantCommand(), a.leaseKeepAliveCommand(), a.leaseRevokeCommand(), a.leaseShowCommand())
	return clientCommand(cmd, groupCoord)
}

func (a *app) leaseGrantCommand() *cobra.Command {
	return clientCommand(&cobra.Command{
		Use:     "grant TTL",
		Short:   "grant a lease of TTL (a duration, 1s..24h); prints its id",
		Example: `  id=$(raftkv lease grant 30s -o json | jq .id)`,
		Args:    exactArgs("TTL"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			ttl, err := parseTTL(args[0])
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(c *client.Client, ctx context.Context) error {
				l, err := c.Grant(ctx, ttl)
				if err != nil {
					return err
				}
				return a.printResult(a.stdout, toLeaseJSON(l), "lease %d granted with TTL %v", l.ID, l.TTL)
			})
		}),
	}, "")
}

// parseTTL takes a Go duration or whole seconds, as the API does.
func parseTTL(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, usageError("TTL %q: want a duration such as 30s or whole seconds", s)
	}
	return d, nil
}

func (a *app) leaseKeepAliveCommand() *cobra.Command {
	var once bool
	cmd := &cobra.Command{
		Use:   "keepalive ID",
		Short: "refresh a lease every third of its TTL until interrupted (--once: once)",
		Long: `Refreshes the lease ID every third of its TTL until SIGINT or SIGTERM (exit 0),
or until the lease is gone (exit 3: it expired or was revoked). --once
refreshes it once and prints its TTL.`,
		Args: exactArgs("ID"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			id, err := leaseID(args[0])
			if err != nil {
				return err
			}
			if once {
				return a.withClient(cmd, func(c *client.Client, ctx context.Context) error {
					l, err := c.KeepAliveOnce(ctx, id)
					if err != nil {
						return err
					}
					return a.printResult(a.stdout, toLeaseJSON(l), "lease %d refreshed, TTL %v", l.ID, l.TTL)
				})
			}
			return a.withClientIn(cmd, signalContext, func(c *client.Client, ctx context.Context) error {
				// The first refresh shows at once whether the lease exists.
				tctx, tcancel := a.context(cmd)
				l, err := c.KeepAliveOnce(tctx, id)
				tcancel()
				if err != nil {
					return err
				}
				if !a.g.json() {
					fmt.Fprintf(a.stdout, "keeping lease %d (TTL %v) alive until interrupted\n", id, l.TTL)
				}
				errs := c.KeepAlive(ctx, id)
				for err := range errs {
					if err != nil && ctx.Err() == nil {
						return err
					}
				}
				return nil
			})
		}),
	}
	cmd.Flags().BoolVar(&once, "once", false, "refresh once and exit")
	return clientCommand(cmd, "")
}

func (a *app) leaseRevokeCommand() *cobra.Command {
	return clientCommand(&cobra.Command{
		Use:   "revoke ID",
		Short: "revoke a lease now: its keys are deleted (exit 3 if it is gone)",
		Args:  exactArgs("ID"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.withLease(cmd, args[0], func(c *client.Client, ctx context.Context, id uint64) error {
				n, err := c.Revoke(ctx, id)
				if err != nil {
					return err
				}
				return a.printResult(a.stdout, struct {
					ID      uint64 `json:"id"`
					Deleted int64  `json:"deleted"`
				}{id, n}, "lease %d revoked, %d keys deleted", id, n)
			})
		}),
	}, "")
}

func (a *app) leaseShowCommand() *cobra.Command {
	return clientCommand(&cobra.Command{
		Use:   "show ID",
		Short: "show a lease's time left and keys (exit 3 if it is gone)",
		Args:  exactArgs("ID"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.withLease(cmd, args[0], func(c *client.Client, ctx context.Context, id uint64) error {
				l, err := c.LeaseInfo(ctx, id)
				if err != nil {
					return err
				}
				if a.g.json() {
					return printJSON(a.stdout, toLeaseJSON(l))
				}
				fmt.Fprintf(a.stdout, "lease %d: TTL %v left of %v, %d keys\n", l.ID, l.TTL.Round(time.Millisecond), l.GrantedTTL, l.KeyCount)
				if len(l.Keys) > 0 {
					fmt.Fprintln(a.stdout, "  "+strings.Join(l.Keys, "\n  "))
				}
				return nil
			})
		}),
	}, "")
}
