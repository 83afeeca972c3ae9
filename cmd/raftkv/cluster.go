package main

// The cluster: members (list, add, promote, remove, transfer), status,
// backup and the online restore.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

func optNum(p *uint64) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatUint(*p, 10)
}

func (a *app) membersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "members",
		Aliases: []string{"member"},
		Short:   "list the members; add, promote, remove them, move leadership",
		Long: `Lists the members as the leader sees them (GET /nodes): id, Raft state,
suffrage, whether it answers, its addresses, and its replication (match and
applied index, lag behind the leader's log). -o json prints the API's rows:
[{"id","raft_addr","http_addr","voter","suffrage","leader","reachable","state",
"last_contact_ms","match_index","applied_index","lag","term","commit_index"}].`,
		Args: noArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.withClient(cmd, func(c *client.Client, ctx context.Context) error {
				ms, err := c.Members(ctx)
				if err != nil {
					return err
				}
				if a.g.json() {
					return printJSON(a.stdout, ms) // client.Member writes the API's /nodes row
				}
				t := newTable(a.stdout, "ID", "STATE", "SUFFRAGE", "REACHABLE", "RAFT ADDR", "HTTP ADDR", "MATCH", "APPLIED", "LAG")
				for _, m := range ms {
					state := m.State
					if state == "" {
						state = "-"
					}
					t.row(m.ID, state, m.Suffrage, strconv.FormatBool(m.Reachable), m.RaftAddr, orDash(m.HTTPAddr),
						optNum(m.MatchIndex), optNum(m.AppliedIndex), optNum(m.Lag))
				}
				return t.flush()
			})
		}),
	}
	cmd.AddCommand(a.membersAddCommand(), a.membersPromoteCommand(), a.membersRemoveCommand(), a.membersTransferCommand())
	return clientCommand(cmd, groupCluster)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// changeJSON is the answer of a membership change under -o json.
type changeJSON struct {
	Change string `json:"change"` // added, promoted, removed, transferred
	ID     string `json:"id,omitempty"`
	Leader string `json:"leader,omitempty"` // transfer: the leader after it
}

func (a *app) printChange(ch changeJSON, human string) error {
	if a.g.json() {
		return printJSON(a.stdout, ch)
	}
	_, err := fmt.Fprintln(a.stdout, human)
	return err
}

func (a *app) membersAddCommand() *cobra.Command {
	var (
		httpAddr string
		learner  bool
	)
	cmd := &cobra.Command{
		Use:   "add ID RAFTADDR",
		Short: "add the node ID whose Raft transport is at RAFTADDR (host:port)",
		Long: `Adds the node ID, whose Raft transport listens at RAFTADDR (host:port), to the
cluster (POST /join). It joins as a learner and the leader makes it a voter
once it has caught up; --learner keeps it a learner (members promote ID later).
--http-addr gives its HTTP address (needed to add back a node removed before).`,
		Example: `  raftkv members add n4 10.0.0.4:9000 --http-addr 10.0.0.4:8000
  raftkv members add n5 127.0.0.1:9004 --learner`,
		Args: exactArgs("ID", "RAFTADDR"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(c *client.Client, ctx context.Context) error {
				if err := c.AddMember(ctx, args[0], args[1], httpAddr, !learner); err != nil {
					return err
				}
				how := "as a learner; the leader makes it a voter once it has caught up"
				if learner {
					how = "as a learner (raftkv members promote " + args[0] + " makes it a voter)"
				}
				return a.printChange(changeJSON{Change: "added", ID: args[0]}, fmt.Sprintf("added %s %s", args[0], how))
			})
		}),
	}
	cmd.Flags().StringVar(&httpAddr, "http-addr", "", "the node's HTTP address (host:port)")
	cmd.Flags().BoolVar(&learner, "learner", false, "keep it a learner: a non-voting member")
	return clientCommand(cmd, "")
}

func (a *app) membersPromoteCommand() *cobra.Command {
	return clientCommand(&cobra.Command{
		Use:   "promote ID",
		Short: "make the learner ID a voter",
		Args:  exactArgs("ID"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(c *client.Client, ctx context.Context) error {
				if err := c.PromoteMember(ctx, args[0]); err != nil {
					return err
				}
				return a.printChange(changeJSON{Change: "promoted", ID: args[0]}, "promoted "+args[0]+" to voter")
			})
		}),
	}, "")
}

func (a *app) membersRemoveCommand() *cobra.Command {
	return clientCommand(&cobra.Command{
		Use:   "remove ID",
		Short: "remove the member ID (exit 3 if there is none)",
		Args:  exactArgs("ID"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(c *client.Client, ctx context.Context) error {
				if err := c.RemoveMember(ctx, args[0]); err != nil {
					return err
				}
				return a.printChange(changeJSON{Change: "removed", ID: args[0]}, "removed "+args[0])
			})
		}),
	}, "")
}

func (a *app) membersTransferCommand() *cobra.Command {
	return clientCommand(&cobra.Command{
		Use:   "transfer [ID]",
		Short: "hand leadership to the voter ID, or to the one furthest along",
		Args:  rangeArgs(0, 1, "at most one ID"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			return a.withClient(cmd, func(c *client.Client, ctx context.Context) error {
				if err := c.TransferLeadership(ctx, id); err != nil {
					return err
				}
				leader := newLeader(ctx, c, id)
				return a.printChange(changeJSON{Change: "transferred", ID: id, Leader: leader}, "leader is now "+orDash(leader))
			})
		}),
	}, "")
}

// statusJSON is a row of `status -o json`: the endpoint asked, and the
// node's /status answer as it sent it, or the error.
type statusJSON struct {
	Endpoint string          `json:"endpoint"`
	Status   json.RawMessage `json:"status,omitempty"`
	Error    string          `json:"error,omitempty"`
}

func (a *app) statusCommand() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "the Raft state of every endpoint, as a table",
		Long: `Asks every endpoint (--endpoints) for its /status, or with --cluster every
member of the cluster the first answering endpoint belongs to, and prints a
row each: endpoint, id, state, term, leader, commit and applied index, keys.
An endpoint that does not answer gets a row with its error, and the exit
status is 1. -o json prints [{"endpoint","status":{...the API's /status...}}
or {"endpoint","error"}].`,
		Example: `  raftkv status --endpoints 127.0.0.1:8000,127.0.0.1:8001,127.0.0.1:8002
  raftkv status --cluster -o json`,
		Args: noArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.withClient(cmd, func(c *client.Client, ctx context.Context) error {
				endpoints, err := a.endpointList(cmd) // as given, for the table
				if err != nil {
					return err
				}
				if all {
					st, err := c.Status(ctx, "")
					if err != nil {
						return err
					}
					endpoints = endpoints[:0:0]
					for _, m := range st.Configuration {
						if m.HTTPAddr != "" {
							endpoints = append(endpoints, m.HTTPAddr)
						}
					}
				}
				return a.printStatus(ctx, c, endpoints)
			})
		}),
	}
	cmd.Flags().BoolVar(&all, "cluster", false, "ask every member of the cluster (from its configuration), not only --endpoints")
	return clientCommand(cmd, groupCluster)
}

func (a *app) printStatus(ctx context.Context, c *client.Client, endpoints []string) error {
	type answer struct {
		st  *client.Status
		err error
	}
	answers := make([]answer, len(endpoints))
	done := make(chan struct{}, len(endpoints))
	for i, ep := range endpoints {
		go func() {
			defer func() { done <- struct{}{} }()
			answers[i].st, answers[i].err = c.Status(ctx, ep)
		}()
	}
	for range endpoints {
		<-done
	}
	failed := 0
	if a.g.json() {
		out := make([]statusJSON, 0, len(endpoints))
		for i, ans := range answers {
			row := statusJSON{Endpoint: endpoints[i]}
			if ans.err != nil {
				failed++
				row.Error = describe(ans.err)
			} else {
				row.Status = ans.st.Raw
			}
			out = append(out, row)
		}
		if err := printJSON(a.stdout, out); err != nil {
			return err
		}
	} else {
		header := []string{"ENDPOINT", "ID", "STATE", "TERM", "LEADER", "COMMIT", "APPLIED", "KEYS"}
		for _, ans := range answers {
			if ans.err != nil {
				failed++
			}
		}
		if failed > 0 {
			header = append(header, "ERROR") // only when there is one
		}
		t := newTable(a.stdout, header...)
		for i, ans := range answers {
			if ans.err != nil {
				t.row(endpoints[i], "-", "-", "-", "-", "-", "-", "-", describe(ans.err))
				continue
			}
			st := ans.st
			t.row(endpoints[i], st.NodeID, st.State, strconv.FormatUint(st.Term, 10), orDash(st.Leader),
				strconv.FormatUint(st.CommitIndex, 10), strconv.FormatUint(st.AppliedIndex, 10), strconv.Itoa(st.Keys))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if failed > 0 {
		return &exitErr{code: exitError, err: fmt.Errorf("%d of %d endpoints did not answer", failed, len(endpoints))}
	}
	return nil
}

// backupJSON is `backup -o json`'s answer.
type backupJSON struct {
	File     string `json:"file"`
	Bytes    int64  `json:"bytes"`
	Index    uint64 `json:"index"`
	Keys     int64  `json:"keys"`
	SHA256   string `json:"sha256"`
	Endpoint string `json:"endpoint"`
}

func (a *app) backupCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup FILE|-",
		Short: "save a consistent backup of the whole store to FILE (- : standard output)",
		Long: `Saves a backup of the whole store (GET /backup: every write acknowledged before
it, checked against the node's SHA-256 trailer) into FILE, or to standard
output with -. FILE appears only once the whole backup is in and checked (it is
written next to it first, then renamed), so a failed backup leaves no partial
file. Restore it with raftkv restore --online FILE into a running cluster, or
offline into a volume (docs/operations.md). --timeout bounds it only when given.
Prints the size, index and key count ({"file","bytes","index","keys","sha256",
"endpoint"} with -o json; to stderr with -).`,
		Example: `  raftkv backup raftkv-$(date +%F).backup
  raftkv backup - | gzip > backup.gz`,
		Args: exactArgs("FILE"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.withClientIn(cmd, a.transferContext, func(c *client.Client, ctx context.Context) error {
				name := args[0]
				report := a.stdout
				var (
					n    int64
					info *client.BackupInfo
					err  error
				)
				if name == "-" {
					report = a.stderr
					n, info, err = c.BackupWithInfo(ctx, a.stdout)
				} else {
					n, info, err = backupToFile(ctx, c, name)
				}
				if err != nil {
					return err
				}
				return a.printResult(report, backupJSON{File: name, Bytes: n, Index: info.Index, Keys: info.Keys, SHA256: info.SHA256, Endpoint: info.Endpoint},
					"wrote %d bytes (%d keys, index %d, from %s) to %s", n, info.Keys, info.Index, info.Endpoint, name)
			})
		}),
	}
	return clientCommand(cmd, groupCluster)
}

// transferContext bounds a backup or restore by --timeout only when it
// was given: a large store takes as long as it takes (the node cuts off a
// transfer that stalls for 30 s).
func (a *app) transferContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	if isSet(cmd, "timeout") {
		return a.context(cmd)
	}
	return signalContext(cmd)
}

// backupToFile writes the backup into a temporary file beside name and
// renames it into place once it is whole and checked.
func backupToFile(ctx context.Context, c *client.Client, name string) (int64, *client.BackupInfo, error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*.partial")
	if err != nil {
		return 0, nil, err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	n, info, err := c.BackupWithInfo(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	return n, info, err
}

// restoreJSON is `restore --online -o json`'s answer: the API's.
type restoreJSON struct {
	Index         uint64 `json:"index"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	Keys          int64  `json:"keys"`
	Bytes         int64  `json:"bytes"`
	BackupIndex   uint64 `json:"backup_index"`
}

func (a *app) onlineRestore(cmd *cobra.Command, name string) error {
	in, err := a.stdinOr(name)
	if err != nil {
		return err
	}
	defer in.Close()
	var r io.Reader = in
	if f, ok := in.(*os.File); ok {
		r = f // a file can be sent again by a retry
	}
	return a.withClientIn(cmd, a.transferContext, func(c *client.Client, ctx context.Context) error {
		res, err := c.RestoreWithResult(ctx, r)
		if err != nil {
			if errors.Is(err, client.ErrOutcomeUnknown) {
				return fmt.Errorf("%s; check with raftkv status, a restore applied twice leaves the same data", describe(err))
			}
			return err
		}
		return a.printResult(a.stdout, restoreJSON{Index: res.Index, SnapshotIndex: res.SnapshotIndex, Keys: res.Keys, Bytes: res.Bytes, BackupIndex: res.BackupIndex},
			"restored %d keys (%d bytes, backup taken at index %d); reads see them from index %d", res.Keys, res.Bytes, res.BackupIndex, res.Index)
	})
}

// newLeader is the leader after a transfer to id ("": any), as the nodes
// report it once they know it: the client's TransferLeadership returns
// when the transfer is done but not who leads, and a node may learn of the
// new leader a heartbeat later. It asks for at most transferSettle; ""
// if no node named a leader by then.
func newLeader(ctx context.Context, c *client.Client, id string) string {
	deadline := time.Now().Add(transferSettle)
	for {
		st, err := c.Status(ctx, "")
		if err == nil && st.Leader != "" && (id == "" || st.Leader == id) {
			return st.Leader
		}
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			if err == nil {
				return st.Leader
			}
			return ""
		}
		select {
		case <-ctx.Done():
		case <-time.After(transferPoll):
		}
	}
}

const (
	transferSettle = 3 * time.Second        // an election timeout with room
	transferPoll   = 100 * time.Millisecond // a few heartbeats
)
